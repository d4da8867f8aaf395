"""Probe: would latent residual prediction (Minnen & Singh 2020, "LRP") pay on the shipped model?

The decoder puts every symbol back at mu + s * delta. What rounding (and RDOQ) lost, e = y / delta -
mu / delta - s, is not pure noise: neighbouring latents and the other channels are smooth, and RDOQ
pulls values toward the mean. A small network, given what the decoder knows (every symbol, in steps,
and log2(sigma / delta) it was coded with), could predict e and the decoder would put the latent
back at mu + (s + p) * delta. The rate does not change: only the reconstruction.

Trained here in the latent domain on the cached latents of the frozen model (training/train_slices.py's
cache), loss: the squared error left, each channel weighted by the picture error one of its steps
makes (resources/models/<model>.gains.json) times delta^2, relative to that of the bin centres, per
crop. Then measured with the real codec on 768x512 crops of the held-out training photos (never
Kodak): PSNR-Y change against the bin centres, without and with the loop filter (refitted on the new
reconstruction, as an encoder would).

    python training/probes/latent_residual.py --minutes 22 --ckpt checkpoints/lrp/probe.pt

Result (2026-11-27, model 12, 22 minutes, 2,400 steps of batch 16 x 24x24 cells, kernel 3, hidden
128): the weighted latent error fell to 93.2% of the bin centres' (to 93-96% at code 32,000 in the
real codec), and PSNR-Y on the last 6 training photos changed by

| loop filter | 8000 | 16000 | 24000 | 32000 | 40000 |
|---|---|---|---|---|---|
| off | +0.010 | -0.004 | -0.008 | -0.027 | -0.025 |
| on | +0.015 | -0.000 | -0.008 | -0.022 | -0.019 |

dB: the latent-domain weighting (independent +-1 step errors per channel) does not describe the
structured corrections the network makes. training/train_residual.py trains through the synthesis
instead.
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

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from codec.engine import LearnedCodec, Symbols  # noqa: E402
from codec.model.context import LatentResidual  # noqa: E402
from training.probes.recon_offsets import psnr_changes  # noqa: E402
from training.train import random_offset_maps  # noqa: E402
from training.train_context import cached_latents, load_backbone, random_latents  # noqa: E402
from training.train_residual import coded  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resources/models/bitlens-hp-v12.pt")
    ap.add_argument("--latents", default="checkpoints/v11s/latents.pt")
    ap.add_argument("--ckpt", default="checkpoints/lrp/probe.pt")
    ap.add_argument("--minutes", type=float, default=20)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--kernel", type=int, default=3)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--cells", type=int, default=24)
    ap.add_argument("--held-out", type=int, default=6)
    ap.add_argument("--codes", type=int, nargs="+", default=[8000, 16000, 24000, 32000, 40000])
    args = ap.parse_args()
    torch.set_num_threads(2)
    net = load_backbone(args.model)
    gains = torch.tensor(json.load(open(args.model.replace(".pt", ".gains.json")))["weights"])[None, :, None, None]
    lrp = LatentResidual(net.M, args.hidden, args.kernel)
    os.makedirs(os.path.dirname(args.ckpt), exist_ok=True)
    if os.path.exists(args.ckpt):
        lrp.load_state_dict(torch.load(args.ckpt))
    else:
        data = cached_latents(net, {}, args.latents)
        train = [y for y in data["train"] if min(y.shape[-2:]) >= args.cells]
        opt = torch.optim.Adam(lrp.parameters(), lr=args.lr)
        gen = torch.Generator().manual_seed(5)
        t0, step, acc = time.time(), 0, []
        while time.time() - t0 < args.minutes * 60:
            for g in opt.param_groups:
                g["lr"] = args.lr * (0.1 if time.time() - t0 > 0.8 * args.minutes * 60 else 1)
            y = random_latents(train, args.batch, args.cells, gen)
            q = torch.rand(args.batch, generator=gen) * (net.levels - 1)
            kmap = random_offset_maps(args.batch, args.cells, gen, 0.5)
            r, s, lr, log2_delta = coded(net, y, q, kmap)
            w = gains * torch.exp2(2 * log2_delta)
            e = r - s
            left = (w * (e - lrp(s, lr)) ** 2).sum(dim=(1, 2, 3)) / (w * e ** 2).sum(dim=(1, 2, 3))
            loss = left.mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            acc.append(float(loss.detach()))
            if step % 100 == 0:
                print(f"step {step} {time.time() - t0:.0f}s weighted latent error left {np.mean(acc) * 100:.2f}%",
                      flush=True)
                acc = []
        torch.save(lrp.state_dict(), args.ckpt)

    codec = LearnedCodec.load(12)
    lrp.eval()

    def y_hat(sy: Symbols) -> np.ndarray:
        with torch.no_grad():
            p = lrp(torch.from_numpy(sy.s).float()[None], torch.from_numpy(sy.log2_ratio).float()[None])[0].double().numpy()
        return np.clip(sy.mu + (sy.s + p) * sy.delta, -1e4, 1e4)

    paths = sorted(glob.glob("../shared/data/train-photos/*.png"))[-args.held_out:]
    gain = {k[1:]: v for k, v in psnr_changes(codec, paths, args.codes, {"residual": y_hat}).items()}
    print("| loop filter | " + " | ".join(str(q) for q in args.codes) + " |")
    for filtered in (False, True):
        print(f"| {'on' if filtered else 'off'} | " + " | ".join(f"{np.mean(gain[(filtered, q)]):+.3f}" for q in args.codes) + " |")


if __name__ == "__main__":
    main()
