"""BD-rate of one model bundle against another on training photos, through the real codec.

For choosing between candidates without touching Kodak: both models encode the same 768x512 crops
of the given photos at the same quality codes (real range coding, integer decoder), and the
per-photo BD-rate of the candidate against the reference is printed with its mean.

    python training/compare.py resources/models/bitlens-hp-v5.pt resources/models/bitlens-hp-v4.pt \
        --photos ../shared/data/train-photos --last 4

A model is a bundle file or a shipped model's id; only an id brings the files kept next to the
weights: the RDOQ channel weights (`.gains.json`) change the encoder's choices, so compare a
shipped model by its id.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from codec.errors import BitlensError  # noqa: E402
from codec.engine import LearnedCodec  # noqa: E402
from codec.images import load_image  # noqa: E402
from codec.color import rgb_to_ycbcr  # noqa: E402
from codec.metrics import bd_rate, plane_psnrs, psnr  # noqa: E402
from codec.model.zoo import load_bundle, read_bundle  # noqa: E402


def rd_points(codec: LearnedCodec, src, codes) -> tuple[list[float], list[float], list[list[float]]]:
    """bpp, PSNR-Y and all plane PSNRs (`plane_psnrs`) at each quality code."""
    an = codec.analyze(src)
    ref = rgb_to_ycbcr(src.rgb)
    bpp, quality, planes = [], [], []
    for q in codes:
        enc = codec.encode(an, int(q))
        dec = codec.decode(enc.data)
        bpp.append(enc.bpp)
        quality.append(psnr(src.y10(), dec.y10))
        planes.append(plane_psnrs(ref, dec.pixels))
    return bpp, quality, planes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("candidate", help="bundle file or shipped model id")
    ap.add_argument("reference", help="bundle file or shipped model id")
    ap.add_argument("--photos", default="../shared/data/train-photos")
    ap.add_argument("--last", type=int, default=4, help="use the last N photos (a context model's hold-out)")
    ap.add_argument("--codes", type=int, nargs="+", default=[16000, 22000, 28000, 34000, 40000])
    ap.add_argument("--loop-filter", choices=("both", "none", "candidate"), default="both",
                    help="which side encodes with the loop filter (candidate: with the same model as the "
                         "reference, the filter's gain)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    models = [LearnedCodec(load_bundle(int(m)) if m.isdigit() else read_bundle(m)) for m in (args.candidate, args.reference)]
    models[0].loop_filter = args.loop_filter in ("both", "candidate")
    models[1].loop_filter = args.loop_filter == "both"
    results, chroma = [], []
    for path in sorted(glob.glob(os.path.join(args.photos, "*.png")))[-args.last:]:
        src = load_image(path)
        src.rgb = src.rgb[:512, :768]
        cand, ref = (rd_points(m, src, args.codes) for m in models)
        chroma.append([np.mean(cand[2], axis=0)[3:], np.mean(ref[2], axis=0)[3:]])
        try:
            results.append(bd_rate(*ref[:2], *cand[:2]))
            bd = f"BD-rate {results[-1]:+.2f}%"
        except BitlensError as exc:    # e.g. a PSNR-Y that falls as the rate rises: no BD-rate
            bd = f"no BD-rate ({exc}; PSNR-Y candidate " + " / ".join(f"{v:.2f}" for v in cand[1]) + \
                 ", reference " + " / ".join(f"{v:.2f}" for v in ref[1]) + " dB)"
        print(f"{os.path.basename(path)}: candidate {np.mean(cand[0]):.4f} bpp {np.mean(cand[1]):.2f} dB, "
              f"reference {np.mean(ref[0]):.4f} bpp {np.mean(ref[1]):.2f} dB, {bd}", flush=True)
    print(f"mean BD-rate of {args.candidate} against {args.reference}: {np.mean(results):+.2f}% "
          f"({len(results)} photos with a BD-rate)")
    (cb, cr), (rcb, rcr) = np.mean(chroma, axis=0)
    print(f"mean PSNR-Cb / PSNR-Cr of 2x2 means (4:2:0 resolution) over the codes: candidate "
          f"{cb:.2f} / {cr:.2f} dB, reference {rcb:.2f} / {rcr:.2f} dB (rates differ: see above)")


if __name__ == "__main__":
    main()
