"""Integer vs float decoder on Kodak: BD-rate cost of 16-bit and 8-bit weights (same bitstreams),
decode times, and how often the float path disagrees across CPU configurations.

    python benchmarks/integer_decoder.py [--limit N] [--markdown docs/integer_decoder.md]
"""
from __future__ import annotations

import os
import tempfile
import time

import numpy as np
import torch

from _common import CTC, emit, images, parser

from codec.devices import compare_backends
from codec.engine import LearnedCodec
from codec.errors import BitlensError
from codec.images import load_image
from codec.metrics import bd_rate, psnr
from codec.ratematch import match_rate

BACKENDS = ("float", "integer", "integer8")


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--devices-images", type=int, default=4, help="images for the cross-configuration check")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    codec = LearnedCodec.load()
    paths = images(args)
    curves = {b: [] for b in BACKENDS}     # per image: list of (bpp, psnr) over CTC
    times = {b: [] for b in BACKENDS}
    streams = []
    skipped = []
    t_all = time.perf_counter()
    for path in paths:
        src = load_image(path)
        an = codec.analyze(src)
        pts = {b: [] for b in BACKENDS}
        try:                     # 0.06 is below some images' range; BD-rate needs only 4 points
            encs = [match_rate(codec, src, t, analysis=an).encoded for t in CTC[1:]]
        except BitlensError as exc:
            skipped.append(f"{os.path.basename(path)}: {exc}")
            continue
        for t, enc in zip(CTC[1:], encs):
            if t == 0.25:
                streams.append((os.path.basename(path), enc.data))
            for b in BACKENDS:
                dec = codec.decode(enc.data, b)
                pts[b].append((enc.bpp, psnr(src.y10(), dec.y10)))
                times[b].append(dec.seconds)
        for b in BACKENDS:
            curves[b].append(pts[b])
    lines = [f"Integer decoder on {len(paths)} images, {args.threads} threads, model {codec.name}", "",
             "| decoder | mean PSNR-Y at 0.12 / 0.25 / 0.5 / 0.75 bpp | BD-rate vs float decoder | mean decode s |", "|---|---|---|---|"]
    for b in BACKENDS:
        bds = [bd_rate([p[0] for p in f], [p[1] for p in f], [p[0] for p in c], [p[1] for p in c])
               for f, c in zip(curves["float"], curves[b])]
        mean_psnr = " / ".join(f"{np.mean([c[i][1] for c in curves[b]]):.3f}" for i in range(len(CTC) - 1))
        lines.append(f"| {b} | {mean_psnr} | {np.mean(bds):+.3f}% | {np.mean(times[b]):.3f} |")
    lines += ["", "Cross-configuration decode (0.25 bpp streams; threads 1/N, float64, bf16, "
                  "ATEN_CPU_CAPABILITY=default/avx2/avx512):", "",
              "| image | integer hashes | float hashes | float pixels differing (max over configs) | "
              "float scale indices != integer |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, data) in enumerate(streams[: args.devices_images]):
            p = os.path.join(tmp, f"{i}.bln")
            open(p, "wb").write(data)
            rep = compare_backends(p, threads=args.threads)
            ints = {r.sha256 for r in rep.rows if r.decoder == "integer"}
            fl = [r for r in rep.rows if r.decoder == "float"]
            lines.append(f"| {name} | {len(ints)} | {len({r.sha256 for r in fl})} | "
                         f"{max(r.mismatches for r in fl)} | {max(r.scale_index_mismatches for r in fl)} |")
    lines += [f"- skipped {s}" for s in skipped]
    lines.append(f"\nwall time {time.perf_counter() - t_all:.0f} s")
    emit(lines, args)


if __name__ == "__main__":
    main()
