"""Integer frequency tables for the latents, built once at export and stored with the weights.

A table has one row per model (a Gaussian scale for y, a channel for z). Each row covers symbol values
`offset .. offset + length - 2`; its last entry is an escape symbol for values outside that range
(the value then follows in a bypass code). Frequencies are integers summing to 2^PREC_BITS, each at
least 1, so every symbol is codable. Nothing here is recomputed from floats at decode time: the
coder is handed the stored integers (as exact dyadic floats) on both sides.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtr

PREC_BITS = 20
ESCAPE_MASS = 2.0 ** -18  # minimum mass kept for the escape symbol


def quantize_pmf(pmf: np.ndarray, prec_bits: int = PREC_BITS) -> np.ndarray:
    """Float pmf -> integer frequencies >= 1 summing exactly to 2^prec_bits (largest entries absorb)."""
    total = 1 << prec_bits
    pmf = np.maximum(pmf, 0) / pmf.sum()
    freq = np.maximum(1, np.round(pmf * total)).astype(np.int64)
    diff = total - int(freq.sum())
    order = np.argsort(-freq)
    i = 0
    while diff != 0:  # hand the rounding remainder to the largest entries, keeping each >= 1
        j = order[i % len(order)]
        step = 1 if diff > 0 else -1
        if freq[j] + step >= 1:
            freq[j] += step
            diff -= step
        i += 1
    return freq


def gaussian_scales(n: int = 64, smin: float = 0.11, smax: float = 256.0) -> np.ndarray:
    """Log-spaced Gaussian scales (in quantization steps) of the y tables."""
    return np.exp(np.linspace(np.log(smin), np.log(smax), n))


def scale_rows(thresholds: np.ndarray, log2_ratio: np.ndarray) -> np.ndarray:
    """Table row of every log2(sigma / delta): the number of `thresholds` below it, exactly what
    np.searchsorted gives. The stored thresholds are evenly spaced in log2, so a first guess comes
    from arithmetic and one comparison with the stored values either side corrects it; about twice
    as fast as searchsorted's binary search, which took a tenth of a trial and of a decode."""
    n = len(thresholds)
    step = (thresholds[-1] - thresholds[0]) / (n - 1)
    if n < 2 or np.abs(np.diff(thresholds) - step).max() > 1e-9 * step or np.isnan(log2_ratio).any():
        return np.searchsorted(thresholds, log2_ratio)
    guess = np.clip(np.floor((log2_ratio - thresholds[0]) / step) + 1, 0, n).astype(np.int64)
    edges = np.concatenate([[-np.inf], thresholds, [np.inf]])   # edges[g] = thresholds[g - 1]
    return guess - (edges[guess] >= log2_ratio) + (edges[guess + 1] < log2_ratio)


def gaussian_row(scale: float) -> tuple[np.ndarray, int]:
    """Frequencies of a zero-mean discretized Gaussian over [-R, R] plus escape; returns (freq, -R)."""
    r = max(2, int(np.ceil(9 * scale)))
    v = np.arange(-r, r + 1, dtype=np.float64)
    pmf = ndtr((v + 0.5) / scale) - ndtr((v - 0.5) / scale)
    tail = 2 * ndtr(-(r + 0.5) / scale)
    pmf = np.append(pmf, max(tail, ESCAPE_MASS))
    return quantize_pmf(pmf), -r


@dataclass
class FreqTable:
    """Rows of integer frequencies (escape last), flattened for storage."""

    freq: np.ndarray      # int64, all rows concatenated
    start: np.ndarray     # int64, row start in `freq`
    length: np.ndarray    # int64, row length including the escape entry
    offset: np.ndarray    # int64, symbol value of each row's first entry
    _models: dict = field(default_factory=dict, repr=False)
    _costs: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_rows(cls, rows: list[tuple[np.ndarray, int]]) -> "FreqTable":
        lengths = np.array([len(f) for f, _ in rows], dtype=np.int64)
        start = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        return cls(np.concatenate([f for f, _ in rows]).astype(np.int64), start, lengths,
                   np.array([o for _, o in rows], dtype=np.int64))

    def to_dict(self, prefix: str) -> dict:
        return {f"{prefix}_{k}": getattr(self, k) for k in ("freq", "start", "length", "offset")}

    @classmethod
    def from_dict(cls, d: dict, prefix: str) -> "FreqTable":
        return cls(*(np.asarray(d[f"{prefix}_{k}"], dtype=np.int64) for k in ("freq", "start", "length", "offset")))

    @property
    def rows(self) -> int:
        return len(self.length)

    def row(self, j: int) -> np.ndarray:
        return self.freq[self.start[j]:self.start[j] + self.length[j]]

    def model(self, j: int):
        """The constriction categorical model of row j (cached). Probabilities are exact dyadics."""
        if j not in self._models:
            import constriction
            probs = self.row(j).astype(np.float64) / (1 << PREC_BITS)
            self._models[j] = constriction.stream.model.Categorical(probs, perfect=False)
        return self._models[j]

    def costs(self, j: int) -> np.ndarray:
        """Ideal code length in bits of every entry of row j (for exact size estimation)."""
        if j not in self._costs:
            self._costs[j] = PREC_BITS - np.log2(self.row(j).astype(np.float64))
        return self._costs[j]
