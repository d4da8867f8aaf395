"""Reading source images and writing reconstructions.

Accepts what Pillow reads: 8- and 16-bit, grayscale, palette, RGBA (alpha dropped with a warning).
Every failure becomes a one-sentence BitlensError.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .color import rgb_to_ycbcr, to_10bit
from .errors import BitlensError

Image.MAX_IMAGE_PIXELS = 1 << 26  # refuse decompression bombs like the bitstream reader does


@dataclass
class SourceImage:
    """An image ready to code: float RGB in [0,1] (grey replicated), with its provenance."""

    rgb: np.ndarray
    grayscale: bool = False
    bit_depth: int = 8
    path: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def height(self) -> int:
        return self.rgb.shape[0]

    @property
    def width(self) -> int:
        return self.rgb.shape[1]

    @property
    def planes(self) -> int:
        """Planes the codec reconstructs: 1 for a grayscale source, else 3 (Y', Cb, Cr)."""
        return 1 if self.grayscale else 3

    def ycbcr(self) -> np.ndarray:
        ycc = rgb_to_ycbcr(self.rgb)
        if self.grayscale:
            ycc[..., 1:] = 0.5
        return ycc

    def y10(self) -> np.ndarray:
        """The 10-bit luma plane every PSNR-Y in Bitlens is measured against."""
        return to_10bit(self.ycbcr()[..., 0])


def load_image(path: str | os.PathLike) -> SourceImage:
    """Read an image file; raises BitlensError with a one-line reason when it cannot."""
    path = str(path)
    if not os.path.exists(path):
        raise BitlensError(f"{path}: no such file")
    if os.path.isdir(path):
        raise BitlensError(f"{path}: is a directory, not an image")
    try:
        with Image.open(path) as im:
            im.load()
            return from_pil(im, path)
    except BitlensError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise BitlensError(f"{path}: not a readable image ({type(exc).__name__})") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise BitlensError(f"{path}: cannot read image: {exc}") from None


def from_pil(im: Image.Image, path: str = "") -> SourceImage:
    """Convert any Pillow image to a SourceImage (grayscale kept grayscale, alpha dropped)."""
    warnings = []
    if im.width < 1 or im.height < 1:
        raise BitlensError(f"{path}: empty image")
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im).astype(np.float64)
        peak = 65535.0 if mode.startswith("I;16") or a.max() > 255 else 255.0
        return SourceImage(np.repeat((a / peak).clip(0, 1)[..., None], 3, axis=2), True,
                           16 if peak > 255 else 8, path, warnings)
    if mode == "F":
        a = np.asarray(im).astype(np.float64).clip(0, 1)
        return SourceImage(np.repeat(a[..., None], 3, axis=2), True, 32, path, warnings)
    if "A" in mode or (mode == "P" and "transparency" in im.info):
        warnings.append(f"{path}: alpha channel dropped" if path else "alpha channel dropped")
    if mode in ("L", "LA", "1") or (mode == "P" and _palette_is_gray(im)):
        a = np.asarray(im.convert("L")).astype(np.float64) / 255.0
        return SourceImage(np.repeat(a[..., None], 3, axis=2), True, 8, path, warnings)
    rgb = np.asarray(im.convert("RGB")).astype(np.float64) / 255.0
    return SourceImage(rgb, False, 8, path, warnings)


def _palette_is_gray(im: Image.Image) -> bool:
    pal = np.asarray(im.convert("RGB"))
    return bool((pal[..., 0] == pal[..., 1]).all() and (pal[..., 1] == pal[..., 2]).all())


def source_from_array(a: np.ndarray) -> SourceImage:
    """SourceImage from a uint8 (H,W) or (H,W,3) array (tests, the GUI)."""
    if a.ndim == 2:
        return SourceImage(np.repeat(a[..., None].astype(np.float64) / 255.0, 3, axis=2), True)
    return SourceImage(a[..., :3].astype(np.float64) / 255.0, False)


def save_png(pixels: np.ndarray, path: str | os.PathLike) -> None:
    """Write uint8 (H,W) or (H,W,3) pixels as PNG atomically; unwritable paths are a BitlensError."""
    write_atomic(path, lambda f: Image.fromarray(pixels).save(f, format="PNG"))


# the process umask, read once at import (reading it means setting it): written files get the
# permissions an ordinary open() would give them, not the temporary file's private 0600
_UMASK = os.umask(0)
os.umask(_UMASK)


def write_atomic(path: str | os.PathLike, write) -> None:
    """Write through a temporary file in the target folder and rename, so no half file is left."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise BitlensError(f"{path}: cannot write, folder {folder} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise BitlensError(f"{path}: cannot write: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except OSError as exc:
        os.unlink(tmp) if os.path.exists(tmp) else None
        raise BitlensError(f"{path}: cannot write: {exc.strerror or exc}") from None
