"""HEVC intra through x265 (ffmpeg's libx265), 10-bit 4:2:0, decoded by ffmpeg's HEVC decoder.

One frame, `keyint=1`, constant QP, no psycho-visual tuning that PSNR would punish (`--tune psnr`),
and `info=0` so x265 does not write its ~2 KB settings SEI into the stream (it would count as rate).
"""
from __future__ import annotations

from .base import FfmpegAnchor


class HEVC(FfmpegAnchor):
    name = "hevc"
    label = "HEVC intra (x265)"
    encoder = "libx265"
    muxer = "hevc"
    extension = ".265"
    qp_range = (0, 51)
    default_qp = 32
    presets = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
               "veryslow", "placebo")
    default_preset = "medium"
    minimum = 16      # x265 rejects pictures smaller than its 16x16 minimum CTU

    def encoder_args(self, qp, preset):
        return ["-preset", preset or self.default_preset, "-tune", "psnr", "-qp", str(qp),
                "-x265-params", "keyint=1:info=0:log-level=error"]
