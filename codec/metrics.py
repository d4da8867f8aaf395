"""Quality metrics shared by every codec: PSNR-Y on 10-bit luma, per-block PSNR maps, BD-rate.

BD-rate uses the `bjontegaard` package (PCHIP interpolation of log-rate over PSNR on the overlapping
interval, the common-practice method), wrapped with checks that give a clear message instead of a
silent NaN.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import BitlensError


def mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 1023.0) -> float:
    """PSNR in dB of two planes on the same integer scale (10-bit luma: peak 1023). inf if equal."""
    if a.shape != b.shape:
        raise BitlensError(f"cannot compare planes of shape {a.shape} and {b.shape}")
    e = mse(a, b)
    return math.inf if e == 0 else 10 * math.log10(peak ** 2 / e)


def psnr_yuv(a: np.ndarray, b: np.ndarray, peak: float = 1023.0) -> float:
    """PSNR-YUV with 6:1:1 weighting of the three planes' MSEs (a, b: (3, H, W) or (H, W, 3) lists)."""
    errs = [mse(x, y) for x, y in zip(a, b)]
    e = (6 * errs[0] + errs[1] + errs[2]) / 8
    return math.inf if e == 0 else 10 * math.log10(peak ** 2 / e)


def block_psnr(a: np.ndarray, b: np.ndarray, block: int = 16, peak: float = 1023.0) -> np.ndarray:
    """PSNR-Y of every block x block tile (partial tiles at the edges included); capped at 100 dB."""
    h, w = a.shape
    gh, gw = -(-h // block), -(-w // block)
    se = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    sums = np.zeros((gh, gw))
    counts = np.zeros((gh, gw))
    np.add.at(sums, (np.arange(h)[:, None] // block, np.arange(w)[None, :] // block), se)
    np.add.at(counts, (np.arange(h)[:, None] // block, np.arange(w)[None, :] // block), 1)
    m = sums / counts
    with np.errstate(divide="ignore"):
        out = 10 * np.log10(peak ** 2 / m)
    return np.minimum(out, 100.0)


def bd_rate(rate_anchor, psnr_anchor, rate_test, psnr_test) -> float:
    """Bjøntegaard delta rate in percent of the test curve against the anchor (negative = saves bits)."""
    import bjontegaard

    ra, da, rt, dt = (np.asarray(v, dtype=np.float64) for v in (rate_anchor, psnr_anchor, rate_test, psnr_test))
    for name, r, d in (("anchor", ra, da), ("test", rt, dt)):
        if len(r) < 4 or len(r) != len(d):
            raise BitlensError(f"BD-rate needs at least 4 (rate, PSNR) points per curve; the {name} has {len(r)}")
        order = np.argsort(r)
        if np.any(np.diff(r[order]) <= 0) or np.any(np.diff(d[order]) <= 0):
            raise BitlensError(f"BD-rate needs rate and PSNR both increasing; the {name} curve is not monotonic")
    lo, hi = max(da.min(), dt.min()), min(da.max(), dt.max())
    if hi <= lo:
        raise BitlensError("BD-rate: the two curves do not overlap in PSNR")
    return float(bjontegaard.bd_rate(ra, da, rt, dt, method="pchip", require_matching_points=False,
                                     min_overlap=0.0))
