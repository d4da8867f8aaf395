"""Rate–distortion points of one image: ours at the target rates through the rate matcher
(`codec.pipeline.encode_image`) and the anchors rate-matched on their QP (`codec.anchors.match_anchor`),
with BD-rate (`codec.metrics.bd_rate`) of every codec against a reference (VVC).

The GUI's RD panel shows exactly this; a point that cannot be reached (a rate below what a codec can
do on a small image, a codec missing here) becomes a failed point with its reason, never an exception.
`should_stop()` is checked between points: a cancelled run returns the points done so far.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import BitlensError
from .images import SourceImage

CTC_RATES = (0.06, 0.12, 0.25, 0.5, 0.75)
HIGH_RATES = (1.0, 1.5)
DEFAULT_ANCHORS = ("vvc", "jpeg")


@dataclass
class RDPoint:
    codec: str
    target_bpp: float
    ok: bool
    bpp: float = math.nan
    psnr_y: float = math.nan
    param: str = ""                 # "quality 61.20" or "qp 37"
    seconds: float = 0.0
    error: str = ""
    result: Any = field(default=None, repr=False)   # EncodeReport (ours) or AnchorResult

    def as_dict(self) -> dict:
        f = (lambda v: v if math.isfinite(v) else None)
        return dict(codec=self.codec, target_bpp=self.target_bpp, ok=self.ok, bpp=f(self.bpp),
                    psnr_y=f(self.psnr_y), param=self.param, seconds=self.seconds, error=self.error)


@dataclass
class RDResult:
    image: str
    targets: tuple[float, ...]
    codecs: tuple[str, ...]
    points: dict[str, list[RDPoint]]
    reference: str = "vvc"
    bd_rate: dict[str, float | None] = field(default_factory=dict)    # codec -> percent vs reference
    bd_notes: dict[str, str] = field(default_factory=dict)           # codec -> why not computed
    cancelled: bool = False
    seconds: float = 0.0

    def curve(self, codec: str) -> list[tuple[float, float]]:
        """(bpp, PSNR-Y) of the successful points, sorted by rate."""
        return sorted((p.bpp, p.psnr_y) for p in self.points.get(codec, [])
                      if p.ok and math.isfinite(p.psnr_y))

    def curves(self) -> dict[str, list[tuple[float, float]]]:
        return {c: self.curve(c) for c in self.codecs}

    def rows(self) -> list[dict]:
        return [p.as_dict() for c in self.codecs for p in self.points.get(c, [])]

    def summary(self) -> dict:
        return dict(image=self.image, targets=list(self.targets), codecs=list(self.codecs),
                    reference=self.reference, bd_rate=self.bd_rate, bd_notes=self.bd_notes,
                    cancelled=self.cancelled, seconds=self.seconds, points=self.rows())


def bd_rates(result: RDResult) -> tuple[dict[str, float | None], dict[str, str]]:
    """BD-rate (percent, negative = fewer bits) of every codec but the reference against it."""
    from .metrics import bd_rate

    values, notes = {}, {}
    if result.reference not in result.codecs:
        return values, notes
    ref = result.curve(result.reference)
    for c in result.codecs:
        if c == result.reference:
            continue
        test = result.curve(c)
        try:
            v = bd_rate([p[0] for p in ref], [p[1] for p in ref], [p[0] for p in test], [p[1] for p in test])
            values[c] = v if math.isfinite(v) else None
            if not math.isfinite(v):
                notes[c] = "BD-rate is not finite"
        except BitlensError as exc:
            values[c] = None
            notes[c] = str(exc)
    return values, notes


def rd_points(codec, source: SourceImage, targets=CTC_RATES, anchors=DEFAULT_ANCHORS, *,
              reference: str = "vvc", progress: Callable[[int, int, str], None] | None = None,
              should_stop: Callable[[], bool] | None = None, cache: bool = True,
              loop_filter: bool | None = None) -> RDResult:
    """Ours (`codec`, a LearnedCodec; with its loop filter unless `loop_filter` is False) and each
    anchor at every target rate on one image."""
    from .anchors import get_anchor, match_anchor
    from .pipeline import encode_image

    targets = tuple(sorted({float(t) for t in targets}))
    if not targets or any(not (math.isfinite(t) and t > 0) for t in targets):
        raise BitlensError("give at least one positive target bpp")
    names = ("ours", *dict.fromkeys(a for a in anchors if a != "ours"))
    for a in names[1:]:
        get_anchor(a)   # unknown names are a usage error, before any work
    res = RDResult(source.path, targets, names, {c: [] for c in names}, reference)
    total, done = len(names) * len(targets), 0
    t_start = time.perf_counter()
    for name in names:
        start_qp = None
        for t in targets:
            if should_stop is not None and should_stop():
                res.cancelled = True
                res.seconds = time.perf_counter() - t_start
                res.bd_rate, res.bd_notes = bd_rates(res)
                return res
            if progress is not None:
                progress(done, total, f"{name} at {t:g} bpp")
            t0 = time.perf_counter()
            try:
                if name == "ours":
                    rep = encode_image(codec, source, target_bpp=t, loop_filter=loop_filter)
                    pt = RDPoint(name, t, True, rep.bpp, rep.psnr_y, f"quality {rep.quality:.2f}", result=rep)
                else:
                    r = match_anchor(name, source, t, cache=cache, start_qp=start_qp)
                    start_qp = r.qp
                    pt = RDPoint(name, t, True, r.bpp, r.psnr_y, f"{get_anchor(name).param} {r.qp}", result=r)
            except BitlensError as exc:
                pt = RDPoint(name, t, False, error=str(exc))
            pt.seconds = time.perf_counter() - t0
            res.points[name].append(pt)
            done += 1
    if progress is not None:
        progress(done, total, "BD-rate")
    res.bd_rate, res.bd_notes = bd_rates(res)
    res.seconds = time.perf_counter() - t_start
    return res
