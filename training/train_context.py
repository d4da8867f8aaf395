"""Train the checkerboard context model (codec/model/context.py) on top of a frozen shipped model.

The analysis transform does not depend on the quality, so the latents y of every training photo
(x scales x horizontal flip) are computed once and cached; each step then only runs the
hyper-analysis, hyper-synthesis and the small context network on random latent crops, at random
qualities and random step-offset maps. The loss is the rate of the non-anchor half (the anchors'
rate and the reconstruction do not change), so this is rate-only training: minutes on a CPU.

    python training/train_context.py --config training/configs/v5-context.json --minutes 60

Resumable: state is saved atomically to --ckpt; logs go to <ckpt dir>/log.csv. The last
`holdout` photos are never trained on: the script reports the rate saved on them.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from codec.model.context import CheckerboardContext, anchor_mask  # noqa: E402
from codec.model.hyperprior import (SCALE_MIN, VariableRateHyperprior, gaussian_mass, pad_to_multiple,  # noqa: E402
                                    rdoq_symbols)
from codec.model.zoo import read_bundle  # noqa: E402
from training.train import load_photos, open_log, random_offset_maps, random_window, to_ycbcr  # noqa: E402


def load_backbone(path: str) -> VariableRateHyperprior:
    """The frozen float network of a shipped model bundle."""
    bundle = read_bundle(path)   # a variant merged over its base
    net = VariableRateHyperprior(**bundle["config"])
    net.load_state_dict({k: v.float() for k, v in bundle["state_dict"].items()})
    net.eval().requires_grad_(False)
    return net


@torch.no_grad()
def photo_latents(net: VariableRateHyperprior, photos: list[torch.Tensor]) -> list[torch.Tensor]:
    """y = g_a(photo) of every photo and of its mirror image (float16, cropped to whole cells)."""
    out = []
    for im in photos:
        for flip in (False, True):
            x = to_ycbcr((im.flip(2) if flip else im).float()[None] / 255)
            h, w = x.shape[-2] // 16, x.shape[-1] // 16
            out.append(net.g_a(pad_to_multiple(x, 64))[0, :, :h, :w].half())
    return out


def random_latents(latents, batch: int, size: int, gen: torch.Generator) -> torch.Tensor:
    return torch.stack([random_window(latents, size, gen) for _ in range(batch)]).float()


def hyper_residuals(net, y, q, kmap, z_step: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bits of z, and y's residual from the hyperprior's mean in steps, log2(sigma / delta) and log2
    delta: what every context model starts from. z is coded in bins of `z_step` (model 16: 1.25),
    rounded straight through (a trainable hyperprior gets gradients, as in the model's training)."""
    log2_step = net.log2_step(q)
    z, bits_z = net.coded_z(net.hyper_analysis(y, log2_step), z_step)
    mu, log2_sigma = net.entropy_parameters(z)
    log2_delta = log2_step[:, :, None, None] + kmap / 4
    return bits_z, (y - mu) / torch.exp2(log2_delta), log2_sigma - log2_delta, log2_delta


def through_context(net, r, log2_ratio, anchor_slices, rest_slices=None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """y's residual in steps and log2(sigma / delta) once the context models have corrected them as
    the encoder codes y (the anchors channel group by group with `anchor_slices`, the checkerboard
    network from the anchors, then the non-anchors by groups with `rest_slices` if given), and the
    RDOQ symbols of the anchors and of the non-anchors (zero without `rest_slices`), each zero on the
    other half. The checkerboard network sees the anchors as it was trained: symbol plus mean shift,
    from the hyperprior's mean, with the hyperprior's scales."""
    anchors = anchor_mask(*r.shape[-2:], device=r.device)
    a = anchors.to(r.dtype)
    d_mu, d_lr, sym_a = anchor_slices(r, log2_ratio, anchors, rdoq_symbols)
    c_mu, c_lr = net.context(((sym_a + d_mu) * a).detach(), log2_ratio)
    r, log2_ratio = r - d_mu - c_mu * (1 - a), log2_ratio + d_lr + c_lr * (1 - a)
    sym_n = torch.zeros_like(r)
    if rest_slices is not None:
        e_mu, e_lr, sym_n = rest_slices(r, log2_ratio, ~anchors, rdoq_symbols, known=(sym_a * a).detach())
        r, log2_ratio = r - e_mu, log2_ratio + e_lr
    return r, log2_ratio, sym_a * a, sym_n * (1 - a)


def rates(net, ctx, y, q, kmap, noise: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bits of z and the anchors, of the non-anchors with the hyperprior only, and of the non-anchors
    with the context model (noise proxy for training, real rounding for evaluation)."""
    bits_z, r, log2_ratio, _ = hyper_residuals(net, y, q, kmap)
    anchors = anchor_mask(*y.shape[-2:], device=y.device)
    u = torch.empty_like(r).uniform_(-0.5, 0.5) if noise else None

    def bits(v, lr):
        v = v + u if noise else torch.round(v)
        return -torch.log2(gaussian_mass(v, torch.exp2(lr).clamp_min(SCALE_MIN)).clamp_min(1e-9))

    hyper_bits = bits(r, log2_ratio)
    bits_anchor = hyper_bits[..., anchors].sum()
    bits_hyper = hyper_bits[..., ~anchors].sum()
    d_mu, d_lr = ctx(rdoq_symbols(r, log2_ratio).detach() * anchors, log2_ratio)
    bits_ctx = bits(r - d_mu, log2_ratio + d_lr)[..., ~anchors].sum()
    return bits_anchor + bits_z, bits_hyper, bits_ctx


@torch.no_grad()
def evaluate(net, ctx, latents, levels: int) -> float:
    """Total bits (z, anchors, non-anchors with the context) over held-out latents at five qualities,
    flat map, real rounding."""
    total = 0.0
    for y in latents:
        y = y.float()[None]
        h, w = (y.shape[-2] // 4) * 4, (y.shape[-1] // 4) * 4
        y = y[..., :h, :w]
        for q in np.linspace(0.25, levels - 1.25, 5):
            other, _, with_ctx = rates(net, ctx, y, torch.tensor([q], dtype=torch.float32),
                                       torch.zeros(1, 1, h, w), noise=False)
            total += float(other + with_ctx)
    return total


def training_args(default_ckpt: str) -> tuple[argparse.Namespace, dict]:
    """The command line of a trainer on a frozen backbone (--config, --ckpt, --minutes) and its
    config; torch's threads set and the checkpoint's folder made."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--ckpt", default=default_ckpt)
    ap.add_argument("--minutes", type=float, default=None)
    args = ap.parse_args()
    cfg = json.load(open(args.config))
    torch.set_num_threads(cfg.get("threads", 2))
    os.makedirs(os.path.dirname(args.ckpt), exist_ok=True)
    return args, cfg


def resume(path: str, key: str, module: torch.nn.Module, opt: torch.optim.Optimizer,
           gen: torch.Generator) -> tuple[int, float]:
    """(step, seconds) so far: the saved run's, with its module (`key` in the checkpoint),
    optimizer and generator state loaded, or (0, 0.0) for a new run."""
    if not os.path.exists(path):
        return 0, 0.0
    state = torch.load(path, weights_only=False)
    module.load_state_dict(state[key])
    opt.load_state_dict(state["opt"])
    gen.set_state(state["gen"])
    print(f"resumed at step {state['step']}", flush=True)
    return state["step"], state["seconds"]


def split_photos(cfg: dict) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(train, holdout): every photo of the config's folder or folders at every scale (load_photos),
    the last `holdout` photos of the first folder apart."""
    folders = cfg["data"] if isinstance(cfg["data"], list) else [cfg["data"]]
    scales = cfg.get("scales", [1.0])
    train, holdout = [], []
    for i, folder in enumerate(folders):
        photos = load_photos(folder, scales, torch.device("cpu"))
        n_keep = len(photos) - (len(scales) * cfg.get("holdout", 0) if i == 0 else 0)
        train += photos[:n_keep]
        holdout += photos[n_keep:]
    return train, holdout


def cached_latents(net: VariableRateHyperprior, cfg: dict, path: str) -> dict:
    """{"train": [...], "holdout": [...]}: y of every photo of `split_photos` and of its mirror
    image; computed once."""
    if not os.path.exists(path):
        t0 = time.time()
        train, holdout = (photo_latents(net, photos) for photos in split_photos(cfg))
        torch.save(dict(train=train, holdout=holdout), path + ".tmp")
        os.replace(path + ".tmp", path)
        print(f"cached {len(train) + len(holdout)} latents in {time.time() - t0:.0f} s", flush=True)
    return torch.load(path)


def train_loop(args, cfg: dict, key: str, module: torch.nn.Module, opt: torch.optim.Optimizer,
               gen: torch.Generator, step: int, seconds: float, train: list, levels: int,
               batch_loss: Callable, report: Callable, sample: Callable = random_latents) -> None:
    """The loop of the frozen-backbone trainers: random latent crops (or what `sample(train, batch,
    cells, gen)` draws: pixel crops for training/train_residual.py) at random qualities and
    step-offset maps, the learning rate dropped at `decay_at` of the time budget, atomic checkpoints
    of `module` (under `key`), the optimizer and the generator. `batch_loss(crops, q, kmap)` gives
    the loss and three numbers to log; `report(step, seconds, lr, sums)` logs their sums (and the
    step count, last) every `log_every` steps."""
    batch, size = cfg["batch"], cfg["crop_cells"]

    def save() -> None:
        torch.save({key: module.state_dict(), "opt": opt.state_dict(), "step": step, "seconds": seconds,
                    "gen": gen.get_state(), "config": cfg}, args.ckpt + ".tmp")
        os.replace(args.ckpt + ".tmp", args.ckpt)

    acc = np.zeros(4)
    t_start = time.time()
    while step < cfg["steps"] and not (args.minutes and seconds >= args.minutes * 60):
        elapsed = seconds + time.time() - t_start
        decay = args.minutes is not None and elapsed >= cfg.get("decay_at", 0.8) * args.minutes * 60
        for g in opt.param_groups:
            g["lr"] = cfg["lr"] * (cfg.get("lr_final_factor", 0.1) if decay else 1.0)
        y = sample(train, batch, size, gen)
        q = torch.rand(batch, generator=gen) * (levels - 1)
        kmap = random_offset_maps(batch, size, gen, cfg.get("p_flat_map", 0.5))
        loss, logged = batch_loss(y, q, kmap)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        acc += [*logged, 1]
        if step % cfg.get("log_every", 100) == 0:
            report(step, seconds + time.time() - t_start, opt.param_groups[0]["lr"], acc)
            acc[:] = 0
        if step % cfg.get("save_every", 500) == 0:
            seconds += time.time() - t_start
            t_start = time.time()
            save()
        if args.minutes and seconds + time.time() - t_start > args.minutes * 60:
            break
    seconds += time.time() - t_start
    save()


def main() -> None:
    args, cfg = training_args("checkpoints/ctx/last.pt")
    net = load_backbone(cfg["init"])
    ctx = CheckerboardContext(net.M, cfg.get("hidden", 128), cfg.get("kernel", 3))
    opt = torch.optim.Adam(ctx.parameters(), lr=cfg["lr"])
    gen = torch.Generator().manual_seed(cfg.get("seed", 0))
    step, seconds = resume(args.ckpt, "context", ctx, opt, gen)
    data = cached_latents(net, cfg, os.path.join(os.path.dirname(args.ckpt), "latents.pt"))
    batch, size, levels = cfg["batch"], cfg["crop_cells"], net.levels
    train = [y for y in data["train"] if min(y.shape[-2:]) >= size]
    holdout = data["holdout"][::2 * len(cfg.get("scales", [1.0]))]   # full-size, unflipped

    log, writer = open_log(args.ckpt, ["step", "seconds", "lr", "bits_hyper", "bits_ctx", "saved_total_pct", "bpp"])

    def batch_loss(y, q, kmap):
        # bits: z + anchors, non-anchors (hyperprior), non-anchors (context)
        other, hyper_bits, with_ctx = rates(net, ctx, y, q, kmap, noise=True)
        return with_ctx / (batch * size * size * 256), (float(other), float(hyper_bits), float(with_ctx.detach()))

    def report(step, el, lr, acc):
        saved = (acc[1] - acc[2]) / (acc[0] + acc[1]) * 100
        bpp = (acc[0] + acc[2]) / (acc[3] * batch * size * size * 256)
        writer.writerow([step, f"{el:.0f}", lr, f"{acc[1]:.0f}", f"{acc[2]:.0f}", f"{saved:.2f}", f"{bpp:.4f}"])
        log.flush()
        print(f"step {step} {el:.0f}s context saves {saved:.2f}% of all bits, bpp {bpp:.4f}", flush=True)

    train_loop(args, cfg, "context", ctx, opt, gen, step, seconds, train, levels, batch_loss, report)
    if holdout:
        # against the hyperprior alone: a zero context network
        base = evaluate(net, CheckerboardContext(net.M, 8, 1), holdout, levels)
        new = evaluate(net, ctx, holdout, levels)
        print(f"held-out photos: {base:.0f} -> {new:.0f} bits ({(new / base - 1) * 100:+.2f}%)", flush=True)

if __name__ == "__main__":
    main()
