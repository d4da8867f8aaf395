"""Fit the fast matcher's rate model (codec/ratemodel.py) for a shipped model on training photos.

Each photo's central 768x512 crop is analysed once, coded exactly (size estimate, with RDOQ) at
the 33 tabulated quality codes, and its log2|y| histogram taken; bits(u) is fitted by least squares
and written next to the weights as resources/models/<stem>.rate.json. A first fit on every other
photo is checked on the rest (printed), then the shipped fit uses all of them. Never Kodak.

    python training/rate_model.py --id 5
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import time

import numpy as np
import torch

from codec.engine import LearnedCodec
from codec.images import load_image
from codec.model.zoo import MODELS, MODELS_DIR
from codec.ratemodel import CODES, RateModel, code_log2_steps, magnitude_histogram

WIDTH = 0.125


def centre_crop(path: str, height: int = 512, width: int = 768):
    src = load_image(path)
    h, w = src.rgb.shape[:2]
    r0, c0 = max(0, (h - height) // 2), max(0, (w - width) // 2)
    src.rgb = src.rgb[r0:r0 + height, c0:c0 + width]
    return src


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--id", type=int, required=True)
    ap.add_argument("--photos", default="../shared/data/train-photos")
    ap.add_argument("--smooth", type=float, default=30.0)
    args = ap.parse_args()
    torch.set_num_threads(2)
    codec = LearnedCodec.load(args.id)
    steps = code_log2_steps(codec.log2_steps_q16)
    hists, bits, npix = [], [], []
    t0 = time.perf_counter()
    for path in sorted(glob.glob(os.path.join(args.photos, "*.png"))):
        src = centre_crop(path)
        an = codec.analyze(src)
        hists.append(magnitude_histogram(an.y, np.zeros(an.grid), WIDTH))
        bits.append([codec.estimate_bytes(an, int(q)) * 8 for q in CODES])
        npix.append(src.width * src.height)
    bits, npix = np.array(bits, dtype=np.float64), np.array(npix, dtype=np.float64)
    print(f"{len(hists)} photos coded at {len(CODES)} codes in {time.perf_counter() - t0:.0f} s")

    def errors(model: RateModel, idx) -> tuple[float, float]:
        """Spread over images of the mean log-rate error, and the rms error of the change in
        log-rate one code step away (what the matcher's second trial depends on)."""
        res = np.array([np.log(bits[i]) - np.log(model.predict_bits(hists[i], steps)) for i in idx])
        step = np.diff(res, axis=1)[:, 4:28]   # the codes of 0.06 - 1.5 bpp
        return float(res.mean(axis=1).std()), float(np.sqrt((step ** 2).mean()))

    even, odd = list(range(0, len(hists), 2)), list(range(1, len(hists), 2))
    held = RateModel.fit([hists[i] for i in even], steps, bits[even], WIDTH, smooth=args.smooth)
    mean_curve = np.log(bits / npix[:, None])[even].mean(axis=0)
    res = np.log(bits / npix[:, None])[odd] - mean_curve
    print(f"held-out photos: offset spread {errors(held, odd)[0]:.3f} (mean curve {res.mean(1).std():.3f}), "
          f"one-step log-rate error {errors(held, odd)[1]:.4f} (mean curve "
          f"{np.sqrt((np.diff(res, axis=1)[:, 4:28] ** 2).mean()):.4f})")
    model = RateModel.fit(hists, steps, bits, WIDTH, smooth=args.smooth)
    out = MODELS_DIR / f"{MODELS[args.id]}.rate.json"
    with open(out, "w") as f:
        json.dump(dict(model=args.id, photos=len(hists), smooth=args.smooth, **model.to_dict()), f)
        f.write("\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
