"""Quality metrics shared by every codec: PSNR-Y on 10-bit luma, per-block PSNR maps, BD-rate.

BD-rate uses the `bjontegaard` package (PCHIP interpolation of log-rate over PSNR on the overlapping
interval, the common-practice method), wrapped with checks that give a clear message instead of a
silent NaN.
"""
from __future__ import annotations

import math

import numpy as np

from .color import rgb_to_ycbcr, to_10bit
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


def mean_2x2(plane: np.ndarray) -> np.ndarray:
    """Means of 2x2 blocks (an odd last row or column dropped): a chroma plane at 4:2:0 resolution."""
    h, w = plane.shape[0] // 2 * 2, plane.shape[1] // 2 * 2
    return plane[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))


def plane_psnrs(ref_ycc: np.ndarray, rgb8: np.ndarray) -> list[float]:
    """PSNR-Y, -Cb, -Cr, then -Cb and -Cr of 2x2 means (10-bit), of decoded 8-bit RGB against the
    source's float Y'CbCr. The 2x2 means are the chroma a 4:2:0 codec keeps: they judge a codec that
    drops only finer chroma detail alike with a 4:2:0 anchor."""
    rec = rgb_to_ycbcr(rgb8.astype(np.float64) / 255)
    full = [psnr(to_10bit(ref_ycc[..., i]), to_10bit(rec[..., i])) for i in range(3)]
    return full + [psnr(to_10bit(mean_2x2(ref_ycc[..., i])), to_10bit(mean_2x2(rec[..., i]))) for i in (1, 2)]


def region_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray, peak: float = 1023.0) -> float:
    """PSNR over the pixels where `mask` is true (e.g. a painted region); nan for an empty mask."""
    mask = np.asarray(mask, dtype=bool)
    if a.shape != b.shape or mask.shape != a.shape:
        raise BitlensError(f"cannot compare planes of shape {a.shape} and {b.shape} in a region of shape {mask.shape}")
    n = int(mask.sum())
    if n == 0:
        return math.nan
    e = float(np.sum((a[mask].astype(np.float64) - b[mask].astype(np.float64)) ** 2) / n)
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


MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _gauss_window(size: int, sigma: float) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def _ssim_terms(a: np.ndarray, b: np.ndarray, peak: float, win: int, sigma: float) -> tuple[float, float]:
    """Mean luminance*contrast*structure (SSIM) and mean contrast*structure (cs) over the valid region
    of a Gaussian window (shrunk, odd, to the plane when the plane is smaller than the window)."""
    from scipy.ndimage import correlate1d

    win = min(win, *(s if s % 2 else s - 1 for s in a.shape))
    win = max(win, 1)
    g = _gauss_window(win, sigma)
    r = win // 2

    def filt(x):
        x = correlate1d(correlate1d(x, g, axis=0, mode="reflect"), g, axis=1, mode="reflect")
        return x[r:x.shape[0] - r, r:x.shape[1] - r]  # 'valid': only windows inside the plane

    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    mu_a, mu_b = filt(a), filt(b)
    saa = filt(a * a) - mu_a ** 2
    sbb = filt(b * b) - mu_b ** 2
    sab = filt(a * b) - mu_a * mu_b
    cs = (2 * sab + c2) / (saa + sbb + c2)
    lum = (2 * mu_a * mu_b + c1) / (mu_a ** 2 + mu_b ** 2 + c1)
    return float(np.mean(lum * cs)), float(np.mean(cs))


def _halve(x: np.ndarray) -> np.ndarray:
    """2x2 average and subsample (odd sizes: the last row/column replicated, as MATLAB's 'symmetric')."""
    h, w = x.shape
    return mean_2x2(np.pad(x, ((0, h % 2), (0, w % 2)), mode="edge"))


def ms_ssim(a: np.ndarray, b: np.ndarray, peak: float = 1023.0, win: int = 11, sigma: float = 1.5,
            weights=MS_SSIM_WEIGHTS) -> float:
    """Multi-scale SSIM (Wang, Simoncelli, Bovik 2003) of two planes, e.g. 10-bit Y (peak 1023).

    Five scales with the standard exponents, an 11-tap Gaussian window of sigma 1.5, K1=0.01, K2=0.03,
    2x2 average downsampling, 'valid' filtering; negative contrast-structure terms are clipped to 0 (as
    common implementations do, so a power of a negative number never makes NaN). Planes too small for
    the full pyramid use a window shrunk to the plane at the coarse scales, and fewer scales (weights
    renormalized) below 16 pixels per side. 1.0 for identical planes.
    """
    if a.shape != b.shape:
        raise BitlensError(f"cannot compare planes of shape {a.shape} and {b.shape}")
    if a.ndim != 2 or min(a.shape) < 1:
        raise BitlensError(f"MS-SSIM needs 2-D planes, got shape {a.shape}")
    x, y = a.astype(np.float64), b.astype(np.float64)
    levels = len(weights)
    while levels > 1 and min(a.shape) < 2 ** (levels - 1):
        levels -= 1
    w = np.asarray(weights[:levels], dtype=np.float64)
    w = w / w.sum()
    vals = []
    for i in range(levels):
        ssim, cs = _ssim_terms(x, y, peak, win, sigma)
        vals.append(max(ssim if i == levels - 1 else cs, 0.0))
        if i < levels - 1:
            x, y = _halve(x), _halve(y)
    return float(np.prod(np.power(vals, w)))
