"""One image compared across codecs: ours against an anchor (VVC by default) at the same target rate.

Everything the desktop application shows about a comparison comes from here, so the CLI, scripts and
tests can compute the same numbers: per-block PSNR-Y maps (16x16, `codec.metrics.block_psnr`), their
difference, our bits per block (exact, from the CDF tables), the pixel inspector's values, PSNR-Y in a
painted region, difference images, and the report of a bitstream opened from disk.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .color import to_8bit
from .errors import BitlensError
from .images import SourceImage
from .metrics import block_psnr, psnr, region_psnr

BLOCK = 16

# heatmap name -> (title, unit); what `Comparison.heatmap` returns
HEATMAPS = {
    "psnr_ours": ("PSNR-Y per block, ours", "dB"),
    "psnr_anchor": ("PSNR-Y per block, anchor", "dB"),
    "psnr_diff": ("PSNR-Y per block, ours minus anchor", "dB"),
    "bits": ("our bits per 16x16 block", "bits"),
}


def source_rgb8(source: SourceImage) -> np.ndarray:
    """The source as the 8-bit RGB the views show (grey replicated to three channels)."""
    return to_8bit(source.rgb)


def as_rgb(pixels: np.ndarray) -> np.ndarray:
    """uint8 (H,W) grey or (H,W,3) -> (H,W,3)."""
    return np.repeat(pixels[..., None], 3, axis=2) if pixels.ndim == 2 else pixels


def difference_image(reference: np.ndarray, other: np.ndarray, gain: float = 4.0) -> np.ndarray:
    """|other - reference| per channel, amplified by `gain`, as uint8 RGB (the views' difference mode)."""
    a, b = as_rgb(reference).astype(np.int16), as_rgb(other).astype(np.int16)
    if a.shape != b.shape:
        raise BitlensError(f"cannot compare images of shape {a.shape} and {b.shape}")
    return np.clip(np.abs(b - a) * gain, 0, 255).astype(np.uint8)


def map_to_image(kmap: np.ndarray, height: int, width: int, cell: int = BLOCK) -> np.ndarray:
    """A map on the latent grid (one value per 16x16 cell) spread to image resolution (float32)."""
    k = np.asarray(kmap, dtype=np.float32)
    return np.repeat(np.repeat(k, cell, 0), cell, 1)[:height, :width].copy()


def painted_region(painted: np.ndarray) -> np.ndarray:
    """Pixels a painted map touches (non-zero offsets)."""
    return np.asarray(painted) != 0


@dataclass
class Side:
    """One codec's reconstruction of the image and its numbers."""

    name: str                   # "ours", "vvc", "jpeg", ...
    rgb8: np.ndarray            # (H,W,3) or (H,W) uint8
    y10: np.ndarray             # (H,W) uint16
    bpp: float
    psnr_y: float
    target_bpp: float | None = None
    param: str = ""             # "quality 61.2", "qp 37"
    note: str = ""              # e.g. "closest rate, above the target"

    def as_dict(self) -> dict:
        return dict(codec=self.name, bpp=self.bpp, psnr_y=_finite(self.psnr_y), target_bpp=self.target_bpp,
                    param=self.param, note=self.note)


def ours_side(report, target_bpp: float | None = None) -> Side:
    """Side of an `EncodeReport` (codec.pipeline)."""
    return Side("ours", report.decoded.pixels, report.decoded.y10, report.bpp, report.psnr_y,
                report.target_bpp if target_bpp is None else target_bpp, f"quality {report.quality:.2f}")


def anchor_side(result, note: str = "") -> Side:
    """Side of an `AnchorResult` (codec.anchors)."""
    from .anchors import get_anchor
    param = get_anchor(result.codec).param
    return Side(result.codec, result.rgb8, result.y10, result.bpp, result.psnr_y, result.target_bpp,
                f"{param} {result.qp}", note)


def match_anchor_for_view(name: str, source: SourceImage, target_bpp: float):
    """The anchor at the target as the GUI shows it: the closest rate not above the target, or, when
    the codec cannot go that low on this image, its closest rate with a note saying so."""
    from .anchors import match_anchor
    try:
        return match_anchor(name, source, target_bpp), ""
    except BitlensError as exc:
        if "cannot reach" not in str(exc):
            raise
        res = match_anchor(name, source, target_bpp, closest=True)
        return res, f"{name} cannot go down to {target_bpp:g} bpp here: closest rate shown"


@dataclass
class Comparison:
    """Source, ours and (optionally) an anchor; block maps computed once."""

    source: SourceImage
    ours: Side
    anchor: Side | None = None
    bits: np.ndarray | None = None              # (rows, cols) bits per block, cropped to the image
    anchor_error: str = ""
    block: int = BLOCK
    psnr_ours: np.ndarray = field(init=False)
    psnr_anchor: np.ndarray | None = field(init=False)

    def __post_init__(self):
        ref = self.ref_y10 = self.source.y10()
        self.ref_rgb8 = as_rgb(source_rgb8(self.source))
        self.psnr_ours = block_psnr(ref, self.ours.y10, self.block)
        self.psnr_anchor = None if self.anchor is None else block_psnr(ref, self.anchor.y10, self.block)
        if self.bits is not None:
            r, c = self.psnr_ours.shape
            self.bits = np.asarray(self.bits, dtype=np.float64)[:r, :c]

    @property
    def grid(self) -> tuple[int, int]:
        return self.psnr_ours.shape

    @property
    def psnr_diff(self) -> np.ndarray | None:
        return None if self.psnr_anchor is None else self.psnr_ours - self.psnr_anchor

    def heatmap(self, name: str) -> np.ndarray | None:
        """One of HEATMAPS as a (rows, cols) array, or None when this comparison lacks it."""
        if name not in HEATMAPS:
            raise BitlensError(f"unknown heatmap {name!r} (choose from {', '.join(HEATMAPS)})")
        return {"psnr_ours": self.psnr_ours, "psnr_anchor": self.psnr_anchor, "psnr_diff": self.psnr_diff,
                "bits": self.bits}[name]

    def inspect(self, x: int, y: int) -> dict | None:
        """The pixel inspector: values of every image at (x, y) and its block's numbers; None outside."""
        h, w = self.source.height, self.source.width
        if not (0 <= x < w and 0 <= y < h):
            return None
        by, bx = y // self.block, x // self.block
        out = dict(x=x, y=y, block=(by, bx), original=tuple(int(v) for v in self.ref_rgb8[y, x]),
                   original_y10=int(self.ref_y10[y, x]),
                   ours=tuple(int(v) for v in as_rgb(self.ours.rgb8[y:y + 1, x:x + 1])[0, 0]),
                   ours_y10=int(self.ours.y10[y, x]), ours_block_psnr=float(self.psnr_ours[by, bx]),
                   anchor=None, anchor_y10=None, anchor_block_psnr=None, bits=None)
        if self.anchor is not None:
            out.update(anchor=tuple(int(v) for v in as_rgb(self.anchor.rgb8[y:y + 1, x:x + 1])[0, 0]),
                       anchor_y10=int(self.anchor.y10[y, x]), anchor_block_psnr=float(self.psnr_anchor[by, bx]))
        if self.bits is not None:
            out["bits"] = float(self.bits[by, bx])
        return out

    def region_psnr(self, mask: np.ndarray) -> dict:
        """PSNR-Y inside a region (mask at image resolution) for ours and the anchor."""
        ref = self.ref_y10
        return dict(ours=region_psnr(ref, self.ours.y10, mask),
                    anchor=None if self.anchor is None else region_psnr(ref, self.anchor.y10, mask))

    def summary(self) -> dict:
        """Numbers for an exported report (JSON-safe)."""
        d = dict(image=self.source.path, width=self.source.width, height=self.source.height,
                 ours=self.ours.as_dict(), anchor=None if self.anchor is None else self.anchor.as_dict(),
                 anchor_error=self.anchor_error, block=self.block,
                 mean_block_psnr_diff=None if self.psnr_diff is None else _finite(float(np.mean(self.psnr_diff))),
                 blocks_ours_better=None if self.psnr_diff is None else int((self.psnr_diff > 0).sum()),
                 blocks=int(self.psnr_ours.size),
                 total_block_bits=None if self.bits is None else float(self.bits.sum()))
        return d

    def block_rows(self) -> list[dict]:
        """One row per block: position, PSNR-Y of both codecs, their difference, our bits."""
        rows = []
        for by in range(self.grid[0]):
            for bx in range(self.grid[1]):
                rows.append(dict(row=by, col=bx, x=bx * self.block, y=by * self.block,
                                 psnr_ours=_finite(float(self.psnr_ours[by, bx])),
                                 psnr_anchor=None if self.psnr_anchor is None else _finite(float(self.psnr_anchor[by, bx])),
                                 psnr_diff=None if self.psnr_diff is None else _finite(float(self.psnr_diff[by, bx])),
                                 bits=None if self.bits is None else float(self.bits[by, bx])))
        return rows


def compare(source: SourceImage, report, anchor=None, *, codec=None, anchor_note: str = "",
            anchor_error: str = "", bits: np.ndarray | None = None) -> Comparison:
    """Comparison of an `EncodeReport` with an optional `AnchorResult`; our bits per block come from
    `report.cell_bits(codec, source)` when a codec is given (or are passed in as `bits`)."""
    if bits is None and codec is not None:
        bits = report.cell_bits(codec, source)
    side = anchor_side(anchor, anchor_note) if anchor is not None else None
    return Comparison(source, ours_side(report), side, bits, anchor_error)


def report_from_bitstream(codec, data: bytes, source: SourceImage | None = None, backend: str = "integer"):
    """An `EncodeReport` for a bitstream read from disk (decoded with `backend`); PSNR-Y against
    `source` when given (it must have the bitstream's size), else nan."""
    from .engine import Encoded, latent_grid
    from .entropy.bitstream import Bitstream
    from .entropy.offsetmap import decode_map
    from .pipeline import EncodeReport

    dec = codec.decode(data, backend)
    bs: Bitstream = dec.header
    if source is not None and (source.width, source.height) != (bs.width, bs.height):
        raise BitlensError(f"the bitstream is {bs.width}x{bs.height}, the image {source.width}x{source.height}")
    kmap = decode_map(bs.map_data, latent_grid(bs.height, bs.width))
    enc = Encoded(data, int(bs.q_code), kmap, bs.width, bs.height)
    p = psnr(source.y10(), dec.y10) if source is not None else math.nan
    return EncodeReport(enc, dec, p, 0.0, None, None, [], 0.0, kmap)


def _finite(v):
    if v is None:
        return None
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v
