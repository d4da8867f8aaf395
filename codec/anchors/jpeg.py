"""Baseline JPEG through Pillow (libjpeg): 4:2:0, optimized Huffman tables; quality 1..100 is the rate
parameter."""
from __future__ import annotations

from .base import PillowAnchor


class JPEG(PillowAnchor):
    name = "jpeg"
    label = "JPEG (libjpeg)"
    format = "JPEG"
    feature = "jpg"
    extension = ".jpg"

    def save_args(self, qp, preset):
        return dict(quality=int(qp), subsampling=2, optimize=True)
