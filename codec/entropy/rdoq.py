"""Rate-distortion optimized quantization of y: an encoder-only choice, the bitstream is unchanged.

Rounding (y - mu) / step to the nearest integer ignores that a symbol one step nearer the mean
usually costs fewer bits. For each latent the encoder keeps round(v) or takes one step toward the
mean, whichever gives the smaller bits + KAPPA * (v - s)^2, the squared error in step units.
High-rate theory puts the trade-off near 6 / ln 2 ~ 8.7 bits per unit of squared step error; the
synthesis spreads a latent's error over many pixels, so the best constant is larger.
KAPPA = 32 was tuned on 6 training photos (768x512 crops, 6 qualities over 0.08-1.2 bpp): BD-rate
-2.35% against plain rounding (kappa 16: -1.65%, 24: -2.27%, 48: -2.12%, 64: -1.83%; a plain dead
zone of 0.03-0.05 steps: -1.2%). Never tuned on Kodak.
"""
from __future__ import annotations

import numpy as np

from . import coder
from .tables import FreqTable

KAPPA = 32.0


def rdo_round(v: np.ndarray, rows: np.ndarray, table: FreqTable, kappa: float = KAPPA) -> np.ndarray:
    """Integer symbols for v (latents minus means, in steps) coded with `rows` of `table`: each
    round(v), or one step toward zero where that lowers bits + kappa * squared error."""
    s = np.round(v).astype(np.int64).ravel()   # a flat copy: writes below must not land in a temporary
    nz = np.flatnonzero(s)          # zeros stay: nothing is nearer the mean (most symbols at low rates)
    sn, rn, vn = s[nz], rows.ravel()[nz], v.ravel()[nz]
    nearer = sn - np.sign(sn)
    extra_bits = coder.symbol_bits(nearer, rn, table) - coder.symbol_bits(sn, rn, table)
    extra_error = (vn - nearer) ** 2 - (vn - sn) ** 2
    take = extra_bits + kappa * extra_error < 0
    s[nz[take]] = nearer[take]
    return s.reshape(v.shape)
