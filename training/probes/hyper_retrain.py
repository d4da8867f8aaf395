"""Probe: how many more bits does a hyperprior retrained for z in bins of 1.25 save?

Model 16 codes model 15's hyper-latent in bins of 1.25 without retraining (docs/MODEL.md,
"Hyper-latent step"): z costs 0.008 bpp instead of 0.019, but the y prior the hyper-synthesis derives
from the coarser z is worse (y grows by 0.004-0.005 bpp at codes 14000-28000 on held-out photos).
Here the hyper-analysis, hyper-synthesis and z's factorized prior are trained again for that step,
on the rate alone (bits of z in bins of the step, z rounded to the step straight through as in the
model's training; a noise proxy read z at 0.020 bpp where the real rate is 0.008; plus bits of y
through the frozen context models and channel slices, noise proxy), everything else frozen, on the cached latents of the training photos (never Kodak).
Reported: total bits (z + y, real rounding, RDOQ symbols for the context models) on the held-out
photos' latents at five qualities, before and after. The synthesis, and so the distortion, is not
in the loss: a candidate would still be checked through the real codec (training/compare.py).

    python training/probes/hyper_retrain.py --config training/configs/v17-hyper-probe.json \
        --ckpt checkpoints/hyper-probe/last.pt --minutes 20
"""
from __future__ import annotations

import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from codec.model.hyperprior import SCALE_MIN, Y_RATES, gaussian_mass, rate_input  # noqa: E402
from training.train import open_log  # noqa: E402
from training.train_context import (cached_latents, hyper_residuals, load_backbone, resume, through_context,  # noqa: E402
                                    train_loop, training_args)


def total_bits(net, y: torch.Tensor, q: torch.Tensor, kmap: torch.Tensor, step: float, y_rate: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(bits of z, bits of y) of latents y at qualities q, y's rate read as `rate_input` says."""
    bits_z, r, log2_ratio, _ = hyper_residuals(net, y, q, kmap, step)
    r, log2_ratio, _, _ = through_context(net, r, log2_ratio, net.slices, net.rest_slices)
    v = rate_input(r, y_rate)
    bits_y = -torch.log2(gaussian_mass(v, torch.exp2(log2_ratio).clamp_min(SCALE_MIN)).clamp_min(1e-9)).sum()
    return bits_z, bits_y


@torch.no_grad()
def held_out_bits(net, latents: list, step: float) -> tuple[float, float]:
    """(z bits, y bits) over held-out latents at five qualities, flat map, real rounding."""
    zb = yb = 0.0
    for y in latents:
        y = y.float()[None]
        h, w = (y.shape[-2] // 4) * 4, (y.shape[-1] // 4) * 4
        y = y[..., :h, :w]
        for q in np.linspace(0.25, net.levels - 1.25, 5):
            a, b = total_bits(net, y, torch.tensor([q], dtype=torch.float32), torch.zeros(1, 1, h, w), step, "round")
            zb, yb = zb + float(a), yb + float(b)
    return zb, yb


def main() -> None:
    args, cfg = training_args("checkpoints/hyper-probe/last.pt")
    net = load_backbone(cfg["init"])
    step_z = cfg.get("z_step", 1.25)
    y_rate = cfg.get("y_rate", "noise")
    if y_rate not in Y_RATES:
        raise SystemExit(f"y_rate must be one of {Y_RATES}")
    trained = torch.nn.ModuleDict(dict(h_a=net.h_a, h_s=net.h_s, prior_z=net.prior_z))
    trained.requires_grad_(True)
    opt = torch.optim.Adam(trained.parameters(), lr=cfg["lr"])
    gen = torch.Generator().manual_seed(cfg.get("seed", 0))
    data = cached_latents(net, cfg, os.path.join(os.path.dirname(args.ckpt), "latents.pt"))
    holdout = data["holdout"][::2 * len(cfg.get("scales", [1.0]))]   # full-size, unflipped
    before = held_out_bits(net, holdout, step_z)
    step, seconds = resume(args.ckpt, "hyper", trained, opt, gen)
    size = cfg["crop_cells"]
    train = [y for y in data["train"] if min(y.shape[-2:]) >= size]
    log, writer = open_log(args.ckpt, ["step", "seconds", "lr", "bits_z", "bits_y", "bpp"])
    pixels = cfg["batch"] * size * size * 256

    def batch_loss(y, q, kmap):
        bz, by = total_bits(net, y, q, kmap, step_z, y_rate)
        return (bz + by) / pixels, (float(bz.detach()), float(by.detach()), 0.0)

    def report(step, el, lr, acc):
        writer.writerow([step, f"{el:.0f}", lr, f"{acc[0]:.0f}", f"{acc[1]:.0f}", f"{(acc[0] + acc[1]) / (acc[3] * pixels):.4f}"])
        log.flush()
        print(f"step {step} {el:.0f}s z {acc[0] / (acc[3] * pixels):.4f} bpp, y {acc[1] / (acc[3] * pixels):.4f} bpp", flush=True)

    train_loop(args, cfg, "hyper", trained, opt, gen, step, seconds, train, net.levels, batch_loss, report)
    after = held_out_bits(net, holdout, step_z)
    print(f"held-out latents, five qualities: z {before[0]:.0f} -> {after[0]:.0f} bits, y {before[1]:.0f} -> "
          f"{after[1]:.0f} bits, total {sum(before):.0f} -> {sum(after):.0f} ({(sum(after) / sum(before) - 1) * 100:+.2f}%)",
          flush=True)


if __name__ == "__main__":
    main()
