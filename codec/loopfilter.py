"""Adaptive loop filter: a Wiener filter per image and plane, fitted by the encoder, sent in the
bitstream and applied by every decoder in exact integer arithmetic (the idea of VVC's ALF).

The synthesis is trained for the average image; on one image its reconstruction is often a little
too smooth (fine periodic texture most of all), and a small linear filter fitted to that image by
least squares recovers part of it. The filter is a 7x7 diamond (25 taps), point-symmetric, so 12
coefficients per plane, written in residual form so that zero coefficients are the identity:

    out = x + (sum_j c_j * (x[p + o_j] + x[p - o_j] - 2 x[p]) + 2^(PREC-1)) >> PREC

on 10-bit planes (edges replicated), clipped to 0..1023. Coefficients are int8 in units of
2^-PREC. Every term is an integer well inside int32, so all decoders (threads, instruction sets,
devices) get the same pixels. Each plane's coefficients are fitted on the decoder's own
reconstruction and kept only if they lower that plane's squared error; otherwise that plane sends
zeros. The block has a fixed size (12 bytes per plane), so the exact size computation of the rate
matcher knows it without fitting.

Written by hand because it is part of the format: the filter must be the same integer operation in
every decoder, and no library offers that.
"""
from __future__ import annotations

import numpy as np
import torch

from .entropy.bitstream import BitstreamError

RADIUS = 3
PREC = 7                  # coefficients in units of 1/128
# one offset of each point-symmetric pair of the 7x7 diamond (the other is its negative)
OFFSETS = tuple((dy, dx) for dy in range(0, RADIUS + 1) for dx in range(-RADIUS, RADIUS + 1)
                if abs(dy) + abs(dx) <= RADIUS and (dy > 0 or dx > 0))
TAPS = len(OFFSETS)       # 12
MAX_FIT_PIXELS = 1 << 18  # the least-squares fit samples at most this many pixels per plane


def block_bytes(planes: int) -> int:
    """Size of the filter block (without its length field) for an image with this many planes."""
    return TAPS * planes


def identity(planes: int) -> list[np.ndarray]:
    """Coefficients that leave every plane as it is (all zero)."""
    return [np.zeros(TAPS, dtype=np.int8) for _ in range(planes)]


def _padded(plane: np.ndarray) -> np.ndarray:
    return np.pad(plane.astype(np.int32), RADIUS, mode="edge")


def _pair_sum(pad: np.ndarray, offset: tuple[int, int], shape: tuple[int, int], step: int = 1) -> np.ndarray:
    """x[p + o] + x[p - o] at every `step`-th pixel p of a plane padded by RADIUS (int32)."""
    (dy, dx), (h, w), r = offset, shape, RADIUS
    return pad[r + dy:r + dy + h:step, r + dx:r + dx + w:step] + pad[r - dy:r - dy + h:step, r - dx:r - dx + w:step]


def apply(plane10: np.ndarray, coeffs: np.ndarray) -> np.ndarray:
    """The filtered 10-bit plane (uint16), exactly as every decoder computes it: int32 numpy
    arithmetic, in place (about 5 ms for 768x512), the centre terms folded into one product."""
    if not np.any(coeffs):
        return plane10
    pad = _padded(plane10)
    x = pad[RADIUS:-RADIUS, RADIUS:-RADIUS]
    acc = np.zeros(plane10.shape, dtype=np.int32)
    tmp = np.empty_like(acc)
    for c, offset in zip(coeffs.tolist(), OFFSETS):
        if c:
            np.multiply(_pair_sum(pad, offset, plane10.shape), c, out=tmp)
            acc += tmp
    acc -= (2 * int(coeffs.astype(np.int64).sum())) * x
    acc += 1 << (PREC - 1)
    acc >>= PREC
    acc += x
    return np.clip(acc, 0, 1023).astype(np.uint16)


def fit(rec10: np.ndarray, ref10: np.ndarray) -> np.ndarray:
    """int8 coefficients that bring `rec10` closest to `ref10` in squared error (zeros if no
    quantized filter improves it). Least squares on at most MAX_FIT_PIXELS pixels (a regular
    subsample), solved in torch: a numpy BLAS product leaves OpenBLAS threads spinning, which slows
    the torch work that follows."""
    step = max(1, int(np.ceil(np.sqrt(rec10.size / MAX_FIT_PIXELS))))
    pad = _padded(rec10)
    x2 = 2 * pad[RADIUS:-RADIUS:step, RADIUS:-RADIUS:step]
    feats = torch.from_numpy(np.stack([(_pair_sum(pad, o, rec10.shape, step) - x2).ravel() for o in OFFSETS]))
    target = torch.from_numpy((ref10[::step, ::step].astype(np.int32) - rec10[::step, ::step]).ravel())
    f = feats.double()
    coef = torch.linalg.lstsq(f @ f.T, (f @ target.double())[:, None]).solution[:, 0].numpy()
    q = np.clip(np.round(coef * (1 << PREC)), -128, 127).astype(np.int8)
    if not np.any(q):
        return q
    err = lambda plane: int(np.sum((plane.astype(np.int64) - ref10) ** 2))  # noqa: E731
    return q if err(apply(rec10, q)) < err(rec10) else identity(1)[0]


def pack(coeffs: list[np.ndarray]) -> bytes:
    return b"".join(np.asarray(c, dtype=np.int8).tobytes() for c in coeffs)


def unpack(data: bytes, planes: int) -> list[np.ndarray]:
    """Per-plane int8 coefficients from a filter block; a block of another size is corrupt."""
    if len(data) != block_bytes(planes):
        raise BitstreamError(f"corrupted bitstream: loop-filter block of {len(data)} bytes, "
                           f"expected {block_bytes(planes)}")
    arr = np.frombuffer(data, dtype=np.int8).reshape(planes, TAPS)
    return [arr[i].copy() for i in range(planes)]
