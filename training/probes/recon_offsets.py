"""Probe: would the decoder gain by putting symbols back off the centre of their bins?

The decoder puts a nonzero symbol s back at mu + s * delta, the centre of its bin. The latents in a
bin are not spread evenly over it (their density falls away from the mean, and RDOQ moves values
near a bin edge one bin inward), so the bin's centroid lies toward the mean. A decoder could put
s back at mu + (s + sign(s) * theta[row, b]) * delta, theta a table by the scale row s is coded with
and b = min(|s|, 4), signalled by the model (no bitstream change, the rate stays). Measured here
with v10 frozen, on 768x512 crops of training photos (centroids from the first 37, PSNR-Y on the
last 12, the comparison set of training/compare.py; never Kodak):

- `centroid x a`: a times the latent centroid of each (row, b) bin, pooled over five qualities
  (a < 0 moves symbols away from the mean);
- `fitted`: a table fitted by Adam to lower the mean log of the training loss' weighted squared
  error of the float synthesis without the loop filter, the encoder's symbols fixed (`--fit-steps`).

Each is measured without the loop filter and with it (refitted on the new reconstruction, as an
encoder would). Nothing here is shipped.

    python training/probes/recon_offsets.py [--fit-steps 600]
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from codec.color import to_10bit  # noqa: E402
from codec.engine import LearnedCodec, Symbols  # noqa: E402
from codec.images import load_image  # noqa: E402
from codec.metrics import psnr  # noqa: E402
from training.channel_gains import PLANE_WEIGHTS  # noqa: E402

BUCKETS = 4                                          # |s| = 1, 2, 3, 4 or more


def buckets(s: np.ndarray) -> np.ndarray:
    return np.clip(np.abs(s), 1, BUCKETS) - 1


def offsets(theta: np.ndarray) -> Callable[[Symbols], np.ndarray]:
    """A `LearnedCodec.y_hat` that puts nonzero symbols back `theta` (rows, BUCKETS) steps off
    their bin centres."""
    def y_hat(sy: Symbols) -> np.ndarray:
        shift = np.where(sy.s != 0, theta[sy.rows, buckets(sy.s)] * np.sign(sy.s), 0.0)
        return np.clip(sy.mu + (sy.s + shift) * sy.delta, -1e4, 1e4)
    return y_hat


def psnr_changes(codec: LearnedCodec, paths: list[str], codes: list[int],
                 reconstructions: dict[str, Callable[[Symbols], np.ndarray]]) -> dict[tuple, list[float]]:
    """PSNR-Y of each of `reconstructions` (a `y_hat` put in the codec instance's place, encoder's
    filter fit and decoder alike) minus that at the bin centres, per (name, loop filter, code), one
    value per photo of `paths` (768x512 crops); with the loop filter it is fitted again on each."""
    gain: dict[tuple, list[float]] = {}
    for path in paths:
        ref = crop(path).y10()
        for filtered in (False, True):
            an = codec.analyze(crop(path), loop_filter=filtered)
            for q in codes:
                sy = codec.symbols(an, q)
                psnrs = {}
                for name, y_hat in {"centre": None, **reconstructions}.items():
                    codec.__dict__.pop("y_hat", None)
                    if y_hat is not None:
                        codec.y_hat = y_hat
                    sy.filters.clear()
                    psnrs[name] = psnr(ref, to_10bit(codec.reconstruct(an, q)[..., 0]))
                for name in reconstructions:
                    gain.setdefault((name, filtered, q), []).append(psnrs[name] - psnrs["centre"])
        codec.__dict__.pop("y_hat", None)
    return gain


def crop(path: str, size=(512, 768), at=(0, 0)):
    src = load_image(path)
    src.rgb = src.rgb[at[0]:at[0] + size[0], at[1]:at[1] + size[1]]
    return src


def centroids(codec: LearnedCodec, paths: list[str], codes: list[int]) -> np.ndarray:
    """Mean of sign(s) * (v - s), v the latent in steps, per (row, bucket) over nonzero symbols."""
    total, count = np.zeros((codec.y_table.rows, BUCKETS)), np.zeros((codec.y_table.rows, BUCKETS))
    for path in paths:
        an = codec.analyze(crop(path), loop_filter=False)
        for q in codes:
            sy = codec.symbols(an, q)
            nz = sy.s != 0
            err = ((an.y - sy.mu) / sy.delta - sy.s)[nz] * np.sign(sy.s[nz])
            np.add.at(total, (sy.rows[nz], buckets(sy.s[nz])), err)
            np.add.at(count, (sy.rows[nz], buckets(sy.s[nz])), 1)
    return np.where(count > 50, total / np.maximum(count, 1), 0.0)


def fitted(codec: LearnedCodec, paths: list[str], steps: int, gen: np.random.Generator) -> np.ndarray:
    """A table lowering the float synthesis' mean log weighted error on random 256x256 crops at
    random quality codes (4,000-46,000), the encoder's symbols fixed."""
    data = []
    for path in paths:
        full = load_image(path)
        h, w = full.rgb.shape[:2]
        for _ in range(3):
            src = crop(path, (256, 256), (gen.integers(0, h - 255), gen.integers(0, w - 255)))
            an = codec.analyze(src, loop_filter=False)
            for q in gen.integers(4000, 46000, 4):
                sy = codec.symbols(an, int(q))
                data.append((torch.from_numpy(sy.mu).float(), torch.from_numpy(sy.s).float(),
                             torch.from_numpy(sy.delta).float(),
                             torch.from_numpy(np.where(sy.s != 0, sy.rows * BUCKETS + buckets(sy.s), -1)),
                             torch.from_numpy(src.ycbcr().astype(np.float32)).permute(2, 0, 1)))
    theta = torch.zeros(codec.y_table.rows, BUCKETS, requires_grad=True)
    opt = torch.optim.Adam([theta], lr=0.01)
    for p in codec.net.parameters():
        p.requires_grad_(False)
    for _ in range(steps):
        losses = []
        for mu, s, delta, idx, x in (data[i] for i in gen.choice(len(data), 8, replace=False)):
            shift = torch.where(idx >= 0, theta.reshape(-1)[idx.clamp(min=0)], 0.0) * torch.sign(s)
            mse = ((codec.net.g_s((mu + (s + shift) * delta)[None])[0] - x) ** 2).mean(dim=(1, 2))
            losses.append(torch.log(mse @ torch.from_numpy(PLANE_WEIGHTS).float()))
        opt.zero_grad()
        torch.stack(losses).mean().backward()
        opt.step()
    return theta.detach().numpy().astype(np.float64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", default="../shared/data/train-photos")
    ap.add_argument("--held-out", type=int, default=12)
    ap.add_argument("--scales", type=float, nargs="+", default=[0.5, 0.25, -0.25, -0.5])
    ap.add_argument("--fit-steps", type=int, default=600, help="0: no fitted table")
    ap.add_argument("--codes", type=int, nargs="+", default=[8000, 14000, 20000, 28000, 36000, 44000])
    args = ap.parse_args()
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    codec = LearnedCodec.load()
    paths = sorted(glob.glob(os.path.join(args.photos, "*.png")))
    train, held = paths[:-args.held_out], paths[-args.held_out:]
    cent = centroids(codec, train, [10000, 16384, 24000, 32000, 40000])
    print("latent centroid (steps toward the mean are negative) by scale row, |s| = 1, 2, 3, 4+:")
    for r in range(4, 37, 4):
        print(f"  row {r:2d}: {np.round(cent[r], 3).tolist()}")
    tables = {f"centroid x {a:g}": a * cent for a in args.scales}
    if args.fit_steps:
        tables["fitted"] = fitted(codec, train, args.fit_steps, np.random.default_rng(11))
    gain = psnr_changes(codec, held, args.codes, {name: offsets(theta) for name, theta in tables.items()})
    print(f"\nPSNR-Y change against the bin centres, mean over the last {len(held)} training photos (768x512), "
          "dB, by quality code")
    print("| table | loop filter | " + " | ".join(str(q) for q in args.codes) + " |")
    print("|---|---|" + "---|" * len(args.codes))
    for name in tables:
        for filtered in (False, True):
            print(f"| {name} | {'on' if filtered else 'off'} | "
                  + " | ".join(f"{np.mean(gain[(name, filtered, q)]):+.3f}" for q in args.codes) + " |")
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
