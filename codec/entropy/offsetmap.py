"""Coding of the step-offset map k (one integer in [-8, 8] per latent cell).

Each cell is predicted from its left neighbour (the upper one in the first column) and the residual
is range-coded with a fixed table whose frequencies are defined in integers (p(r) ~ 4^-|r|), so a
smooth map costs little and the table is identical everywhere. A flat zero map is not coded at all.
"""
from __future__ import annotations

import numpy as np

from ..model.quality import MAP_MAX, MAP_MIN
from . import coder
from .tables import PREC_BITS, FreqTable

_SPAN = MAP_MAX - MAP_MIN  # residuals lie in [-16, 16]


def _residual_table() -> FreqTable:
    r = np.arange(-_SPAN, _SPAN + 1)
    freq = np.maximum(1, (1 << (PREC_BITS - 2)) >> (2 * np.abs(r))).astype(np.int64)
    freq = np.append(freq, 1)  # escape (never used: residuals are always in range)
    freq[_SPAN] += (1 << PREC_BITS) - freq.sum()
    return FreqTable.from_rows([(freq, -_SPAN)])


RESIDUALS = _residual_table()


def predict_residuals(kmap: np.ndarray) -> np.ndarray:
    """Residual of every cell against its left (or, in column 0, upper) neighbour."""
    pred = np.zeros_like(kmap)
    pred[:, 1:] = kmap[:, :-1]
    pred[1:, 0] = kmap[:-1, 0]
    return kmap - pred


def encode_map(kmap: np.ndarray) -> bytes | None:
    """Bytes of the map stream, or None for an all-zero map."""
    kmap = np.asarray(kmap, dtype=np.int64)
    if kmap.min() < MAP_MIN or kmap.max() > MAP_MAX:
        raise ValueError(f"step offsets must lie in [{MAP_MIN}, {MAP_MAX}]")
    if not kmap.any():
        return None
    res = predict_residuals(kmap)
    return coder.encode(res, np.zeros_like(res), RESIDUALS)


def decode_map(data: bytes | None, shape: tuple[int, int]) -> np.ndarray:
    """Inverse of `encode_map` for a latent grid of `shape`."""
    if data is None:
        return np.zeros(shape, dtype=np.int64)
    res = coder.decode(data, np.zeros(shape, dtype=np.int64), RESIDUALS)
    kmap = np.empty(shape, dtype=np.int64)
    kmap[0, 0] = res[0, 0]
    for i in range(1, shape[0]):
        kmap[i, 0] = kmap[i - 1, 0] + res[i, 0]
    kmap[:, 1:] = res[:, 1:]
    kmap = np.cumsum(kmap, axis=1)
    if kmap.min() < MAP_MIN or kmap.max() > MAP_MAX:
        raise coder.CorruptStream("decoded step offsets fall outside [-8, 8]")
    return kmap
