"""Lossy WebP through Pillow (libwebp); quality 0..100 is the rate parameter, the preset picks libwebp's
effort (`method` 0..6)."""
from __future__ import annotations

from .base import PillowAnchor


class WebP(PillowAnchor):
    name = "webp"
    label = "WebP (libwebp)"
    format = "WEBP"
    feature = "webp"
    extension = ".webp"
    qp_range = (0, 100)
    presets = ("faster", "fast", "medium", "slow", "slower")
    default_preset = "slower"
    METHOD = {"faster": 0, "fast": 2, "medium": 4, "slow": 5, "slower": 6}

    def save_args(self, qp, preset):
        return dict(quality=int(qp), method=self.METHOD[preset or self.default_preset], lossless=False)
