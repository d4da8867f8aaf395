"""Quantization steps from the quality code and the offset map, in fixed-point arithmetic.

The bitstream carries the quality as an integer code 0..QMAX spread linearly over the model's
levels. Learned log2 steps are stored as Q16 integers; the step for a code and an offset k is
    log2 delta = lerp(A[level], A[level+1], frac) + k/4      (integer arithmetic, Q16)
    delta      = 2^int * HI[f >> 8] * LO[f & 255]             (stored float64 tables, IEEE products)
so encoder and decoder on any machine derive bit-identical steps without library exp/log.
"""
from __future__ import annotations

import numpy as np

QMAX = 65535          # largest quality code; 0 = coarsest level, QMAX = finest level
Q16 = 1 << 16
MAP_MIN, MAP_MAX = -8, 8


def pow2_tables() -> tuple[np.ndarray, np.ndarray]:
    """2^(i/256) and 2^(j/65536) for i, j in 0..255: computed once at export and stored with weights."""
    i = np.arange(256, dtype=np.float64)
    return 2.0 ** (i / 256), 2.0 ** (i / 65536)


def log2_step_q16(log2_steps_q16: np.ndarray, q_code: int) -> np.ndarray:
    """Per-channel log2 step (Q16 int64, shape (M,)) for a quality code, by integer interpolation."""
    if not 0 <= q_code <= QMAX:
        raise ValueError(f"quality code {q_code} outside 0..{QMAX}")
    levels = log2_steps_q16.shape[0]
    pos = q_code * (levels - 1)
    level, rem = divmod(pos, QMAX)
    if level >= levels - 1:
        level, rem = levels - 2, QMAX
    a = log2_steps_q16[level].astype(np.int64)
    b = log2_steps_q16[level + 1].astype(np.int64)
    return a + ((b - a) * rem) // QMAX


def log2_step_grid_q16(log2_steps_q16: np.ndarray, q_code: int, kmap: np.ndarray) -> np.ndarray:
    """Q16 log2 step for every latent element: (M, h, w) from channel steps and the offset map k."""
    base = log2_step_q16(log2_steps_q16, q_code)
    return base[:, None, None] + kmap.astype(np.int64)[None] * (Q16 // 4)


def step_from_log2_q16(v: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """delta = 2^(v / 65536) for int64 v, via integer split and two table lookups."""
    e = v >> 16
    f = v & 0xFFFF
    return np.ldexp(hi[f >> 8] * lo[f & 255], e.astype(np.int32))


def quality_to_code(quality: float) -> int:
    """Map the CLI's --quality 0..100 onto the code range 0..QMAX."""
    if not 0 <= quality <= 100:
        raise ValueError(f"--quality must be within 0..100, got {quality:g}")
    return int(round(quality / 100 * QMAX))
