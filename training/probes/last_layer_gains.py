"""Probe: would per-image gains on the synthesis' last layer beat or add to the loop filter?

The loop filter (codec/loopfilter.py) corrects the decoded luma with small Wiener filters fitted per
image. A richer correction would weight the last synthesis layer's 128 input channels: Y gets
sum_c g_c * (channel c's contribution to Y through the last layer), g fitted per image by least
squares (on every third pixel) and sent at 1/256 (128 bytes, like 11 luma filters). Measured on
the float synthesis of v10 (frozen) at four quality codes on 768x512 crops of every other one of the
last 12 training photos (never Kodak): the luma squared error (10-bit, rounded) left by the 12-class
loop filter, by the gains, and by the gains followed by the loop filter, each against the plain
reconstruction. Nothing here is shipped.

    python training/probes/last_layer_gains.py
"""
from __future__ import annotations

import argparse
import glob
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from codec import loopfilter  # noqa: E402
from codec.engine import LearnedCodec  # noqa: E402
from codec.images import load_image  # noqa: E402


def filtered_error(plane10: np.ndarray, ref10: np.ndarray) -> float:
    """Squared error left by the 12-class loop filter fitted on this plane."""
    classes = loopfilter.classify(plane10, 12)
    coeffs, clip = loopfilter.fit(plane10, ref10, classes, 12)
    return float(((loopfilter.apply(plane10, coeffs, classes, clip).astype(np.float64) - ref10) ** 2).sum())


@torch.no_grad()
def errors(codec: LearnedCodec, an, q_code: int) -> tuple[float, float, float]:
    """Luma squared error of the loop filter, the gains and both, each relative to none (- 1)."""
    h, w = an.source.height, an.source.width
    ref = an.source10[0].astype(np.float64)
    y_hat = torch.from_numpy(codec.y_hat(codec.symbols(an, q_code)).astype(np.float32))[None]
    feats = codec.net.g_s[:-1](y_hat)
    last = codec.net.g_s[-1]
    rec = last(feats)[0, 0, :h, :w].double() * 1023
    parts = torch.stack([F.conv_transpose2d(feats[:, c:c + 1], last.weight[c:c + 1, :1], stride=2, padding=2,
                                            output_padding=1)[0, 0, :h, :w] for c in range(feats.shape[1])])
    parts = parts.double().reshape(len(parts), -1) * 1023
    residual = torch.from_numpy(ref.reshape(-1)) - rec.reshape(-1)
    a, r = parts[:, ::3], residual[::3]
    gram = a @ a.T
    g = torch.linalg.solve(gram + 1e-6 * gram.diag().mean() * torch.eye(len(gram), dtype=torch.float64), a @ r)
    g = torch.round(g * 256) / 256

    def to10(x: torch.Tensor) -> np.ndarray:
        return np.clip(np.round(x.reshape(h, w).numpy()), 0, 1023).astype(np.uint16)

    plain, corrected = to10(rec), to10(rec.reshape(-1) + parts.T @ g)
    base = float(((plain - ref) ** 2).sum())
    gains = float(((corrected - ref) ** 2).sum())
    return filtered_error(plain, ref) / base - 1, gains / base - 1, filtered_error(corrected, ref) / base - 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", default="../shared/data/train-photos")
    ap.add_argument("--codes", type=int, nargs="+", default=[14000, 24000, 34000, 44000])
    args = ap.parse_args()
    torch.set_num_threads(2)
    codec = LearnedCodec.load()
    rows = {q: [] for q in args.codes}
    for path in sorted(glob.glob(os.path.join(args.photos, "*.png")))[-12::2]:
        src = load_image(path)
        src.rgb = src.rgb[:512, :768]
        an = codec.analyze(src, loop_filter=False)
        for q in args.codes:
            rows[q].append(errors(codec, an, q))
        print(os.path.basename(path), flush=True)
    print("\nluma squared error against the plain reconstruction (mean over photos)")
    print("| quality code | loop filter | gains | gains, then loop filter |")
    print("|---|---|---|---|")
    for q, v in rows.items():
        print(f"| {q} | " + " | ".join(f"{100 * x:+.2f}%" for x in np.mean(v, axis=0)) + " |")


if __name__ == "__main__":
    main()
