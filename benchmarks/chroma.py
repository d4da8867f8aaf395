"""PSNR of all three planes on Kodak at the CTC rates: our models against VVenC, in one run.

Bitlens' headline metric is PSNR-Y; this shows what each model does to chroma at the same rates.
Every reconstruction (ours rate-matched with the fast matcher, VVenC from the anchor cache) is
taken as the decoded 8-bit RGB, converted to BT.709 Y'CbCr and compared with the source's, so the
three codecs are measured alike (10-bit planes, peak 1023). A second table measures chroma on 2x2
means of both planes: the resolution a 4:2:0 codec keeps, so a model that drops only finer chroma
detail (model 8's 4:2:0-aware loss) is judged there alike with VVenC.

    python benchmarks/chroma.py [--models 5 6] [--limit N] [--markdown docs/chroma.md]
"""
from __future__ import annotations

import time

import numpy as np
import torch

from _common import CTC, emit, images, parser

from codec.anchors import match_anchor
from codec.color import rgb_to_ycbcr
from codec.engine import LearnedCodec
from codec.images import load_image
from codec.metrics import plane_psnrs
from codec.ratematch import match_rate


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--models", type=int, nargs="+", default=[5, 6])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    codecs = {f"model {m}": LearnedCodec.load(m) for m in args.models}
    rows: dict[tuple[str, float], list[list[float]]] = {}
    t0 = time.perf_counter()
    paths = images(args)
    for path in paths:
        src = load_image(path)
        ref = rgb_to_ycbcr(src.rgb)
        analyses = {name: c.analyze(src) for name, c in codecs.items()}
        for t in CTC:
            recs = {name: c.decode(match_rate(c, src, t, analysis=analyses[name]).encoded.data).pixels
                    for name, c in codecs.items()}
            recs["VVenC"] = match_anchor("vvc", src, t).rgb8
            for name, rgb8 in recs.items():
                rows.setdefault((name, t), []).append(plane_psnrs(ref, rgb8))
    names = list(codecs) + ["VVenC"]
    lines = [f"PSNR-Y / PSNR-Cb / PSNR-Cr (dB, 10-bit, from decoded RGB) on {len(paths)} images, "
             f"{args.threads} threads", "",
             "| codec | " + " | ".join(f"{t:g} bpp" for t in CTC) + " |",
             "|---|" + "---|" * len(CTC)]
    for name in names:
        cells = ["%.2f / %.2f / %.2f" % tuple(np.mean(rows[(name, t)], axis=0)[:3]) for t in CTC]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "PSNR-Cb / PSNR-Cr (dB) of 2x2 means (chroma at 4:2:0 resolution), same decodes", "",
              "| codec | " + " | ".join(f"{t:g} bpp" for t in CTC) + " |",
              "|---|" + "---|" * len(CTC)]
    for name in names:
        cells = ["%.2f / %.2f" % tuple(np.mean(rows[(name, t)], axis=0)[3:]) for t in CTC]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"wall time {time.perf_counter() - t0:.0f} s"]
    emit(lines, args)


if __name__ == "__main__":
    main()
