"""Rate-distortion optimized quantization of y: an encoder-only choice, the bitstream is unchanged.

Rounding (y - mu) / step to the nearest integer ignores that a symbol one step nearer the mean
usually costs fewer bits. For each latent the encoder keeps round(v) or takes one step toward the
mean, whichever gives the smaller bits + KAPPA * (v - s)^2, the squared error in step units.
High-rate theory puts the trade-off near 6 / ln 2 ~ 8.7 bits per unit of squared step error; the
synthesis spreads a latent's error over many pixels, so the best constant is larger.
KAPPA = 32 was tuned on 6 training photos (768x512 crops, 6 qualities over 0.08-1.2 bpp): BD-rate
-2.35% against plain rounding (kappa 16: -1.65%, 24: -2.27%, 48: -2.12%, 64: -1.83%; a plain dead
zone of 0.03-0.05 steps: -1.2%). Never tuned on Kodak.

A step of error does not cost every channel the same: the synthesis turns one step of some
channels into 20 times the picture error of others. Models with measured weights
(training/channel_gains.py) scale KAPPA per channel by that error relative to the channels'
geometric mean (model 8: -0.28% BD-rate on the last 12 training photos, 11 of 12 better, chroma
PSNR up by about 0.05 dB; exponents 0.5 and 1.5 on the weights, or KAPPA x0.75 to x1.6 with them,
gave -0.19% to -0.31%, so neither was changed). That is with the loop filter; without it the same
weights lost 0.43% (11 of 12 photos worse), so files without the filter keep the constant.
"""
from __future__ import annotations

import numpy as np

from . import coder
from .tables import FreqTable

KAPPA = 32.0


def rdo_round(v: np.ndarray, rows: np.ndarray, table: FreqTable, kappa: float | np.ndarray = KAPPA) -> np.ndarray:
    """Integer symbols for v (latents minus means, in steps) coded with `rows` of `table`: each
    round(v), or one step toward zero where that lowers bits + kappa * squared error. `kappa` is
    one number or an array broadcast against v (one per channel: `LearnedCodec.rdoq_kappa`)."""
    s = np.round(v).astype(np.int64).ravel()   # a flat copy: writes below must not land in a temporary
    nz = np.flatnonzero(s)          # zeros stay: nothing is nearer the mean (most symbols at low rates)
    sn, rn, vn = s[nz], rows.ravel()[nz], v.ravel()[nz]
    nearer = sn - np.sign(sn)
    extra_bits = coder.symbol_bits(nearer, rn, table) - coder.symbol_bits(sn, rn, table)
    extra_error = (vn - nearer) ** 2 - (vn - sn) ** 2
    if np.ndim(kappa):   # the nonzero symbols' own values, without a copy of kappa at v's size
        kappa = np.broadcast_to(kappa, v.shape)[np.unravel_index(nz, v.shape)]
    take = extra_bits + kappa * extra_error < 0
    s[nz[take]] = nearer[take]
    return s.reshape(v.shape)
