"""Probe: what does the hyper-latent cost, and what if it were quantized in wider bins?

For each candidate step s, model `--base` codes z as round(z / s) with the factorized prior's tables
for bins of width s (`codec.model.zoo.z_table`), and the hyper-synthesis sees z * s; every other
part of the codec is unchanged (analysis, context models, RDOQ, loop filter). The hyper-synthesis
and synthesis run in float here (the shipped variant's integer hyper-synthesis is built by
training/z_step.py), the sizes are those of the real encoder (range-coded z, exact y size).
Measured on 768x512 crops of the last 12 training photos (never Kodak): each code's bpp, PSNR-Y and
z's share, then PSNR-Y at equal rate against step 1 (interpolated on log bpp) and BD-rate over three
code ranges. Output of the run that chose model 16's step: training/v16-z-step-probe-log.txt.

    python training/probes/z_step_probe.py --steps 1 1.25 1.5 1.75 2 3 4
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from codec.engine import LearnedCodec  # noqa: E402
from codec.color import to_10bit  # noqa: E402
from codec.errors import BitlensError  # noqa: E402
from codec.images import load_image  # noqa: E402
from codec.metrics import bd_rate, psnr  # noqa: E402
from codec.model.zoo import load_bundle, z_table  # noqa: E402

CODES = [4000, 6000, 8000, 11000, 14000, 17000, 20000, 24000, 28000, 32000, 36000, 40000, 44000, 48000]
RANGES = ((11000, 24000), (20000, 36000), (32000, 48000), (11000, 48000))


def codec_with_step(base: int, step: float) -> LearnedCodec:
    """Model `base` coding z in bins of `step`, with the float hyper-synthesis and synthesis."""
    codec = LearnedCodec(load_bundle(base))
    codec.integer = None
    codec.z_step, codec.z_table = step, z_table(codec.net, step=step)
    return codec


def rd_table(codec: LearnedCodec, crops: list, codes: list[int]) -> np.ndarray:
    """(photo, code, [bpp, PSNR-Y, z bpp]) through the real encoder."""
    out = []
    for src in crops:
        an = codec.analyze(src)
        rows = []
        for q in codes:
            enc = codec.encode(an, q)
            rec = codec.reconstruct(an, q, backend="float")
            pixels = src.width * src.height
            rows.append((enc.bpp, psnr(src.y10(), to_10bit(rec[..., 0])), len(codec.hyper(an, q).z_data) * 8 / pixels))
        out.append(rows)
    return np.array(out)


def gain_at_equal_rate(ref: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """PSNR-Y of each candidate point minus the reference curve's at the same bpp (NaN outside it)."""
    gains = np.full(cand.shape[:2], np.nan)
    for i, (a, b) in enumerate(zip(ref, cand)):
        order = np.argsort(a[:, 0])
        for j, (bpp, p, _) in enumerate(b):
            if a[:, 0].min() <= bpp <= a[:, 0].max():
                gains[i, j] = p - np.interp(np.log(bpp), np.log(a[order, 0]), a[order, 1])
    return gains


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", type=int, default=15)
    ap.add_argument("--steps", type=float, nargs="+", default=[1, 1.25, 1.5, 1.75, 2])
    ap.add_argument("--photos", default="../shared/data/train-photos")
    ap.add_argument("--last", type=int, default=12)
    args = ap.parse_args()
    torch.set_num_threads(2)
    crops = []
    for path in sorted(glob.glob(os.path.join(args.photos, "*.png")))[-args.last:]:
        src = load_image(path)
        src.rgb = src.rgb[:512, :768]
        crops.append(src)
    tables = {s: rd_table(codec_with_step(args.base, s), crops, CODES) for s in sorted(set([1.0] + args.steps))}
    ref = tables[1.0]
    print("quality code        " + " ".join(f"{c:>7}" for c in CODES))
    print("bpp, step 1         " + " ".join(f"{v:7.4f}" for v in ref[:, :, 0].mean(0)))
    for s, t in tables.items():
        print(f"z bpp, step {s:<5}   " + " ".join(f"{v:7.4f}" for v in t[:, :, 2].mean(0)))
    for s, t in tables.items():
        g = gain_at_equal_rate(ref, t)
        with warnings.catch_warnings():   # codes where no photo's point lies on the reference curve
            warnings.simplefilter("ignore", RuntimeWarning)
            print(f"dPSNR-Y, step {s:<5} " + " ".join(f"{v:+7.3f}" for v in np.nanmean(g, 0))
                  + "   (photos: " + " ".join(str(int(n)) for n in (~np.isnan(g)).sum(0)) + ")")
    for s, t in tables.items():
        if s == 1.0:
            continue
        for lo, hi in RANGES:
            k = [i for i, c in enumerate(CODES) if lo <= c <= hi]
            bds = []
            for a, b in zip(ref, t):
                try:
                    bds.append(bd_rate(a[k, 0], a[k, 1], b[k, 0], b[k, 1]))
                except BitlensError:   # a curve that is not monotonic there
                    pass
            print(f"step {s}: BD-rate over codes {lo}-{hi}: {np.mean(bds):+.2f}% "
                  f"({len(bds)} photos, worst {max(bds):+.2f}%)")


if __name__ == "__main__":
    main()
