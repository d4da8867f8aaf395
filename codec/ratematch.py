"""Rate matching: find the quality whose bitstream lands on a target bpp.

Two matchers behind `match_rate`:

* `bisection` - the baseline the JPEG AI VM used: bisection on the quality code, every trial a full
  encode (analysis transform, hyperprior and real range coding).
* `fast` (default) - analysis once; each trial computes the exact file size from the stored integer
  CDF tables without running the coder; the first trial comes from a prior rate curve (this image's,
  predicted from its latent by the model's rate model, `rate_curve`), the next from that curve
  shifted through the measured point (images differ from it mostly by a log-rate offset); later
  steps take the image's log-rate curve as an affine function of the prior's (shift
  and slope through two trials, regula falsi between bracketing trials, both in the prior curve's
  coordinates). One real encode at the end, corrected if the coder's real size misses the estimate.

Acceptance (as in the JPEG AI VM): bpp within `tolerance` of the target and not above it
(`closest=True` drops the "not above" rule). A step-offset map stays fixed while the quality moves,
so a painted map keeps the total rate.
"""
from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import loopfilter
from .engine import Analysis, Encoded, LearnedCodec
from .errors import BitlensError
from .images import SourceImage
from .model.quality import QMAX
from .ratemodel import CODES, code_log2_steps, magnitude_histogram

METHODS = ("fast", "bisection")
MAX_TRIALS = 40


@dataclass
class MatchResult:
    """The chosen encode plus how the matcher got there (the GUI plots `trace`)."""

    encoded: Encoded
    analysis: Analysis | None
    target_bpp: float
    method: str
    trace: list[tuple[int, float]] = field(default_factory=list)   # (quality code, bpp) per trial
    seconds: float = 0.0

    @property
    def iterations(self) -> int:
        return len(self.trace)

    @property
    def bpp(self) -> float:
        return self.encoded.bpp


def accepts(bpp: float, target: float, tolerance: float, closest: bool) -> bool:
    """True if `bpp` satisfies the matching rule for `target`."""
    if closest:
        return abs(bpp - target) <= tolerance * target
    return target * (1 - tolerance) <= bpp <= target


def match_rate(codec: LearnedCodec, source: SourceImage, target_bpp: float, method: str = "fast",
               tolerance: float = 0.01, closest: bool = False, kmap: np.ndarray | None = None,
               analysis: Analysis | None = None, loop_filter: bool | None = None) -> MatchResult:
    """Encode `source` at `target_bpp` with the chosen matcher, with the loop filter if `loop_filter`
    (default: the codec's default; a given `analysis` carries its own choice). Raises BitlensError
    if unreachable."""
    if not (target_bpp > 0 and math.isfinite(target_bpp)):
        raise BitlensError(f"target bpp must be a positive number, got {target_bpp}")
    if not 0 < tolerance < 1:
        raise BitlensError(f"tolerance must be between 0 and 1, got {tolerance}")
    analyze = functools.partial(codec.analyze, source, loop_filter=loop_filter)
    if method == "fast":
        return _fast(codec, source, target_bpp, tolerance, closest, kmap, analysis, analyze)
    if method == "bisection":
        return _bisection(codec, source, target_bpp, tolerance, closest, kmap, analyze)
    raise BitlensError(f"unknown rate-matching method {method!r} (choose from {', '.join(METHODS)})")


def filter_layout(target: float, npix: int) -> int:
    """The loop-filter layout a match keeps through its search, chosen from the target's size: with
    the layout following each trial's own size instead, the file would jump by the extra filters'
    bytes where the layout changes, and targets inside such a jump could not be met."""
    return loopfilter.choose_layout(int(target * npix / 8))


def _unreachable(target: float, low: float, high: float) -> BitlensError:
    return BitlensError(f"target {target:g} bpp is outside what the model reaches on this image "
                        f"({low:.4f} to {high:.4f} bpp)")


def _bisection(codec, source, target, tol, closest, kmap, analyze) -> MatchResult:
    t0 = time.perf_counter()
    npix = source.width * source.height
    trace: list[tuple[int, float]] = []
    last: Analysis | None = None      # the latest trial's analysis
    layout = filter_layout(target, npix)

    def full_encode(q: int) -> Encoded:
        # each trial pays the whole encoder, except the loop-filter fit: the filter block has a
        # fixed size, so the fit is paid once, for the accepted trial, as in `fast`
        nonlocal last
        last = analyze()
        enc = codec.encode(last, q, kmap, fit_filter=False, filter_layout=layout)
        trace.append((q, len(enc.data) * 8 / npix))
        return enc

    def bisect(lo: int, hi: int) -> tuple[Encoded | None, int, int]:
        while hi - lo > 1 and len(trace) < MAX_TRIALS:
            mid = (lo + hi) // 2
            enc = full_encode(mid)
            if accepts(enc.bpp, target, tol, closest):
                return enc, lo, hi
            if enc.bpp > target:
                hi = mid
            else:
                lo = mid
        return None, lo, hi

    best, lo, hi = bisect(0, QMAX)
    if best is None and hi <= 1:
        # the target is below code 1's rate; lower rates may lie above code 0 (`rate_floor`)
        probes: dict[int, Encoded] = {}

        def probe(q: int) -> float:
            probes[q] = full_encode(q)
            return probes[q].bpp
        floor, fb = rate_floor(codec, last, kmap, layout, probe)
        if accepts(fb, target, tol, closest):
            best = probes[floor]
        elif fb < target:
            best, lo, hi = bisect(floor, min((q for q, b in trace if q > floor and b > target), default=QMAX))
    elif best is None and lo >= QMAX - 1:
        edge = full_encode(QMAX)
        best = edge if accepts(edge.bpp, target, tol, closest) else None
    if best is None:
        raise _range_error(codec, target, kmap, tol, last, layout)
    if last.loop_filter:   # the accepted trial, its filter fitted: same size
        best = codec.encode(last, best.q_code, kmap, filter_layout=layout)
    return MatchResult(best, None, target, "bisection", trace, time.perf_counter() - t0)


def _fast(codec, source, target, tol, closest, kmap, analysis, analyze) -> MatchResult:
    t0 = time.perf_counter()
    an = analysis if analysis is not None else analyze()    # timed: a cold match pays its analysis
    npix = source.width * source.height
    trace: list[tuple[int, float]] = []
    prior = rate_curve(codec, an, kmap)   # (codes, log bpp), increasing in code
    # aim at the middle of the accepted band, in log-rate
    aim = math.log(target * (1 - tol / 2)) if not closest else math.log(target)
    # the estimate is within a few bytes of the real file; if the real encode still misses the
    # band, that offset corrects later estimates and the real rate takes the trial's place
    bias = 0
    layout = filter_layout(target, npix)

    def estimate(q: int) -> float:
        return (codec.estimate_bytes(an, q, kmap, layout) + bias) * 8 / npix

    def trial(q: int) -> float:
        b = estimate(q)
        trace.append((q, b))
        return b

    def invert_prior(log_bpp: float) -> int:
        return int(round(np.interp(log_bpp, prior[1], prior[0])))

    def prior_at(q: int) -> float:
        return float(np.interp(q, prior[0], prior[1]))

    def through(q: int, lb: float, slope: float = 1.0) -> int:
        """The code aimed at on this image's curve taken as the prior's through (q, log bpp lb),
        with `slope` against the prior."""
        return invert_prior(prior_at(q) + (aim - lb) / slope)

    def falsi(below: tuple[int, float], above: tuple[int, float]) -> int:
        """Regula falsi on log-bpp against the prior curve (this image's curve is taken to be an
        affine function of the prior's), kept strictly inside the bracket."""
        (qa, la), (qb, lb) = below, above
        frac = (aim - la) / (lb - la) if lb != la else 0.5
        pa, pb = prior_at(qa), prior_at(qb)
        return min(max(invert_prior(pa + min(max(frac, 0.05), 0.95) * (pb - pa)), qa + 1), qb - 1)

    below: tuple[int, float] | None = None   # closest bracket points (code, log bpp)
    above: tuple[int, float] | None = None
    floor = 0                                # no code below this one is tried (`rate_floor`)

    def bracket(q: int, b: float) -> None:
        nonlocal below, above
        # a later size of a code (the real file after its estimate) replaces the earlier one: left
        # on the other side, a remembered estimate would close the bracket on that one code
        below, above = (None if p is not None and p[0] == q else p for p in (below, above))
        if b > target:
            above = (q, math.log(b)) if above is None or q < above[0] else above
        else:
            below = (q, math.log(b)) if below is None or q > below[0] else below

    # re-matching on an image already matched: its earlier estimates (exact, free now) bracket the
    # target or move the prior through the nearest of them before the first trial
    known = [(k, estimate(k)) for k in codec.known_codes(an, kmap)]
    hits = [k for k, b in known if accepts(b, target, tol, closest)]
    for k, b in known:
        bracket(k, b)
    if hits:
        q = hits[0]
    elif below and above:
        q = falsi(below, above) if above[0] - below[0] > 1 else below[0]
    elif known:
        k, b = min(known, key=lambda kb: abs(math.log(kb[1]) - aim))
        q = min(max(through(k, math.log(b)), 0), QMAX)
    else:
        q = invert_prior(aim)
    for _ in range(MAX_TRIALS):
        b = trial(q)
        if accepts(b, target, tol, closest):
            enc = codec.encode(an, q, kmap, filter_layout=layout)
            if accepts(enc.bpp, target, tol, closest):
                return MatchResult(enc, an, target, "fast", trace, time.perf_counter() - t0)
            bias += len(enc.data) - round(b * npix / 8)   # the coder missed the estimate: correct
            b = enc.bpp
        bracket(q, b)
        if below and above:
            if above[0] - below[0] <= 1:
                break
            q = falsi(below, above)
        else:
            if q == floor == 0 and b > target:
                # lower rates may lie above code 0 (`rate_floor`): search above the floor from there
                floor, fb = rate_floor(codec, an, kmap, layout, trial)
                if fb > target:
                    raise _range_error(codec, target, kmap, tol, an, layout)
                above = None if above is None or above[0] < floor else above
                bracket(floor, fb)
                if accepts(fb, target, tol, closest):
                    q = floor     # met: its estimate is remembered, the real encode follows
                    continue
                if above is not None:
                    if above[0] - floor <= 1:
                        break
                    q = falsi(below, above)
                    continue
                b, q = fb, floor
            elif (q == floor and b > target) or (q == QMAX and b < target):
                raise _range_error(codec, target, kmap, tol, an, layout)
            # this image's curve as the prior's through the measured point: shifted after one trial;
            # with two on one side, also its slope against the prior (kept within 0.5..2)
            lb, slope = math.log(b), 1.0
            if len(trace) >= 2 and trace[-2][0] != q:
                p, p1 = prior_at(q), prior_at(trace[-2][0])
                if p != p1:
                    slope = min(max((lb - math.log(trace[-2][1])) / (p - p1), 0.5), 2.0)
            nq = through(q, lb, slope)
            if nq == q:   # prior is flat here or clamped: step outwards
                nq = q + (1 if b < target else -1) * max(1, QMAX // 64)
            q = min(max(nq, floor), QMAX)
    raise _range_error(codec, target, kmap, tol, an, layout)


def rate_curve(codec: LearnedCodec, an: Analysis, kmap: np.ndarray | None = None) -> np.ndarray:
    """(quality codes, log bpp) the fast matcher starts from: this image's curve predicted from its
    latent (codec/ratemodel.py) when the model has a rate model, else the model's mean curve over
    training photos. Made strictly increasing, as the matcher inverts it."""
    if codec.rate_model is None:
        return codec.rate_prior
    kmap = np.zeros(an.grid) if kmap is None else np.asarray(kmap)
    hist = magnitude_histogram(an.y, kmap, codec.rate_model.width)
    bits = codec.rate_model.predict_bits(hist, code_log2_steps(codec.log2_steps_q16))
    log_bpp = np.log(np.maximum(bits, 1.0) / (an.source.width * an.source.height))
    log_bpp = np.maximum.accumulate(log_bpp) + np.arange(len(CODES)) * 1e-9
    return np.stack([CODES.astype(np.float64), log_bpp])


FLOOR_PROBES = 9   # codes probed between code 0 and the lowest trained level for the rate floor


def rate_floor(codec: LearnedCodec, an: Analysis, kmap: np.ndarray | None, layout: int,
               size: Callable[[int], float] | None = None) -> tuple[int, float]:
    """The code with the lowest rate and that rate (bpp), among codes from 0 to the lowest trained
    level. On a nearly flat image the rate can rise again below the trained levels as the steps
    coarsen (the non-anchors' context model extrapolates), so code 0 is not always the lowest rate;
    codes below the floor cost more bits for less quality, and the matchers search above it.
    `size` measures a code (default: its exact estimated size)."""
    npix = an.source.width * an.source.height
    size = size or (lambda q: codec.estimate_bytes(an, q, kmap, layout) * 8 / npix)
    codes = np.unique(np.linspace(0, codec.trained_codes[0], FLOOR_PROBES).round().astype(int))
    rates = [size(int(q)) for q in codes]
    best = int(np.argmin(rates))
    return int(codes[best]), float(rates[best])


def _range_error(codec, target, kmap, tol, an, layout) -> BitlensError:
    npix = an.source.width * an.source.height
    low = rate_floor(codec, an, kmap, layout)[1]
    high = codec.estimate_bytes(an, QMAX, kmap, layout) * 8 / npix
    if low <= target <= high:
        return BitlensError(f"no quality lands within {tol:.1%} below {target:g} bpp on this image; "
                            f"loosen --tolerance")
    return _unreachable(target, low, high)
