"""BT.709 full-range R'G'B' <-> Y'CbCr, and 10-bit quantization of the planes.

Every codec in Bitlens is measured on the same 10-bit Y plane computed here, so comparisons are fair.
"""
from __future__ import annotations

import numpy as np

KR, KB = 0.2126, 0.0722
KG = 1.0 - KR - KB

# rows: Y, Cb, Cr from R, G, B (all in [0, 1]; Cb/Cr centred on 0)
RGB_TO_YCBCR = np.array([
    [KR, KG, KB],
    [-KR / (2 * (1 - KB)), -KG / (2 * (1 - KB)), 0.5],
    [0.5, -KG / (2 * (1 - KR)), -KB / (2 * (1 - KR))],
])
YCBCR_TO_RGB = np.linalg.inv(RGB_TO_YCBCR)


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """(H,W,3) float RGB in [0,1] -> (H,W,3) float Y'CbCr with Cb, Cr offset to [0,1]."""
    ycc = rgb @ RGB_TO_YCBCR.T
    ycc[..., 1:] += 0.5
    return ycc


def ycbcr_to_rgb(ycc: np.ndarray) -> np.ndarray:
    """Inverse of `rgb_to_ycbcr` (no clipping)."""
    ycc = ycc.astype(np.float64, copy=True)
    ycc[..., 1:] -= 0.5
    return ycc @ YCBCR_TO_RGB.T


def to_10bit(plane: np.ndarray) -> np.ndarray:
    """Float plane in [0,1] -> uint16 values 0..1023 (rounded, clipped)."""
    return np.clip(np.round(plane * 1023.0), 0, 1023).astype(np.uint16)


def to_8bit(rgb: np.ndarray) -> np.ndarray:
    """Float RGB in [0,1] -> uint8 (rounded, clipped)."""
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)
