"""Probe: would the entropy coder gain from tables that adapt to the quality or to the image?

With v10 frozen, on 768x512 crops of training photos (never Kodak), two questions:

1. z (the hyper-latent, 0.016-0.021 bpp at 768x512 at every quality) is coded with one fixed
   table per channel. Bytes of z on the last 12 photos (two crops each) at 11 quality codes over
   the trained levels, under: the shipped tables; tables fitted per quality code on the other
   photos; one table per channel fitted the same way; and, as context models, tables per channel
   and context where the context is the number of nonzero z among the 4 spatial neighbours (an
   upper bound: a checkerboard would know them for half the positions only), among the channels
   coded earlier at the same position (channels ordered by how often they are nonzero), or both.
   Fitted tables are count histograms backed off toward the channel's pooled histogram.
2. y: a per-image correction of the hyperprior's scales, signalled by the encoder: every table row
   moved by the same amount (-2..2 rows, 0.18 log2 each) for the whole image, or per group of 16
   channels; the exact coded bits of the same symbols against the shipped rows.

    python training/probes/table_adaptation.py
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
from codec.engine import LearnedCodec  # noqa: E402
from codec.entropy import coder  # noqa: E402
from codec.entropy.tables import PREC_BITS  # noqa: E402
from codec.images import SourceImage, load_image  # noqa: E402

R = 40   # z values are clipped to [-R, R] for the histograms (none reach it)


def crops(path: str) -> list:
    """The top-left and bottom-right 768x512 crops of a photo."""
    src = load_image(path)
    h, w = src.rgb.shape[:2]
    r, c = max(0, h - 512), max(0, w - 768)
    return [SourceImage(src.rgb[:512, :768], src.grayscale), SourceImage(src.rgb[r:r + 512, c:c + 768], src.grayscale)]


def shipped_probs(codec: LearnedCodec) -> np.ndarray:
    """(channels, 2R + 1) probabilities of the shipped z tables (outside a row: its escape mass)."""
    out = []
    for j in range(codec.z_table.rows):
        f = codec.z_table.row(j).astype(float) / (1 << PREC_BITS)
        v = np.arange(-R, R + 1) - codec.z_table.offset[j]
        inside = (v >= 0) & (v < len(f) - 1)
        out.append(np.where(inside, f[np.clip(v, 0, len(f) - 2)], f[-1] * 2.0 ** -8))
    return np.array(out)


def context_bytes(z_fit: np.ndarray, z_test: np.ndarray, ctx_fit: np.ndarray, ctx_test: np.ndarray,
                  n_ctx: int) -> float:
    """Mean bytes per crop of z_test (N, C, h, w) under tables per (channel, context) fitted on z_fit."""
    bits = 0.0
    for j in range(z_fit.shape[1]):
        v_fit, v_test = z_fit[:, j] + R, z_test[:, j] + R
        pooled = np.bincount(v_fit.ravel(), minlength=2 * R + 1) + 0.5
        counts = np.zeros((n_ctx, 2 * R + 1)) + 2.0 * pooled / pooled.sum() + 0.5 / (2 * R + 1)
        np.add.at(counts, (ctx_fit[:, j].ravel(), v_fit.ravel()), 1)
        p = counts / counts.sum(1, keepdims=True)
        bits -= np.log2(p[ctx_test[:, j].ravel(), v_test.ravel()]).sum()
    return bits / 8 / len(z_test)


def z_question(codec: LearnedCodec, paths: list[str], held_out: int) -> None:
    lo, hi = codec.trained_codes
    codes = [round(lo + i * (hi - lo) / 10) for i in range(11)]
    z = np.array([[np.clip(codec.hyper(codec.analyze(src, loop_filter=False), q).z, -R, R) for q in codes]
                  for path in paths for src in crops(path)])          # (crops, codes, C, h, w)
    fit, test = z[:-2 * held_out], z[-2 * held_out:]
    ship = shipped_probs(codec)
    channels = np.arange(z.shape[2])[None, :, None, None]

    def bytes_under(p: np.ndarray, zt: np.ndarray) -> float:       # p: (C, 2R + 1)
        return -np.log2(p[channels, zt + R]).sum() / 8 / len(zt)

    print(f"z bytes per 768x512 crop on the last {held_out} photos (two crops each)")
    print("| quality code | shipped | per-code tables | change |")
    print("|---|---|---|---|")
    totals = np.zeros(2)
    for i, q in enumerate(codes):
        zero = np.zeros_like(fit[:, i])
        per_code = context_bytes(fit[:, i], test[:, i], zero, np.zeros_like(test[:, i]), 1)
        shipped = bytes_under(ship, test[:, i])
        totals += shipped, per_code
        print(f"| {q} | {shipped:.0f} | {per_code:.0f} | {100 * (per_code / shipped - 1):+.1f}% |")
    print(f"| all | {totals[0]:.0f} | {totals[1]:.0f} | {100 * (totals[1] / totals[0] - 1):+.1f}% |")

    zf, zt = fit.reshape(-1, *fit.shape[2:]), test.reshape(-1, *test.shape[2:])   # codes pooled
    order = np.argsort(-(zf != 0).mean(axis=(0, 2, 3)))

    def neighbours(a):
        nz = np.pad((a != 0).astype(np.int64), ((0, 0), (0, 0), (1, 1), (1, 1)))
        return nz[..., :-2, 1:-1] + nz[..., 2:, 1:-1] + nz[..., 1:-1, :-2] + nz[..., 1:-1, 2:]

    def earlier(a):
        nz = (a[:, order] != 0).astype(np.int64)
        out = np.empty_like(nz)
        out[:, order] = np.digitize(np.cumsum(nz, 1) - nz, (1, 2, 4, 8, 16))
        return out

    zeros = (np.zeros_like(zf), np.zeros_like(zt))
    base = context_bytes(zf, zt, *zeros, 1)
    print(f"\nz, all codes pooled: one fitted table per channel {base:.0f} bytes per crop")
    for name, f, n in (("4 spatial neighbours (upper bound)", neighbours, 5),
                       ("earlier channels", earlier, 6),
                       ("both", lambda a: earlier(a) * 5 + neighbours(a), 30)):
        b = context_bytes(zf, zt, f(zf), f(zt), n)
        print(f"  context {name}: {b:.0f} bytes ({100 * (b / base - 1):+.1f}%)")


def y_question(codec: LearnedCodec, paths: list[str]) -> None:
    top = codec.y_table.rows - 1
    print("\ny: bits saved by one signalled scale-row shift per image / per 16 channels (of y + z bits)")
    print("| quality code | whole image | per 16 channels |")
    print("|---|---|---|")
    result = {}
    for path in paths:
        src = crops(path)[0]
        an = codec.analyze(src, loop_filter=False)
        for q in (12000, 20000, 30000, 40000):
            sy = codec.symbols(an, q)
            total = coder.coded_bits(sy.s, sy.rows, codec.y_table) + 8 * len(codec.hyper(an, q).z_data)

            def saving(sl):
                bits = [coder.coded_bits(sy.s[sl], np.clip(sy.rows[sl] + r, 0, top), codec.y_table) for r in range(-2, 3)]
                return min(bits) - bits[2]
            groups = sum(saving(slice(g, g + 16)) for g in range(0, sy.s.shape[0], 16))
            result.setdefault(q, []).append((saving(slice(None)) / total, groups / total))
    for q, v in result.items():
        whole, groups = 100 * np.mean(v, axis=0)
        print(f"| {q} | {whole:+.2f}% | {groups:+.2f}% |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", default="../shared/data/train-photos")
    ap.add_argument("--held-out", type=int, default=12)
    args = ap.parse_args()
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    codec = LearnedCodec.load()
    paths = sorted(glob.glob(os.path.join(args.photos, "*.png")))
    z_question(codec, paths, args.held_out)
    y_question(codec, paths[-args.held_out:])
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
