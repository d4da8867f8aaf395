"""AV1 still picture through libaom (ffmpeg's libaom-av1), 10-bit 4:2:0, raw OBU stream, decoded by
ffmpeg (libdav1d or the native decoder). The rate parameter is libaom's constant-quality level
(`-crf N -b:v 0`, 0..63; higher means fewer bits), with the all-intra usage and still-picture mode.
When this ffmpeg has no libaom the codec says so clearly."""
from __future__ import annotations

from .base import FfmpegAnchor


class AV1(FfmpegAnchor):
    name = "av1"
    label = "AV1 still (libaom)"
    encoder = "libaom-av1"
    muxer = "obu"
    extension = ".obu"
    param = "crf"
    qp_range = (0, 63)
    default_qp = 32
    # libaom's speed levels (cpu-used); the names map to 8..2
    presets = ("faster", "fast", "medium", "slow", "slower")
    default_preset = "medium"
    SPEED = {"faster": 8, "fast": 6, "medium": 4, "slow": 3, "slower": 2}

    def encoder_args(self, qp, preset):
        return ["-usage", "allintra", "-still-picture", "1", "-cpu-used",
                str(self.SPEED[preset or self.default_preset]), "-crf", str(qp), "-b:v", "0",
                "-tune", "psnr", "-aq-mode", "0"]
