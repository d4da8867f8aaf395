"""Spatial bit allocation on Kodak: PSNR-Y of the flat map vs each automatic map at equal bpp.

Every encode is rate-matched (fast matcher, within 1% below the target), so the comparison is at the
same rate. Prints mean and max gain per map and target, and encode time including map computation.

    python benchmarks/bitalloc.py [--limit N] [--maps rdo,vvc,variance] [--markdown docs/bitalloc.md]
"""
from __future__ import annotations

import time

import numpy as np
import torch

from _common import emit, images, parser

from codec.engine import LearnedCodec
from codec.errors import BitlensError
from codec.images import load_image
from codec.pipeline import encode_image

TARGETS = (0.12, 0.25, 0.5)


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--maps", default="rdo,vvc,variance")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    codec = LearnedCodec.load()
    maps = args.maps.split(",")
    res = {}   # (map, target) -> list of (gain dB, seconds, bpp within)
    t_all = time.perf_counter()
    paths = images(args)
    for path in paths:
        src = load_image(path)
        for t in TARGETS:
            try:
                flat = encode_image(codec, src, target_bpp=t)
            except BitlensError:
                continue
            for m in maps:
                r = encode_image(codec, src, target_bpp=t, auto_map=m)
                ok = 0.99 * t <= r.bpp <= t and 0.99 * t <= flat.bpp <= t
                res.setdefault((m, t), []).append((r.psnr_y - flat.psnr_y, r.encode_seconds, ok))
        print(f"{path} done", flush=True)
    lines = [f"Bit allocation on {len(paths)} images (PSNR-Y gain over the flat map at equal bpp), "
             f"{args.threads} threads, model {codec.name}", "",
             "| map | target bpp | mean gain dB | max gain dB | min gain dB | mean encode s (map + match) | rates within tolerance |",
             "|---|---|---|---|---|---|---|"]
    for m in maps:
        for t in TARGETS:
            if not res.get((m, t)):
                continue
            a = np.array(res[(m, t)], dtype=float)
            lines.append(f"| {m} | {t} | {a[:, 0].mean():+.3f} | {a[:, 0].max():+.3f} | {a[:, 0].min():+.3f} | "
                         f"{a[:, 1].mean():.2f} | {int(a[:, 2].sum())}/{len(a)} |")
        a = np.concatenate([np.array(res.get((m, t), []), dtype=float).reshape(-1, 3) for t in TARGETS])
        lines.append(f"| {m} | all | {a[:, 0].mean():+.3f} | {a[:, 0].max():+.3f} | {a[:, 0].min():+.3f} | "
                     f"{a[:, 1].mean():.2f} | {int(a[:, 2].sum())}/{len(a)} |")
    lines.append(f"\nwall time {time.perf_counter() - t_all:.0f} s")
    emit(lines, args)


if __name__ == "__main__":
    main()
