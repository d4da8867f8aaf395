"""Probe: how many bits would a channel-slice context on the anchors save, on a frozen model?

Today's context model (codec/model/context.py) corrects only the non-anchors (half of y), from the
anchors' symbols. The anchors are coded with the hyperprior alone. Here the anchors' channels are
split into `--slices` groups coded one after another, and a small network per group (conv kxk,
ReLU, conv 1x1, ReLU, conv 1x1, zero-initialised last layer, as CheckerboardContext) corrects its
means and scales (in steps) from the symbols of the groups before it and its own log2(sigma/delta)
(Minnen & Singh 2020's channel conditioning, He et al. 2022's ELIC combines it with the
checkerboard). The backbone and the model's own non-anchor context stay frozen; the latter sees the
anchors' values relative to the hyperprior's mean, s + mean shift, rounded to 1/256 as its input.

Rate-only training on cached latents (as training/train_context.py), then the held-out photos'
bits at five qualities (flat map, real rounding) against the model as shipped: z + anchors +
non-anchors, and the anchors' latent squared error (the mean shifts move the reconstruction too).
Nothing here is shipped: it measures whether the format change would pay.

    python training/probes/anchor_slices.py --model 10 --slices 4 --minutes 30
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from codec.model.context import SYMBOL_CLIP, ChannelSlices, anchor_mask  # noqa: E402
from codec.model.hyperprior import SCALE_MIN, gaussian_mass, rdoq_symbols  # noqa: E402
from codec.model.zoo import weights_path  # noqa: E402
from training.train import load_photos, random_offset_maps  # noqa: E402
from training.train_context import hyper_residuals, load_backbone, photo_latents, random_latents  # noqa: E402


def on_256th(v: torch.Tensor) -> torch.Tensor:
    return torch.round(v * 256) / 256


def bits_and_error(net, ctx: ChannelSlices | None, y, q, kmap, noise: bool):
    """Bits of z, of the anchors and of the non-anchors, and the anchors' latent squared error."""
    bits_z, r, lr, log2_delta = hyper_residuals(net, y, q, kmap)
    anchors = anchor_mask(*y.shape[-2:], device=y.device).float()

    def bits(v, l):
        v = v + torch.empty_like(v).uniform_(-0.5, 0.5) if noise else torch.round(v)
        return -torch.log2(gaussian_mass(v, torch.exp2(l).clamp_min(SCALE_MIN)).clamp_min(1e-9))

    C = ctx.C if ctx is not None else r.shape[1]
    symbols, shifts, bits_a = [], [], 0.0
    for s in range(r.shape[1] // C):
        rs, ls = r[:, s * C:(s + 1) * C], lr[:, s * C:(s + 1) * C]
        d_mu = torch.zeros_like(rs)
        if s > 0:
            before = torch.cat(symbols, 1).clamp(-SYMBOL_CLIP, SYMBOL_CLIP) * anchors
            out = ctx.nets[s - 1](torch.cat([before, on_256th(ls).clamp(-127, 127)], 1))
            d_mu, d_lr = out[:, :C], out[:, C:]
            rs, ls = rs - d_mu, ls + d_lr
        bits_a = bits_a + (bits(rs, ls) * anchors).sum()
        symbols.append(rdoq_symbols(rs, ls).detach())
        shifts.append(d_mu)
    sym, shift = torch.cat(symbols, 1), torch.cat(shifts, 1)
    d_mu, d_lr = net.context(on_256th(sym + shift.detach()) * anchors, lr)
    bits_n = (bits(r - d_mu, lr + d_lr) * (1 - anchors)).sum()
    err = (((sym + shift - r) * torch.exp2(log2_delta)) ** 2 * anchors).sum()
    return bits_z, bits_a, bits_n, err


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=int, default=10)
    ap.add_argument("--slices", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--kernel", type=int, default=3)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--holdout", type=int, default=6, help="the last N photos are never trained on")
    ap.add_argument("--photos", default="../shared/data/train-photos")
    ap.add_argument("--cache", default="checkpoints/probes/latents-v{model}.pt")
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    net = load_backbone(str(weights_path(args.model)))
    cache = args.cache.format(model=args.model)
    scales = [1.0, 0.7, 0.5]
    if not os.path.exists(cache):
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        lat = photo_latents(net, load_photos(args.photos, scales, torch.device("cpu")))
        n_train = len(glob.glob(os.path.join(args.photos, "*.png"))) - args.holdout
        torch.save(dict(train=lat[:2 * len(scales) * n_train], holdout=lat[2 * len(scales) * n_train:]), cache)
    data = torch.load(cache)
    train = [y for y in data["train"] if min(y.shape[-2:]) >= 24]
    holdout = data["holdout"][::2 * len(scales)]   # full size, not mirrored
    ctx = ChannelSlices(net.M, args.slices, args.hidden, args.kernel)
    print(f"{sum(p.numel() for p in ctx.parameters())} parameters", flush=True)

    @torch.no_grad()
    def evaluate(c) -> np.ndarray:
        total = np.zeros(4)
        for y in holdout:
            y = y.float()[None]
            h, w = (y.shape[-2] // 4) * 4, (y.shape[-1] // 4) * 4
            for q in np.linspace(0.25, net.levels - 1.25, 5):
                out = bits_and_error(net, c, y[..., :h, :w], torch.tensor([q], dtype=torch.float32),
                                     torch.zeros(1, 1, h, w), False)
                total += [float(v) for v in out]
        return total

    def report(label: str, new: np.ndarray) -> None:
        print(f"{label}: all bits {(new[:3].sum() / base[:3].sum() - 1) * 100:+.2f}%, anchors "
              f"{(new[1] / base[1] - 1) * 100:+.2f}%, non-anchors {(new[2] / base[2] - 1) * 100:+.2f}%, "
              f"anchors' latent squared error {(new[3] / base[3] - 1) * 100:+.2f}%", flush=True)

    base = evaluate(None)
    opt = torch.optim.Adam(ctx.parameters(), lr=5e-4)
    gen = torch.Generator().manual_seed(0)
    t0, step = time.time(), 0
    while time.time() - t0 < args.minutes * 60:
        if time.time() - t0 > 0.8 * args.minutes * 60:
            for g in opt.param_groups:
                g["lr"] = 5e-5
        y = random_latents(train, 16, 24, gen)
        q = torch.rand(16, generator=gen) * (net.levels - 1)
        _, bits_a, bits_n, _ = bits_and_error(net, ctx, y, q, random_offset_maps(16, 24, gen, 0.5), True)
        loss = (bits_a + bits_n) / (16 * 24 * 24 * 256)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 500 == 0:
            report(f"step {step}, {time.time() - t0:.0f} s", evaluate(ctx))
    report(f"held-out photos after {step} steps", evaluate(ctx))


if __name__ == "__main__":
    main()
