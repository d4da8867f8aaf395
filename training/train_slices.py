"""Train channel slices of the anchors (codec/model/context.py, `ChannelSlices`) on a frozen shipped
model that has a checkerboard context model.

The anchors, half of y and a little over half of its bits, are coded with the hyperprior alone in
the shipped models. With slices their channels are coded in groups, each group's means and scales
corrected from the groups before it. As in training/train_context.py, y does not depend on the
quality, so the latents of every training photo (x scales x mirror image) are computed once and
cached, and each step runs only h_a, h_s and the small networks on random latent crops at random
qualities and step-offset maps. The loss is the rate of y (anchors with the slices, non-anchors with
the model's frozen context network, which sees, as it was trained, the anchors' values from the
hyperprior's mean, symbol plus mean shift, and the hyperprior's scales): rate-only training.
The anchors' symbols enter each network quantized by the encoder's RDOQ, as they will be coded.

    python training/train_slices.py --config training/configs/v11-slices-cpu.json \\
        --ckpt checkpoints/v11s/last.pt --minutes 80

With `"part": "rest"` in the config it trains channel slices of the non-anchors instead (v12), on a
model that has the anchors' slices (frozen): each non-anchor group's means and scales, already
corrected by the checkerboard network, corrected again from the non-anchor symbols of the groups
before it and the anchors' symbols.

Resumable: state is saved atomically to --ckpt; logs go to <ckpt dir>/log.csv. The last `holdout`
photos of the first data folder are never trained on: the script reports the bits saved on them.
"""
from __future__ import annotations

import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from codec.model.context import ChannelSlices, anchor_mask  # noqa: E402
from codec.model.hyperprior import SCALE_MIN, gaussian_mass  # noqa: E402
from training.train import open_log  # noqa: E402
from training.train_context import (cached_latents, hyper_residuals, load_backbone, resume, through_context,  # noqa: E402
                                    train_loop, training_args)


def rates(net, slices: ChannelSlices, y, q, kmap, noise: bool, part: str = "anchors"
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bits of z, of the anchors and of the non-anchors (with the frozen context network), the
    trained `slices` on the anchors or, `part` "rest", on the non-anchors; noise proxy for
    training, real rounding for evaluation."""
    bits_z, r, log2_ratio, _ = hyper_residuals(net, y, q, kmap)
    r, log2_ratio, _, _ = through_context(net, r, log2_ratio, slices if part == "anchors" else net.slices,
                                          slices if part == "rest" else None)
    v = r + torch.empty_like(r).uniform_(-0.5, 0.5) if noise else torch.round(r)
    bits = -torch.log2(gaussian_mass(v, torch.exp2(log2_ratio).clamp_min(SCALE_MIN)).clamp_min(1e-9))
    a = anchor_mask(*y.shape[-2:], device=y.device).to(r.dtype)
    return bits_z, (bits * a).sum(), (bits * (1 - a)).sum()


@torch.no_grad()
def evaluate(net, slices: ChannelSlices, latents, levels: int, part: str) -> np.ndarray:
    """Bits of z, anchors and non-anchors over held-out latents at five qualities, flat map, real
    rounding."""
    total = np.zeros(3)
    for y in latents:
        y = y.float()[None]
        h, w = (y.shape[-2] // 4) * 4, (y.shape[-1] // 4) * 4
        for q in np.linspace(0.25, levels - 1.25, 5):
            out = rates(net, slices, y[..., :h, :w], torch.tensor([q], dtype=torch.float32),
                        torch.zeros(1, 1, h, w), noise=False, part=part)
            total += [float(v) for v in out]
    return total


def main() -> None:
    args, cfg = training_args("checkpoints/slices/last.pt")
    net = load_backbone(cfg["init"])
    part = cfg.get("part", "anchors")
    if net.context is None or (part == "rest" and net.slices is None):
        raise SystemExit(f"{cfg['init']} has no checkerboard context model" + (" or anchor slices" if part == "rest" else ""))
    slices = ChannelSlices(net.M, **cfg["slices"])
    opt = torch.optim.Adam(slices.parameters(), lr=cfg["lr"])
    gen = torch.Generator().manual_seed(cfg.get("seed", 0))
    step, seconds = resume(args.ckpt, "slices", slices, opt, gen)
    print(f"{sum(p.numel() for p in slices.parameters())} parameters", flush=True)

    data = cached_latents(net, cfg, os.path.join(os.path.dirname(args.ckpt), "latents.pt"))
    batch, size, levels = cfg["batch"], cfg["crop_cells"], net.levels
    train = [y for y in data["train"] if min(y.shape[-2:]) >= size]
    holdout = data["holdout"][::2 * len(cfg["scales"])]   # full size, not mirrored
    log, writer = open_log(args.ckpt, ["step", "seconds", "lr", "bits_z", "bits_anchors", "bits_rest", "bpp"])

    def batch_loss(y, q, kmap):
        bits_z, bits_a, bits_n = rates(net, slices, y, q, kmap, noise=True, part=part)
        return (bits_a + bits_n) / (batch * size * size * 256), (float(bits_z), float(bits_a.detach()), float(bits_n.detach()))

    def report(step, el, lr, acc):   # bits of z, anchors, non-anchors; steps
        bpp = acc[:3].sum() / (acc[3] * batch * size * size * 256)
        writer.writerow([step, f"{el:.0f}", lr, *(f"{v:.0f}" for v in acc[:3]), f"{bpp:.4f}"])
        log.flush()
        print(f"step {step} {el:.0f}s anchors {acc[1] / acc[:3].sum() * 100:.1f}% of the bits, bpp {bpp:.4f}", flush=True)

    train_loop(args, cfg, "slices", slices, opt, gen, step, seconds, train, levels, batch_loss, report)
    if holdout:
        base = evaluate(net, ChannelSlices(net.M, **cfg["slices"]), holdout, levels, part)   # zero nets: as shipped
        new = evaluate(net, slices, holdout, levels, part)
        print(f"held-out photos: all bits {(new.sum() / base.sum() - 1) * 100:+.2f}%, anchors "
              f"{(new[1] / base[1] - 1) * 100:+.2f}%, non-anchors {(new[2] / base[2] - 1) * 100:+.2f}%", flush=True)


if __name__ == "__main__":
    main()
