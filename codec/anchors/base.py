"""What every anchor codec shares: the result type, the codec description, and the two ways of running
a codec (ffmpeg on our 10-bit 4:2:0 planes; Pillow on 8-bit RGB). A codec module only states its
encoder name, parameter range and command-line options."""
from __future__ import annotations

import io
import os
import shlex
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import BitlensError
from ..images import SourceImage
from ..metrics import psnr
from . import ffmpeg
from .planes import Planes, padded_size, planes_to_rgb8, source_planes


@dataclass
class AnchorResult:
    """One anchor encode: the bitstream, its rate, and the reconstruction measured like ours."""

    codec: str
    qp: int                       # the codec's rate parameter (QP, CRF or quality)
    preset: str | None
    data: bytes                   # the complete bitstream file that the rate counts
    width: int
    height: int
    y10: np.ndarray               # uint16 (H,W), decoded 10-bit luma
    rgb8: np.ndarray              # uint8 (H,W,3), or (H,W) for grayscale sources
    psnr_y: float
    encode_seconds: float         # of the encode that made it (also when it came from the cache)
    encoder: str                  # encoder and version string (part of the cache key)
    extension: str = ".bin"
    cb10: np.ndarray | None = None  # decoded 10-bit chroma at half size (ffmpeg codecs)
    cr10: np.ndarray | None = None
    cached: bool = False
    command: list[str] = field(default_factory=list)  # the ffmpeg arguments, for reproduction by hand
    note: str = ""
    target_bpp: float | None = None
    trace: list[tuple[int, float]] = field(default_factory=list)  # (qp, bpp) trials of rate matching

    @property
    def nbytes(self) -> int:
        return len(self.data)

    @property
    def bpp(self) -> float:
        return len(self.data) * 8 / (self.width * self.height)

    def as_dict(self) -> dict:
        return dict(codec=self.codec, bytes=self.nbytes, bpp=self.bpp, qp=self.qp, psnr_y=self.psnr_y,
                    preset=self.preset, target_bpp=self.target_bpp, width=self.width, height=self.height,
                    encode_seconds=self.encode_seconds, cached=self.cached, encoder=self.encoder,
                    trials=len(self.trace), trace=[[int(q), float(b)] for q, b in self.trace],
                    command=("ffmpeg " + shlex.join(self.command)) if self.command else "", note=self.note)


@dataclass
class Encoding:
    """What a codec returns before measurement."""

    data: bytes
    y10: np.ndarray
    rgb8: np.ndarray
    cb10: np.ndarray | None = None
    cr10: np.ndarray | None = None
    command: list[str] = field(default_factory=list)
    note: str = ""
    seconds: float = 0.0          # encoding alone (no decode, no measurement)


class Anchor:
    """A classical codec with an integer rate parameter."""

    name = ""
    label = ""
    param = "qp"                  # what the integer is called for users
    qp_range = (0, 63)
    rate_increases_with_qp = False  # QP: higher means fewer bits; quality: higher means more bits
    default_qp = 32
    presets: tuple[str, ...] = ()
    default_preset: str | None = None
    extension = ".bin"

    def check(self) -> None:
        """Raise BitlensError when this codec cannot run here."""

    def version(self) -> str:
        raise NotImplementedError

    def encode(self, source: SourceImage, qp: int, preset: str | None, threads: int | None) -> Encoding:
        raise NotImplementedError

    def check_params(self, qp: int, preset: str | None) -> str | None:
        lo, hi = self.qp_range
        if not (lo <= qp <= hi):
            raise BitlensError(f"{self.name}: {self.param} must be an integer from {lo} to {hi}, not {qp}")
        if preset is None:
            return self.default_preset
        if not self.presets:
            raise BitlensError(f"{self.name} has no presets")
        if preset not in self.presets:
            raise BitlensError(f"{self.name}: unknown preset {preset!r} (choose from {', '.join(self.presets)})")
        return preset


class FfmpegAnchor(Anchor):
    """A codec run by ffmpeg on our 10-bit 4:2:0 planes, one frame, raw elementary stream out."""

    encoder = ""                  # ffmpeg encoder name
    muxer = ""                    # raw elementary-stream muxer (and demuxer for decoding)
    pix_fmt = "yuv420p10le"
    multiple = 2                  # pad to a multiple of this
    minimum = 2                   # and to at least this many samples per side
    colour_flags = ["-color_range", "pc", "-colorspace", "bt709", "-color_primaries", "bt709",
                    "-color_trc", "bt709"]

    def check(self) -> None:
        ffmpeg.require_encoder(self.encoder, f"the {self.name} anchor")

    def version(self) -> str:
        return f"{ffmpeg.version()} / {self.encoder}"

    def encoder_args(self, qp: int, preset: str | None) -> list[str]:
        raise NotImplementedError

    def encode_command(self, width: int, height: int, qp: int, preset: str | None,
                       threads: int | None = None, output: str = "out") -> list[str]:
        """ffmpeg arguments: one rawvideo frame of our planes on stdin, the raw bitstream to `output`
        (a file, not stdout: some encoders print their statistics on stdout)."""
        t = ["-threads", str(threads)] if threads else []
        return ["-hide_banner", "-nostdin", "-loglevel", "error",
                "-f", "rawvideo", "-pix_fmt", self.pix_fmt, "-s", f"{width}x{height}", "-r", "1",
                *self.colour_flags, "-i", "pipe:0", "-frames:v", "1",
                "-c:v", self.encoder, *t, *self.encoder_args(qp, preset), *self.colour_flags,
                "-f", self.muxer, "-y", output]

    def decode_command(self) -> list[str]:
        return ["-hide_banner", "-nostdin", "-loglevel", "error", "-f", self.muxer, "-i", "pipe:0",
                "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", self.pix_fmt, "pipe:1"]

    def encode(self, source: SourceImage, qp: int, preset: str | None, threads: int | None) -> Encoding:
        self.check()
        ph, pw = padded_size(source.height, source.width, self.multiple, self.minimum)
        planes = source_planes(source, ph, pw)
        with tempfile.TemporaryDirectory(prefix="bitlens-") as tmp:
            out = os.path.join(tmp, "stream" + self.extension)
            cmd = self.encode_command(pw, ph, qp, preset, threads, out)
            t0 = time.perf_counter()
            ffmpeg.run(cmd, input=planes.tobytes(), what=f"{self.name} encode ({self.encoder})")
            seconds = time.perf_counter() - t0
            data = Path(out).read_bytes() if os.path.exists(out) else b""
        cmd[-1] = "OUT" + self.extension
        if not data:
            raise BitlensError(f"{self.name} encode ({self.encoder}) produced an empty bitstream")
        raw = ffmpeg.run(self.decode_command(), input=data, what=f"{self.name} decode")
        if len(raw) != 3 * pw * ph:
            raise BitlensError(f"{self.name} decode returned {len(raw)} bytes for one {pw}x{ph} 10-bit 4:2:0 "
                               f"frame, expected {3 * pw * ph}")
        dec = Planes.frombytes(raw, ph, pw).crop(source.height, source.width)
        note = f"padded {source.width}x{source.height} to {pw}x{ph}" if (ph, pw) != (source.height, source.width) else ""
        return Encoding(data, dec.y, planes_to_rgb8(dec, source.grayscale), dec.cb, dec.cr, cmd, note, seconds)


class PillowAnchor(Anchor):
    """A codec run by Pillow on 8-bit RGB (grey for grayscale sources); quality plays the part of QP."""

    param = "quality"
    qp_range = (1, 100)
    rate_increases_with_qp = True
    default_qp = 75
    format = ""
    feature = ""                  # PIL.features name of the library, for the version string

    def check(self) -> None:
        from PIL import features
        if not features.check(self.feature):
            raise BitlensError(f"the {self.name} anchor needs Pillow built with {self.feature} support")

    def version(self) -> str:
        import PIL
        from PIL import features
        return f"Pillow {PIL.__version__} / {self.feature} {features.version(self.feature)}"

    def save_args(self, qp: int, preset: str | None) -> dict:
        raise NotImplementedError

    def encode(self, source: SourceImage, qp: int, preset: str | None, threads: int | None) -> Encoding:
        from PIL import Image

        from ..color import to_8bit
        from ..images import from_pil

        self.check()
        pixels = to_8bit(source.rgb[..., 0] if source.grayscale else source.rgb)
        buf = io.BytesIO()
        t0 = time.perf_counter()
        Image.fromarray(pixels).save(buf, format=self.format, **self.save_args(qp, preset))
        data = buf.getvalue()
        seconds = time.perf_counter() - t0
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            rec = from_pil(im)
            rgb8 = np.asarray(im.convert("L" if source.grayscale else "RGB")).copy()
        y10 = rec.y10()
        return Encoding(data, y10, rgb8, seconds=seconds)


def measure(anchor: Anchor, source: SourceImage, qp: int, preset: str | None,
            threads: int | None = None) -> AnchorResult:
    """Encode, decode and measure PSNR-Y with the same function as the learned codec."""
    enc = anchor.encode(source, qp, preset, threads)
    return AnchorResult(anchor.name, qp, preset, enc.data, source.width, source.height, enc.y10, enc.rgb8,
                        psnr(source.y10(), enc.y10), enc.seconds, anchor.version(), anchor.extension,
                        enc.cb10, enc.cr10, command=enc.command, note=enc.note)
