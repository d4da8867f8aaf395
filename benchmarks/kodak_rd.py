"""Our codec on Kodak at the CTC rates: mean bpp, PSNR-Y, encode and decode seconds, BD-rate vs VVenC.

Ours: fast rate matcher, integer decoder, on --threads cores. VVenC: medium preset, 10-bit 4:2:0,
-qpa 0, rate-matched to the closest rate not above each target (cached on disk by codec.anchors).
Encode time is timed separately at a fixed quality (one analysis, coding and the loop filter's fit;
without the fit with --no-loop-filter) as well as with matching.

    python benchmarks/kodak_rd.py [--model ID] [--limit N] [--no-loop-filter] [--markdown docs/kodak_rd.md]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from _common import CTC, emit, images, parser

from codec.anchors import match_anchor
from codec.engine import LearnedCodec
from codec.errors import BitlensError
from codec.images import load_image
from codec.metrics import bd_rate
from codec.model.quality import QMAX
from codec.model.zoo import DEFAULT_MODEL_ID
from codec.pipeline import encode_image


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--no-vvc", action="store_true")
    ap.add_argument("--model", type=int, default=DEFAULT_MODEL_ID, help="model id (default: the default model)")
    ap.add_argument("--loop-filter", action=argparse.BooleanOptionalAction, default=True,
                    help="encode with the adaptive loop filter (default: on, as bitlens encode)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    codec = LearnedCodec.load(args.model)
    codec.loop_filter = args.loop_filter
    paths = images(args)
    ours = {t: [] for t in CTC}     # (bpp, psnr, encode s incl. matching, decode s)
    vvc = {t: [] for t in CTC}
    fixed = []                      # (encode s, decode s) at a fixed quality
    reach = []                      # (lowest, highest) bpp the model reaches on each image
    bd = []
    failures = []
    t_all = time.perf_counter()
    for path in paths:
        src = load_image(path)
        t0 = time.perf_counter()
        an = codec.analyze(src)
        enc = codec.encode(an, QMAX // 2)
        enc_s = time.perf_counter() - t0
        fixed.append((enc_s, codec.decode(enc.data).seconds))
        npix = src.width * src.height
        reach.append((codec.estimate_bytes(an, 0) * 8 / npix, codec.estimate_bytes(an, QMAX) * 8 / npix))
        mine, theirs = [], []
        for t in CTC:
            try:
                r = encode_image(codec, src, target_bpp=t)
            except BitlensError as exc:   # a target outside the model's range on this image
                failures.append(f"{os.path.basename(path)} @ {t}: {exc}")
            else:
                ours[t].append((r.bpp, r.psnr_y, r.encode_seconds, r.decoded.seconds))
                mine.append((r.bpp, r.psnr_y))
            if not args.no_vvc:
                a = match_anchor("vvc", src, t)
                vvc[t].append((a.bpp, a.psnr_y, a.encode_seconds))
                theirs.append((a.bpp, a.psnr_y))
        if not args.no_vvc:
            try:
                bd.append(bd_rate(*zip(*theirs), *zip(*mine)))
            except BitlensError as exc:
                failures.append(f"{os.path.basename(path)} BD-rate: {exc}")
    lines = [f"Kodak ({len(paths)} images), {args.threads} threads, model {codec.name}, "
             f"loop filter {'on' if codec.loop_filter else 'off'}", "",
             "| target | ours bpp | ours PSNR-Y | ours encode s (matched) | ours decode s | VVenC bpp | VVenC PSNR-Y | VVenC encode s |",
             "|---|---|---|---|---|---|---|---|"]
    for t in CTC:
        o = np.array(ours[t]) if ours[t] else np.full((1, 4), np.nan)
        v = np.array(vvc[t]) if vvc[t] else np.full((1, 3), np.nan)
        lines.append(f"| {t} ({len(ours[t])} images) | {o[:, 0].mean():.4f} | {o[:, 1].mean():.2f} | {o[:, 2].mean():.2f} | "
                     f"{o[:, 3].mean():.2f} | {v[:, 0].mean():.4f} | {v[:, 1].mean():.2f} | {v[:, 2].mean():.2f} |")
    f = np.array(fixed)
    steps = "one analysis + range coding" + (" + loop-filter fit" if codec.loop_filter else "")
    lines += ["", f"fixed quality ({steps}): encode {f[:, 0].mean():.3f} s, "
                  f"integer decode {f[:, 1].mean():.3f} s (mean over images)"]
    r = np.array(reach)
    lines.append(f"reachable range: lowest bpp {r[:, 0].min():.4f}..{r[:, 0].max():.4f}, highest bpp "
                 f"{r[:, 1].min():.2f}..{r[:, 1].max():.2f}; 0.06 bpp reachable on {(r[:, 0] <= 0.06).sum()}/"
                 f"{len(r)} images, 1.5 bpp on {(r[:, 1] >= 1.5).sum()}/{len(r)}")
    if bd:
        lines.append(f"BD-rate vs VVenC (PSNR-Y, per-image mean): {np.mean(bd):+.1f}% "
                     f"(median {np.median(bd):+.1f}%, range {np.min(bd):+.1f}% .. {np.max(bd):+.1f}%)")
    if failures:
        lines += ["", f"{len(failures)} points not measured:"] + [f"- {f}" for f in failures]
    lines.append(f"wall time {time.perf_counter() - t_all:.0f} s")
    emit(lines, args)


if __name__ == "__main__":
    main()
