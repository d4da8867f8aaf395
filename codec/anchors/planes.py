"""Our own 10-bit 4:2:0 planes: what every ffmpeg anchor is fed, and how its output comes back.

Y is exactly `SourceImage.y10()` (BT.709 full range, 10 bits), so PSNR-Y of an anchor compares the very
plane the encoder saw. Cb and Cr are the full-range chroma (offset to [0,1]) averaged over 2x2 blocks
(chroma sited between the luma samples) and rounded to 10 bits. Odd sizes and sizes below a codec's
minimum are padded by edge replication; decoded planes are cropped back to the original size.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..color import to_8bit, to_10bit, ycbcr_to_rgb
from ..errors import BitlensError
from ..images import SourceImage


@dataclass
class Planes:
    """10-bit 4:2:0 planes (uint16): y (H,W), cb and cr (H/2,W/2); H and W even."""

    y: np.ndarray
    cb: np.ndarray
    cr: np.ndarray

    @property
    def height(self) -> int:
        return self.y.shape[0]

    @property
    def width(self) -> int:
        return self.y.shape[1]

    def tobytes(self) -> bytes:
        """One frame of rawvideo `yuv420p10le`."""
        return b"".join(np.ascontiguousarray(p, dtype="<u2").tobytes() for p in (self.y, self.cb, self.cr))

    @classmethod
    def frombytes(cls, buf: bytes, height: int, width: int) -> "Planes":
        n, c = height * width, (height // 2) * (width // 2)
        if len(buf) < 2 * (n + 2 * c):
            raise BitlensError(f"the decoder returned {len(buf)} bytes, less than one {width}x{height} "
                               f"10-bit 4:2:0 frame ({2 * (n + 2 * c)} bytes)")
        a = np.frombuffer(buf, dtype="<u2", count=n + 2 * c)
        if a.max(initial=0) > 1023:
            raise BitlensError("the decoder returned samples above 1023 for a 10-bit frame")
        y = a[:n].reshape(height, width)
        cb = a[n:n + c].reshape(height // 2, width // 2)
        cr = a[n + c:].reshape(height // 2, width // 2)
        return cls(y.astype(np.uint16), cb.astype(np.uint16), cr.astype(np.uint16))

    def crop(self, height: int, width: int) -> "Planes":
        ch, cw = -(-height // 2), -(-width // 2)
        return Planes(self.y[:height, :width].copy(), self.cb[:ch, :cw].copy(), self.cr[:ch, :cw].copy())


def padded_size(height: int, width: int, multiple: int = 2, minimum: int = 2) -> tuple[int, int]:
    """Smallest size >= (height, width), >= minimum and a multiple of `multiple` (itself even)."""
    def up(n):
        n = max(n, minimum)
        return -(-n // multiple) * multiple
    return up(height), up(width)


def source_planes(source: SourceImage, height: int | None = None, width: int | None = None) -> Planes:
    """The 10-bit 4:2:0 planes of `source`, edge-padded to (height, width) (default: next even size)."""
    h, w = source.height, source.width
    ph, pw = padded_size(h, w) if height is None else (height, width)
    if ph < h or pw < w or ph % 2 or pw % 2:
        raise BitlensError(f"cannot pad a {w}x{h} image to {pw}x{ph}")
    ycc = np.pad(source.ycbcr(), ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    y = to_10bit(ycc[..., 0])
    c = ycc[..., 1:].reshape(ph // 2, 2, pw // 2, 2, 2).mean(axis=(1, 3))
    return Planes(y, to_10bit(c[..., 0]), to_10bit(c[..., 1]))


def upsample2(c: np.ndarray, height: int, width: int) -> np.ndarray:
    """Chroma (h,w) float -> (height,width): linear interpolation for samples sited between luma pairs
    (weights 3/4, 1/4), edge replicated; the inverse of 2x2 averaging up to smoothing."""
    def along(a, axis):
        prev = np.concatenate([np.take(a, [0], axis), np.take(a, range(a.shape[axis] - 1), axis)], axis)
        nxt = np.concatenate([np.take(a, range(1, a.shape[axis]), axis), np.take(a, [-1], axis)], axis)
        even, odd = 0.75 * a + 0.25 * prev, 0.75 * a + 0.25 * nxt
        out = np.stack([even, odd], axis=axis + 1)
        shape = list(a.shape)
        shape[axis] *= 2
        return out.reshape(shape)
    up = along(along(c.astype(np.float64), 0), 1)
    return up[:height, :width]


def planes_to_rgb8(p: Planes, grayscale: bool = False) -> np.ndarray:
    """Display pixels of decoded planes: uint8 RGB (H,W,3), or (H,W) grey for grayscale sources."""
    y = p.y.astype(np.float64) / 1023.0
    if grayscale:
        return to_8bit(y)
    h, w = p.y.shape
    ycc = np.stack([y, upsample2(p.cb / 1023.0, h, w), upsample2(p.cr / 1023.0, h, w)], axis=-1)
    return to_8bit(ycbcr_to_rgb(ycc))
