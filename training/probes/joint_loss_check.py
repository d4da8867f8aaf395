"""Probe: did the joint fine-tune of 2026-11-29 improve its own training objective?

The training loss (lambda x 255^2 x weighted MSE + bpp, y's rate by the uniform-noise proxy, z in
bins of 1.25) of v16 and of the fine-tuned checkpoint on the same 48 random 256x256 crops of the
photos it trained on, at the same random qualities and noise (flat maps). docs/MODEL.md, "Joint
fine-tune at the z step".

    python training/probes/joint_loss_check.py --ckpt checkpoints/v17j/last.pt
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from codec.model.hyperprior import VariableRateHyperprior  # noqa: E402
from codec.model.zoo import read_bundle  # noqa: E402
from training.train import load_photos, random_batch, training_model, weighted_mse  # noqa: E402


def training_loss(model: VariableRateHyperprior, photos: list, batches: int = 12) -> dict[str, float]:
    """Mean loss, proxy bpp and PSNR-Y over `batches` batches of 4 crops, the same for every model."""
    gen = torch.Generator().manual_seed(123)
    torch.manual_seed(5)
    loss = bpp = mse_y = 0.0
    with torch.no_grad():
        for _ in range(batches):
            x = random_batch(photos, 4, 256, gen)
            q = torch.rand(4, generator=gen) * (model.levels - 1)
            out = model(x, q, None)
            b = (out["bits_y"] + out["bits_z"]) / x[:, 0].numel()
            mse_w, my = weighted_mse(out["x_hat"].float(), x, True)
            loss += float((model.lmbda(q) * 255 ** 2 * mse_w).mean() + b)
            bpp += float(b)
            mse_y += float(my.mean())
    return dict(loss=loss / batches, bpp=bpp / batches, psnr_y=10 * math.log10(batches / mse_y))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", default="checkpoints/v17j/last.pt")
    ap.add_argument("--config", default="training/configs/v17-joint-cpu.json")
    ap.add_argument("--photos", default="checkpoints/train37")
    args = ap.parse_args()
    torch.set_num_threads(2)
    cfg = json.load(open(args.config))
    photos = load_photos([args.photos], cfg["scales"], torch.device("cpu"))
    states = {cfg["init"]: {k: v.float() for k, v in read_bundle(cfg["init"])["state_dict"].items()},
              args.ckpt: torch.load(args.ckpt, weights_only=False)["model"]}
    for name, state in states.items():
        model = training_model(cfg)
        model.load_state_dict(state)
        r = training_loss(model.eval(), photos)
        print(f"{name}: loss {r['loss']:.4f}, proxy {r['bpp']:.4f} bpp, PSNR-Y {r['psnr_y']:.3f} dB", flush=True)


if __name__ == "__main__":
    main()
