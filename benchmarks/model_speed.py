"""Encode and decode seconds of several models on the same images, interleaved in one run.

The machine's speed drifts within a day (README), so two models' seconds from different runs do
not compare; here each image is encoded (one analysis, coding and the loop filter's fit, at a fixed
quality code), size-estimated (one rate-matcher trial on a fresh analysis: the symbols and the
exact size) and decoded (integer) by every model in turn, `--repeats` times, and the medians are
printed with their ratio to the first model.

    python benchmarks/model_speed.py --models 10 11 --limit 8 [--markdown docs/model_speed.md]
"""
from __future__ import annotations

import time

import numpy as np
import torch

from _common import emit, images, parser, seconds

from codec.engine import LearnedCodec
from codec.images import load_image


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--models", type=int, nargs="+", default=[10, 11])
    ap.add_argument("--code", type=int, default=28000, help="quality code of the encodes")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    codecs = [LearnedCodec.load(m) for m in args.models]
    times = {m: {"encode": [], "trial": [], "decode": []} for m in args.models}
    t_start = time.perf_counter()
    for path in images(args):
        src = load_image(path)
        for _ in range(args.repeats):
            for m, codec in zip(args.models, codecs):
                an = codec.analyze(src)
                times[m]["trial"].append(seconds(lambda: codec.estimate_bytes(an, args.code)))
                out = []
                times[m]["encode"].append(seconds(lambda: out.append(codec.encode(codec.analyze(src), args.code))))
                times[m]["decode"].append(seconds(lambda: codec.decode(out[0].data)))
    n = len(images(args))
    lines = [f"Model speed on {n} images, quality code {args.code}, {args.threads} threads, median of "
             f"{args.repeats} interleaved runs per image", "",
             "| model | encode s (fixed quality) | one size-estimate trial s | integer decode s | "
             "encode / first | trial / first | decode / first |", "|---|---|---|---|---|---|---|"]
    first = {k: np.median(v) for k, v in times[args.models[0]].items()}
    for m in args.models:
        med = {k: np.median(v) for k, v in times[m].items()}
        lines.append(f"| {m} | {med['encode']:.3f} | {med['trial']:.3f} | {med['decode']:.3f} | "
                     f"{med['encode'] / first['encode']:.3f} | {med['trial'] / first['trial']:.3f} | "
                     f"{med['decode'] / first['decode']:.3f} |")
    lines += ["", f"wall time {time.perf_counter() - t_start:.0f} s"]
    emit(lines, args)


if __name__ == "__main__":
    main()
