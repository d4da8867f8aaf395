"""Probe: are model 16's z tables (the factorized prior integrated over bins of 1.25) calibrated?

The z symbols of the first 37 training photos (768x512 crops) at five quality codes give empirical
per-channel tables (one per code, and one pooled over the codes, +0.5 per bin); the ideal bits of
the last 12 photos' z under them are compared with the real coded z bits under the model's tables.
Never Kodak. Result (2026-11-29): docs/MODEL.md, "Hyper-latent step".

    python training/probes/z_tables_probe.py
"""
from __future__ import annotations

import glob
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from codec.engine import LearnedCodec  # noqa: E402
from codec.entropy import coder  # noqa: E402
from codec.images import load_image  # noqa: E402

CODES = [11000, 17000, 24000, 32000, 40000]
RADIUS = 64


def z_symbols(codec: LearnedCodec, paths: list[str]) -> dict[int, list[np.ndarray]]:
    out = {q: [] for q in CODES}
    for path in paths:
        src = load_image(path)
        src.rgb = src.rgb[:512, :768]
        an = codec.analyze(src)
        for q in CODES:
            out[q].append(codec.hyper(an, q).z)
    return out


def counts(codec: LearnedCodec, zs: list[np.ndarray]) -> np.ndarray:
    """Per-channel histogram of the symbols (clipped to +-RADIUS)."""
    h = np.zeros((codec.net.config["Nz"], 2 * RADIUS + 1))
    for z in zs:
        for ch in range(z.shape[0]):
            h[ch] += np.bincount(np.clip(z[ch].ravel(), -RADIUS, RADIUS) + RADIUS, minlength=2 * RADIUS + 1)
    return h


def main() -> None:
    torch.set_num_threads(2)
    codec = LearnedCodec.load(16)
    photos = sorted(glob.glob("../shared/data/train-photos/*.png"))
    train, held = z_symbols(codec, photos[:37]), z_symbols(codec, photos[-12:])
    pooled = sum(counts(codec, train[q]) for q in CODES) + 0.5
    for q in CODES:
        real = sum(len(coder.encode(z, codec._z_rows(z.shape), codec.z_table)) * 8 for z in held[q])
        h = counts(codec, held[q])
        own = counts(codec, train[q]) + 0.5
        per_code = -(h * np.log2(own / own.sum(1, keepdims=True))).sum()
        one = -(h * np.log2(pooled / pooled.sum(1, keepdims=True))).sum()
        print(f"code {q}: real z bits {real}, per-code empirical tables {per_code:.0f} ({(per_code / real - 1) * 100:+.1f}%), "
              f"one pooled table {one:.0f} ({(one / real - 1) * 100:+.1f}%)", flush=True)


if __name__ == "__main__":
    main()
