"""Train latent residual prediction (codec/model/context.py, `LatentResidual`) on a frozen shipped
model with channel slices on both halves of the checkerboard.

The decoder puts every latent back at mu + s * delta, the centre of its bin. What rounding and RDOQ
left out, e = (y - mu) / delta - s, is partly predictable from the symbols around it and in the
other channels; the network predicts it and the decoder adds it. The rate does not change, so the
loss is the distortion alone: the training loss' (6 Y + Cb + Cr) / 8 squared error of the frozen
synthesis on random crops of the training photos, its log per crop (every crop counts alike at
every quality). A loss in the latent domain (squared error left, each channel weighted by the
picture error one of its steps makes) was tried first and does not transfer: 20 minutes removed
6.8% of that weighted error and lowered PSNR-Y by up to 0.03 dB (training/probes/latent_residual.py).
Each step runs the analysis, h_a, h_s and the frozen context networks (which give the symbols and
scales as the encoder codes them, RDOQ included) without gradients, then the new network and the
synthesis (bf16 autocast) with them.

    python training/train_residual.py --config training/configs/v13-residual-cpu.json \\
        --ckpt checkpoints/v13lrp/last.pt --minutes 42

Resumable: state is saved atomically to --ckpt; logs go to <ckpt dir>/log.csv (the loss, and the
same crops' distortion at the bin centres). The last `holdout` photos of the first data folder are
never trained on: training/compare.py measures the exported model on them.
"""
from __future__ import annotations

import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from codec.model.context import LatentResidual  # noqa: E402
from training.train import open_log, random_batch, weighted_mse  # noqa: E402
from training.train_context import (hyper_residuals, load_backbone, resume, split_photos, through_context,  # noqa: E402
                                    train_loop, training_args)


@torch.no_grad()
def coded(net, y, q, kmap) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """y in steps from its final mean, the symbols (RDOQ), the log2(sigma / delta) they are coded
    with and log2 delta, as the frozen model's encoder has them."""
    _, r, log2_ratio, log2_delta = hyper_residuals(net, y, q, kmap)
    r, log2_ratio, sym_a, sym_n = through_context(net, r, log2_ratio, net.slices, net.rest_slices)
    return r, sym_a + sym_n, log2_ratio, log2_delta


def distortions(net, residual: LatentResidual, x, q, kmap) -> tuple[torch.Tensor, torch.Tensor]:
    """Per crop: the weighted squared error of the synthesis with the predicted residual, and at
    the bin centres (no gradient)."""
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        y = net.g_a(x).float()
    r, s, lr, log2_delta = coded(net, y, q, kmap)
    delta = torch.exp2(log2_delta)
    centres = y - (r - s) * delta
    with torch.autocast("cpu", dtype=torch.bfloat16):
        d = weighted_mse(net.g_s(centres + residual(s, lr) * delta).float(), x)[0]
        with torch.no_grad():
            d0 = weighted_mse(net.g_s(centres).float(), x)[0]
    return d, d0


def main() -> None:
    args, cfg = training_args("checkpoints/residual/last.pt")
    net = load_backbone(cfg["init"])
    if net.rest_slices is None:
        raise SystemExit(f"{cfg['init']} has no channel slices of the non-anchors")
    residual = LatentResidual(net.M, **cfg["residual"])
    opt = torch.optim.Adam(residual.parameters(), lr=cfg["lr"])
    gen = torch.Generator().manual_seed(cfg.get("seed", 0))
    step, seconds = resume(args.ckpt, "residual", residual, opt, gen)
    print(f"{sum(p.numel() for p in residual.parameters())} parameters", flush=True)
    batch, size = cfg["batch"], cfg["crop_cells"]
    photos = [p for p in split_photos(cfg)[0] if min(p.shape[-2:]) >= size * 16]
    log, writer = open_log(args.ckpt, ["step", "seconds", "lr", "log_distortion", "log_distortion_centres"])

    def batch_loss(x, q, kmap):
        d, d0 = distortions(net, residual, x, q, kmap)
        loss = torch.log(d).mean()
        return loss, (float(loss.detach()), float(torch.log(d0).mean()), 0.0)

    def report(step, el, lr, acc):
        gain = (acc[1] - acc[0]) / acc[3] * 10 / np.log(10)
        writer.writerow([step, f"{el:.0f}", lr, f"{acc[0] / acc[3]:.5f}", f"{acc[1] / acc[3]:.5f}"])
        log.flush()
        print(f"step {step} {el:.0f}s distortion {gain:+.3f} dB against the bin centres", flush=True)

    train_loop(args, cfg, "residual", residual, opt, gen, step, seconds, photos, net.levels, batch_loss, report,
               sample=lambda photos, n, cells, g: random_batch(photos, n, cells * 16, g))


if __name__ == "__main__":
    main()
