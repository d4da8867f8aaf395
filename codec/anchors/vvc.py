"""VVC intra through VVenC (ffmpeg's libvvenc), decoded by ffmpeg's native VVC decoder.

Command (W x H: our planes, edge-padded to even and at least 32 per side):
  ffmpeg -f rawvideo -pix_fmt yuv420p10le -s WxH -r 1 <colour flags> -i pipe:0 -frames:v 1
         -c:v libvvenc -preset P -qp N -qpa 0 -g 1 <colour flags> -f vvc pipe:1
`-qpa 0` turns VVenC's perceptual QP adaptation off (we measure PSNR). `-g 1` (intra period 1) selects
VVenC's all-intra configuration, the VVC intra anchor of image-coding test conditions; without it this
libvvenc build also fails to flush pictures smaller than about 512 samples. VVenC codes the picture's
slice QP 3 below the given QP (its intra QP offset); `qp` here is always the value passed to `-qp`.
"""
from __future__ import annotations

from .base import FfmpegAnchor


class VVC(FfmpegAnchor):
    name = "vvc"
    label = "VVC intra (VVenC)"
    encoder = "libvvenc"
    muxer = "vvc"
    extension = ".266"
    qp_range = (0, 63)
    default_qp = 32
    presets = ("faster", "fast", "medium", "slow", "slower")
    default_preset = "medium"
    minimum = 32      # libvvenc fails on tiny pictures (16x24 does, 24x24 does not); pad up to 32

    def encoder_args(self, qp, preset):
        return ["-preset", preset or self.default_preset, "-qp", str(qp), "-qpa", "0", "-g", "1"]
