"""Spatial bit allocation: maps of step offsets k (one per 16x16 latent cell, in [-8, 8]).

A map multiplies each cell's quantization step by 2^(k/4): negative k spends more bits there. Maps
come from a painted importance map at image resolution, from a .npy file, or automatically:

* `rdo`      - Lagrangian allocation with one slope for every cell: probe each cell's rate (exact, from
               the CDF tables) and luma distortion at uniform offsets -4..4, give each cell the k
               minimising D + lambda R with lambda set so the total rate is unchanged, smooth; then
               encode at full, half and zero strength and keep the best measured PSNR-Y.
* `vvc`      - VVC-guided: more bits where VVC at the same rate reconstructs a block better than we do
               (per-block PSNR-Y difference, ~1.5 dB per unit of k at high rate).
* `variance` - local luma activity, as in the JPEG AI VM's generator: busy cells coarser, flat finer.

The encoder then rate-matches with the map fixed, so a map moves bits and the total stays on target.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from .engine import CELL, Analysis, LearnedCodec, latent_grid
from .errors import BitlensError
from .images import SourceImage
from .model.quality import MAP_MAX, MAP_MIN

AUTO_MAPS = ("rdo", "vvc", "variance")
DB_PER_K = 1.5   # high-rate rule: step x 2^(1/4) -> MSE x 2^(1/2) -> 1.5 dB


def quantize_map(k: np.ndarray) -> np.ndarray:
    """Round and clamp float offsets to the integer range the bitstream carries."""
    return np.clip(np.round(np.nan_to_num(k)), MAP_MIN, MAP_MAX).astype(np.int64)


def cell_average(values: np.ndarray, grid: tuple[int, int], cell: int = CELL) -> np.ndarray:
    """Mean of an image-resolution array over each latent cell (edge-replicated to the padded size)."""
    h, w = grid[0] * cell, grid[1] * cell
    padded = np.pad(values, ((0, h - values.shape[0]), (0, w - values.shape[1])), mode="edge")
    return padded.reshape(grid[0], cell, grid[1], cell).mean(axis=(1, 3))


def map_from_painting(painted: np.ndarray, height: int, width: int, smooth: float = 0.0,
                      block: int = 1) -> np.ndarray:
    """Offsets from a float map at image resolution (or at the latent grid), averaged per cell,
    optionally smoothed (Gaussian, in cells) and made coarser (blocks of `block` x `block` cells)."""
    grid = latent_grid(height, width)
    painted = np.asarray(painted, dtype=np.float64)
    if painted.shape == grid:
        k = painted
    elif painted.shape == (height, width):
        k = cell_average(painted, grid)
    else:
        raise BitlensError(f"offset map has shape {painted.shape}; expected the image size "
                           f"{(height, width)} or the latent grid {grid}")
    if smooth > 0:
        k = gaussian_filter(k, smooth, mode="nearest")
    if block > 1:
        gh, gw = -(-grid[0] // block) * block, -(-grid[1] // block) * block
        kp = np.pad(k, ((0, gh - grid[0]), (0, gw - grid[1])), mode="edge")
        kb = kp.reshape(gh // block, block, gw // block, block).mean(axis=(1, 3))
        k = np.repeat(np.repeat(kb, block, 0), block, 1)[: grid[0], : grid[1]]
    return quantize_map(k)


def load_map(path: str, height: int, width: int) -> np.ndarray:
    """Offsets from a .npy file (image size or latent grid)."""
    try:
        a = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise BitlensError(f"{path}: no such file") from None
    except OSError as exc:
        raise BitlensError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except ValueError:   # numpy's text here speaks of pickles for any file that is not .npy
        raise BitlensError(f"{path}: not a .npy array") from None
    if a.ndim != 2 or not np.issubdtype(a.dtype, np.number):
        raise BitlensError(f"{path}: expected a 2-D numeric array, got shape {a.shape} of {a.dtype}")
    return map_from_painting(a, height, width)


def variance_map(source: SourceImage, strength: float = 0.5) -> np.ndarray:
    """Activity map: log variance of luma per cell, centred; busy cells get positive k."""
    grid = latent_grid(source.height, source.width)
    y = source.ycbcr()[..., 0] * 255
    var = cell_average(y ** 2, grid) - cell_average(y, grid) ** 2
    act = np.log2(var + 4.0)
    return quantize_map(strength * (act - np.median(act)))


def vvc_map(source: SourceImage, ours_y10: np.ndarray, vvc_y10: np.ndarray, strength: float = 0.5) -> np.ndarray:
    """More bits (negative k) where VVC's block PSNR-Y beats ours at the same rate."""
    from .metrics import block_psnr
    grid = latent_grid(source.height, source.width)
    ref = source.y10()
    diff = block_psnr(ref, vvc_y10, CELL) - block_psnr(ref, ours_y10, CELL)
    diff = np.pad(diff, ((0, grid[0] - diff.shape[0]), (0, grid[1] - diff.shape[1])), mode="edge")
    diff = np.clip(diff, -12, 12)
    return quantize_map(-strength * (diff - np.median(diff)) / DB_PER_K)


def rdo_map(codec: LearnedCodec, an: Analysis, q_code: int, probes=tuple(range(-4, 5)),
            smooth: float = 1.5) -> np.ndarray:
    """Equal-slope allocation at constant rate: probe every cell's exact rate and luma distortion at
    uniform offsets, pick per cell the offset minimising D + lambda R with lambda bisected so the
    total rate stays that of the flat map, then smooth (in cells). Returns the float offsets; the
    smoothing matters: the synthesis spreads each cell over its neighbours, so per-cell choices
    measured with uniform neighbours lose when neighbours differ sharply."""
    grid = an.grid
    ref = an.source.y10().astype(np.float64)
    rates, dists = [], []
    for k in probes:
        kmap = np.full(grid, k)
        rates.append(codec.cell_bits(an, q_code, kmap))
        # probe: the float synthesis without the loop filter is close enough to compare offsets
        rec = np.round(codec.reconstruct(an, q_code, kmap, backend="float", filtered=False)[..., 0] * 1023)
        dists.append(cell_average((rec - ref) ** 2, grid) * CELL * CELL)   # squared error per cell
    R, D = np.stack(rates), np.stack(dists)
    budget = R[list(probes).index(0)].sum()
    lo, hi = 1e-6, 1e8
    for _ in range(60):                      # geometric bisection on the Lagrange multiplier
        lam = (lo * hi) ** 0.5
        best = np.argmin(D + lam * R, axis=0)
        if np.take_along_axis(R, best[None], 0).sum() > budget:
            lo = lam
        else:
            hi = lam
    k = np.asarray(probes, dtype=np.float64)[np.argmin(D + hi * R, axis=0)]
    return gaussian_filter(k, smooth, mode="nearest") if smooth > 0 else k


RDO_STRENGTHS = (0.0, 0.5, 1.0)   # 0: the flat map stays a candidate, so rdo never loses PSNR-Y


def best_of(codec: LearnedCodec, an: Analysis, target_bpp: float, candidates: list[np.ndarray],
            tolerance: float = 0.01) -> np.ndarray:
    """The candidate map whose rate-matched encode has the highest PSNR-Y (integer decoder)."""
    from .color import to_10bit
    from .metrics import psnr
    from .ratematch import filter_layout, match_rate

    ref, scores = an.source.y10(), []
    layout = filter_layout(target_bpp, an.source.width * an.source.height)
    for k in candidates:
        try:
            m = match_rate(codec, an.source, target_bpp, "fast", tolerance, kmap=k, analysis=an)
        except BitlensError:        # this map cannot reach the target: not a candidate
            scores.append(-np.inf)
            continue
        rec = codec.reconstruct(an, m.encoded.q_code, k, filter_layout=layout)
        scores.append(psnr(ref, to_10bit(rec[..., 0]), 1023))
    return candidates[int(np.argmax(scores))]


def auto_map(name: str, codec: LearnedCodec, source: SourceImage, target_bpp: float,
             an: Analysis | None = None, tolerance: float = 0.01) -> np.ndarray:
    """Compute an automatic map for encoding `source` at `target_bpp`."""
    from .ratematch import filter_layout, match_rate

    if name not in AUTO_MAPS:
        raise BitlensError(f"unknown automatic map {name!r} (choose from {', '.join(AUTO_MAPS)})")
    if name == "variance":
        return variance_map(source)
    an = an if an is not None else codec.analyze(source)
    flat = match_rate(codec, source, target_bpp, "fast", tolerance, analysis=an)
    if name == "rdo":
        k = rdo_map(codec, an, flat.encoded.q_code)
        return best_of(codec, an, target_bpp, [quantize_map(a * k) for a in RDO_STRENGTHS], tolerance)
    from .anchors import match_anchor
    vvc = match_anchor("vvc", source, target_bpp)
    ours = codec.reconstruct(an, flat.encoded.q_code,
                             filter_layout=filter_layout(target_bpp, source.width * source.height))
    from .color import to_10bit
    return vvc_map(source, to_10bit(ours[..., 0]), vvc.y10)
