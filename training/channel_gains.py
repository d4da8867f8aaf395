"""Measure how much picture error one quantization step of each latent channel makes, for RDOQ.

RDOQ (codec/entropy/rdoq.py) trades bits against squared error counted in quantization steps. A
step of one channel does not cost the picture what a step of another does: the synthesis amplifies
some channels far more than others (the gains below spread over a factor of about 20). For each
channel, every latent of a decoded crop gets a random +-1 step of error in that channel alone, and
the float synthesis' squared error per latent is taken in the training loss' weighting
(6 Y + Cb + Cr) / 8. The mean over photos and qualities, divided by its geometric mean, is
written next to the weights as resources/models/<stem>.gains.json; RDOQ multiplies its constant by
it per channel. Measured on the first training photos (the last 12 are the comparison set of
training/compare.py), never on Kodak.

    python training/channel_gains.py --id 8
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from codec.engine import LearnedCodec  # noqa: E402
from codec.images import load_image  # noqa: E402
from codec.model.zoo import MODELS, MODELS_DIR  # noqa: E402

PLANE_WEIGHTS = np.array([6.0, 1.0, 1.0]) / 8   # the training loss' Y'CbCr weighting


@torch.inference_mode()
def step_gains(codec: LearnedCodec, src, q_code: int, gen: torch.Generator) -> np.ndarray:
    """Weighted squared picture error per latent position of a +-1 step error in each channel (M,)."""
    sy = codec.symbols(codec.analyze(src), q_code)
    y_hat = torch.from_numpy(codec.y_hat(sy).astype(np.float32))[None]
    delta = torch.from_numpy(sy.delta.astype(np.float32))
    base = codec.net.g_s(y_hat)
    positions = y_hat.shape[2] * y_hat.shape[3]
    gains = []
    for c in range(y_hat.shape[1]):
        signs = torch.randint(0, 2, y_hat.shape[2:], generator=gen).float() * 2 - 1
        moved = y_hat.clone()
        moved[0, c] += signs * delta[c]
        plane_sse = ((codec.net.g_s(moved) - base)[0] ** 2).sum(dim=(1, 2)).numpy()
        gains.append(float(plane_sse @ PLANE_WEIGHTS) / positions)
    return np.array(gains)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--id", type=int, required=True)
    ap.add_argument("--photos", default="../shared/data/train-photos")
    ap.add_argument("--first", type=int, default=12, help="use the first N photos")
    ap.add_argument("--crop", type=int, default=256, help="square crop from each photo's top left")
    ap.add_argument("--codes", type=int, nargs="+", default=[16000, 28000, 40000])
    args = ap.parse_args()
    torch.set_num_threads(2)
    codec = LearnedCodec.load(args.id)
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    runs = []
    paths = sorted(glob.glob(os.path.join(args.photos, "*.png")))[:args.first]
    for q in args.codes:
        for path in paths:
            src = load_image(path)
            src.rgb = src.rgb[:args.crop, :args.crop]
            runs.append(step_gains(codec, src, q, gen))
    gains = np.mean(runs, axis=0)
    weights = gains / np.exp(np.log(gains).mean())
    print(f"{len(runs)} crops in {time.perf_counter() - t0:.0f} s; relative weights "
          f"{weights.min():.3f} .. {weights.max():.3f} (quartiles {np.quantile(weights, [.25, .5, .75]).round(2)})")
    out = MODELS_DIR / f"{MODELS[args.id]}.gains.json"
    with open(out, "w") as f:
        json.dump(dict(model=args.id, photos=len(paths), crop=args.crop, codes=args.codes,
                       weights=[round(float(w), 5) for w in weights]), f)
        f.write("\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
