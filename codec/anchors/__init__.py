"""Classical anchors: VVC intra first (VVenC through ffmpeg), HEVC (x265), AV1 (libaom), JPEG and WebP
(Pillow). One interface for all of them:

    encode_anchor("vvc", source, qp=32)           -> AnchorResult at a fixed QP (or quality)
    match_anchor("vvc", source, target_bpp=0.25)  -> AnchorResult at the integer QP whose rate is the
                                                     closest not above the target (or closest overall)

Every encode is measured like the learned codec (`codec.metrics.psnr` on `SourceImage.y10()`), and
cached on disk (`codec.anchors.cache`), so a repeated request costs no encode.
"""
from __future__ import annotations

import dataclasses
import math

from ..errors import BitlensError
from ..images import SourceImage
from . import cache as _cache
from .av1 import AV1
from .base import Anchor, AnchorResult, measure
from .hevc import HEVC
from .jpeg import JPEG
from .vvc import VVC
from .webp import WebP

ANCHORS: dict[str, Anchor] = {a.name: a for a in (VVC(), HEVC(), AV1(), JPEG(), WebP())}

# rough prior slope of log2(bpp) per unit of the rate parameter, oriented so that rate increases
_SLOPE = {"vvc": 1 / 6, "hevc": 1 / 6, "av1": 1 / 10, "jpeg": 1 / 25, "webp": 1 / 25}

__all__ = ["ANCHORS", "AnchorResult", "available_anchors", "encode_anchor", "get_anchor", "match_anchor"]


def get_anchor(name: str) -> Anchor:
    try:
        return ANCHORS[name]
    except KeyError:
        raise BitlensError(f"unknown anchor codec {name!r} (choose from {', '.join(ANCHORS)})") from None


def available_anchors() -> dict[str, str | None]:
    """Each anchor's name -> None when it can run here, else the reason it cannot."""
    out = {}
    for name, a in ANCHORS.items():
        try:
            a.check()
            out[name] = None
        except BitlensError as exc:
            out[name] = str(exc)
    return out


class _Session:
    """One image, one codec, one preset: results in memory, then on disk, then by encoding."""

    def __init__(self, anchor: Anchor, source: SourceImage, preset: str | None, use_cache: bool,
                 threads: int | None):
        anchor.check()
        self.a, self.src, self.preset, self.use_cache, self.threads = anchor, source, preset, use_cache, threads
        self.version = anchor.version()
        self.img_hash = _cache.image_hash(source) if use_cache else ""
        self.memo: dict[int, AnchorResult] = {}
        self.encodes = 0

    def key(self, qp: int) -> str:
        return _cache.entry_key(self.img_hash, self.a.name, self.version, dict(qp=int(qp), preset=self.preset))

    def bpp(self, qp: int) -> float:
        if qp in self.memo:
            return self.memo[qp].bpp
        if self.use_cache:
            meta = _cache.get_meta(self.key(qp))
            if meta is not None and "bytes" in meta:
                return meta["bytes"] * 8 / (self.src.width * self.src.height)
        return self.result(qp).bpp

    def result(self, qp: int) -> AnchorResult:
        if qp in self.memo:
            return self.memo[qp]
        res = self._load(qp) if self.use_cache else None
        if res is None:
            res = measure(self.a, self.src, qp, self.preset, self.threads)
            self.encodes += 1
            if self.use_cache:
                _cache.put(self.key(qp), dict(codec=res.codec, qp=qp, preset=self.preset, bytes=res.nbytes,
                                              width=res.width, height=res.height, psnr_y=res.psnr_y,
                                              encode_seconds=res.encode_seconds, encoder=res.encoder,
                                              command=res.command, note=res.note),
                           res.data, dict(y10=res.y10, rgb8=res.rgb8, cb10=res.cb10, cr10=res.cr10))
        self.memo[qp] = res
        return res

    def _load(self, qp: int) -> AnchorResult | None:
        from ..metrics import psnr

        hit = _cache.get(self.key(qp))
        if hit is None:
            return None
        meta, data, arr = hit
        if (meta.get("width"), meta.get("height")) != (self.src.width, self.src.height) or "y10" not in arr:
            return None
        return AnchorResult(self.a.name, qp, self.preset, data, self.src.width, self.src.height, arr["y10"],
                            arr["rgb8"], psnr(self.src.y10(), arr["y10"]), float(meta.get("encode_seconds", 0)),
                            self.version, self.a.extension, arr.get("cb10"), arr.get("cr10"), cached=True,
                            command=list(meta.get("command", [])), note=meta.get("note", ""))


def _prepare(codec_name: str, qp: int | None, preset: str | None) -> tuple[Anchor, int, str | None]:
    a = get_anchor(codec_name)
    qp = a.default_qp if qp is None else qp
    if isinstance(qp, float) and not qp.is_integer():
        raise BitlensError(f"{a.name}: {a.param} must be an integer, not {qp}")
    qp = int(qp)
    return a, qp, a.check_params(qp, preset)


def encode_anchor(codec_name: str, source: SourceImage, qp: int | None = None, preset: str | None = None, *,
                  cache: bool = True, threads: int | None = None) -> AnchorResult:
    """Encode `source` with an anchor at a fixed QP (quality for JPEG/WebP, CRF for AV1)."""
    a, qp, preset = _prepare(codec_name, qp, preset)
    return _Session(a, source, preset, cache, threads).result(qp)


def match_anchor(codec_name: str, source: SourceImage, target_bpp: float, closest: bool = False,
                 preset: str | None = None, *, cache: bool = True, threads: int | None = None,
                 start_qp: int | None = None) -> AnchorResult:
    """The anchor at the integer rate parameter whose rate is the closest not above `target_bpp` (or
    the closest overall with `closest=True`). The result's `trace` lists the (qp, bpp) trials."""
    if not (isinstance(target_bpp, (int, float)) and math.isfinite(target_bpp) and target_bpp > 0):
        raise BitlensError(f"target bpp must be a positive number, not {target_bpp}")
    a, qp0, preset = _prepare(codec_name, start_qp, preset)
    s = _Session(a, source, preset, cache, threads)
    sign = 1 if a.rate_increases_with_qp else -1          # x = sign * qp: rate increases with x
    xmin, xmax = sorted((sign * a.qp_range[0], sign * a.qp_range[1]))
    seen: dict[int, float] = {}
    trace: list[tuple[int, float]] = []

    def probe(x: int) -> float:
        r = s.bpp(sign * x)
        seen[x] = r
        trace.append((sign * x, r))
        return r

    lo, hi = xmin - 1, xmax + 1   # largest x known at or below the target, smallest x known above it
    x, last_sides = sign * qp0, []
    while True:
        r = probe(x)
        if r <= target_bpp:
            lo = max(lo, x)
        else:
            hi = min(hi, x)
        last_sides.append(r <= target_bpp)
        if hi - lo <= 1:
            break
        # secant step on log2(bpp) over x, between the bracket ends when both are known
        pts = [(k, seen[k]) for k in (lo, hi) if k in seen]
        if len(pts) < 2 and len(trace) >= 2:
            pts = [(sign * q, b) for q, b in trace[-2:]]
        slope = _SLOPE.get(a.name, 1 / 8)
        if len(pts) == 2 and pts[0][0] != pts[1][0] and pts[0][1] > 0 and pts[1][1] > 0:
            est = (math.log2(pts[1][1]) - math.log2(pts[0][1])) / (pts[1][0] - pts[0][0])
            if est > 1e-3:
                slope = est
        nx = x + (math.log2(target_bpp) - math.log2(max(r, 1e-9))) / slope
        nx = max(x + 1, math.floor(nx)) if r <= target_bpp else min(x - 1, math.floor(nx))
        if (len(last_sides) >= 3 and last_sides[-1] == last_sides[-2] == last_sides[-3]) or nx in seen:
            if xmin <= lo and hi <= xmax:
                nx = (lo + hi) // 2     # secant stuck on one side: bisect the bracket
            else:                       # no bracket yet: step out, doubling the last step
                step = max(2, 2 * abs(x - sign * trace[-2][0]))
                nx = x + step if r <= target_bpp else x - step
        x = min(max(nx, lo + 1), hi - 1)
        if x in seen:
            break
    below = lo if lo >= xmin else None
    above = hi if hi <= xmax else None
    if below is None:
        if not closest:
            raise BitlensError(f"{a.name} cannot reach {target_bpp:g} bpp on this {source.width}x{source.height} "
                               f"image: its lowest rate ({a.param} {sign * xmin}) is {seen[xmin]:.4f} bpp")
        best = xmin
    elif closest and above is not None and abs(seen[above] - target_bpp) < abs(seen[below] - target_bpp):
        best = above
    else:
        best = below
    res = s.result(sign * best)
    return dataclasses.replace(res, target_bpp=float(target_bpp), trace=trace)
