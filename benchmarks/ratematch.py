"""Rate matching: fast (exact size estimation) vs bisection (full encode per trial), in one run.

For every image and CTC target both matchers encode from scratch (each pays its analysis); the
table gives mean trials, mean seconds, the speedup ratio and the worst relative rate error, per
target and overall. Two re-match columns time the fast matcher on an image already open, as in the
GUI, without the analysis: "re-match" with the analysis alone (its earlier estimates dropped before
each target), "moving target" with the estimates of the image's earlier matches too (the targets in
increasing order, as when the engineer moves the target up). With the loop filter (on by default,
as in `bitlens encode`) every matcher fits it once, on the accepted quality.

    python benchmarks/ratematch.py [--limit N] [--no-loop-filter] [--markdown docs/ratematch.md]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from _common import CTC, emit, images, parser

from codec.engine import LearnedCodec
from codec.errors import BitlensError
from codec.images import load_image
from codec.ratematch import match_rate


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--tolerance", type=float, default=0.01)
    ap.add_argument("--loop-filter", action=argparse.BooleanOptionalAction, default=True,
                    help="encode with the adaptive loop filter (default: on, as bitlens encode)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    codec = LearnedCodec.load()
    codec.loop_filter = args.loop_filter
    rows = []   # (target, method, trials, seconds, rel error, within)
    failures = []
    t_all = time.perf_counter()
    for path in images(args):
        src = load_image(path)
        alone, moving = codec.analyze(src), codec.analyze(src)
        for t in CTC:
            alone.estimates.clear()
            try:
                pair = [match_rate(codec, src, t, m, args.tolerance) for m in ("fast", "bisection")]
                pair += [match_rate(codec, src, t, "fast", args.tolerance, analysis=an) for an in (alone, moving)]
            except BitlensError as exc:          # unreachable on this image: both matchers say so
                failures.append(f"{path} @ {t}: {exc}")
                continue
            for method, r in zip(("fast", "bisection", "rematch", "moving"), pair):
                err = (r.bpp - t) / t
                rows.append((t, method, r.iterations, r.seconds, err, -args.tolerance <= err <= 0))
    kinds = {"fast": 1, "bisection": 0, "rematch": 2, "moving": 3}
    a = np.array([(t, kinds[m], n, s, e, ok) for t, m, n, s, e, ok in rows], dtype=float)
    lines = [f"Rate matching on {len(images(args))} images, tolerance {args.tolerance:.0%} below target, "
             f"{args.threads} threads, torch {torch.__version__}, model {codec.name}, "
             f"loop filter {'on' if codec.loop_filter else 'off'}",
             "",
             "| target bpp | fast trials | bisection trials | moving-target trials | fast s | bisection s | "
             "speedup | re-match s | re-match speedup | moving-target s | moving-target speedup | "
             "max abs rel err fast (all three) | max abs rel err bisection | all within |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for t in list(CTC) + [None]:
        sel = a if t is None else a[a[:, 0] == t]
        if not len(sel):
            continue
        b, f, w, m = (sel[sel[:, 1] == k] for k in range(4))
        fast_err = np.abs(sel[sel[:, 1] > 0, 4]).max()
        lines.append(f"| {'all' if t is None else t} | {f[:, 2].mean():.2f} | {b[:, 2].mean():.2f} | "
                     f"{m[:, 2].mean():.2f} | {f[:, 3].mean():.3f} | {b[:, 3].mean():.3f} | "
                     f"{b[:, 3].sum() / f[:, 3].sum():.1f}x | {w[:, 3].mean():.3f} | "
                     f"{b[:, 3].sum() / w[:, 3].sum():.1f}x | {m[:, 3].mean():.3f} | "
                     f"{b[:, 3].sum() / m[:, 3].sum():.1f}x | {fast_err:.4f} | {np.abs(b[:, 4]).max():.4f} | "
                     f"{'yes' if sel[:, 5].all() else 'NO'} |")
    lines += [f"- not reachable: {f}" for f in failures]
    lines += ["", f"wall time {time.perf_counter() - t_all:.0f} s"]
    emit(lines, args)


if __name__ == "__main__":
    main()
