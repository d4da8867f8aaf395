"""A model variant whose quantization steps suit PSNR-Y: the same network, per-channel step offsets.

The shipped networks were trained on a distortion weighting Y:Cb:Cr as 6:1:1, so their learned steps
balance rate against that mix. Bitlens is judged on PSNR-Y against a 4:2:0 anchor. High-rate theory
makes each channel's step proportional to 1/sqrt(g) at equal slope, g being the distortion one unit
of quantization noise on that channel causes after the synthesis; so with g measured per output
plane, moving from the trained weighting to luma alone multiplies channel c's step by

    ( (6 g_Y + g_Cb + g_Cr) / (6 g_Y) ) ^ (alpha / 2)

(alpha = 1 is the theory). Channels that mostly carry chroma get coarser; luma channels keep their
step, and the rate matcher moves the quality to keep the rate. g is measured with the float
synthesis on crops of the first training photos (never Kodak), with uniform noise of one step on one
channel at a time. The hyper-analysis keeps seeing the trained steps (`hyper_log2_steps_q16`), so
z is what the model learned to send.

The variant is stored as a small file: its base's model id and the entries that differ (steps, the
matcher's fallback prior); `codec.model.zoo.load_bundle` merges it over the base. It needs a model
id of its own, since the same quality code now means other steps.

    python training/luma_steps.py --base-id 5 --id 6 resources/models/bitlens-hp-v6.pt
    python training/compare.py resources/models/bitlens-hp-v6.pt resources/models/bitlens-hp-v5.pt --last 12
"""
from __future__ import annotations

import argparse
import glob
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from codec.engine import LearnedCodec  # noqa: E402
from codec.images import load_image  # noqa: E402
from codec.model.quality import Q16, log2_step_q16, step_from_log2_q16  # noqa: E402
from codec.model.zoo import load_bundle  # noqa: E402
from training.export import calibration_crops, rate_prior  # noqa: E402

WEIGHTS = np.array([6.0, 1.0, 1.0])   # the training distortion's Y:Cb:Cr weighting (training/train.py)


@torch.no_grad()
def channel_gains(codec: LearnedCodec, crops: list, q_code: int, batch: int = 32) -> np.ndarray:
    """(M, 3): mean squared change of Y, Cb, Cr per unit-step uniform noise on each latent channel."""
    net, m = codec.net, codec.net.M
    delta = step_from_log2_q16(log2_step_q16(codec.log2_steps_q16, q_code), codec.pow2_hi, codec.pow2_lo)
    gains = np.zeros((m, 3))
    gen = torch.Generator().manual_seed(0)
    for src in crops:
        y = codec.analyze(src).y
        y_hat = torch.from_numpy((np.round(y / delta[:, None, None]) * delta[:, None, None]).astype(np.float32))
        base = net.g_s(y_hat[None])
        for c0 in range(0, m, batch):
            chans = range(c0, min(m, c0 + batch))
            x = y_hat[None].repeat(len(chans), 1, 1, 1)
            for i, c in enumerate(chans):
                x[i, c] += (torch.rand(x.shape[-2:], generator=gen) - 0.5) * float(delta[c])
            diff = net.g_s(x) - base
            gains[c0:c0 + len(chans)] += (diff ** 2).mean(dim=(2, 3)).double().numpy()
    return gains / len(crops)


def luma_offsets(gains: np.ndarray, alpha: float) -> np.ndarray:
    """log2 step offset per channel moving the equal-slope point from the training weighting to Y."""
    return alpha / 2 * np.log2((gains @ WEIGHTS) / (WEIGHTS[0] * gains[:, 0]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-id", type=int, required=True)
    ap.add_argument("--id", type=int, required=True)
    ap.add_argument("output")
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--photos", default="../shared/data/train-photos")
    ap.add_argument("--crops", type=int, default=6, help="the first N training photos measure the gains")
    ap.add_argument("--q-code", type=int, default=28000)
    args = ap.parse_args()
    torch.set_num_threads(2)
    base = load_bundle(args.base_id)
    codec = LearnedCodec(base)
    crops = [load_image(p) for p in sorted(glob.glob(os.path.join(args.photos, "*.png")))[:args.crops]]
    for src in crops:
        src.rgb = src.rgb[:256, :384]
    offsets = luma_offsets(channel_gains(codec, crops, args.q_code), args.alpha)
    print(f"per-channel log2 step offsets: min {offsets.min():.3f} median {np.median(offsets):.3f} "
          f"max {offsets.max():.3f}; the largest {np.round(np.sort(offsets)[::-1][:4], 2).tolist()}")
    name = os.path.splitext(os.path.basename(args.output))[0]
    variant = dict(
        base_model_id=args.base_id, model_id=args.id, name=name,
        log2_steps_q16=base["log2_steps_q16"] + torch.from_numpy(np.round(offsets * Q16).astype(np.int64))[None],
        hyper_log2_steps_q16=base.get("hyper_log2_steps_q16", base["log2_steps_q16"]).clone(),
        luma_steps=dict(alpha=args.alpha, q_code=args.q_code, crops=args.crops,
                        gains_photos="first training photos, top-left 256x384", offsets=torch.from_numpy(offsets)))
    variant["rate_prior"] = torch.from_numpy(rate_prior({**base, **variant}, calibration_crops(args.photos, 8)))
    torch.save(variant, args.output + ".tmp")
    os.replace(args.output + ".tmp", args.output)
    print(f"wrote {args.output} (variant of model {args.base_id})")


if __name__ == "__main__":
    main()
