"""Export a training checkpoint as a shipped model bundle (weights + integer entropy tables).

    python training/export.py checkpoints/base/last.pt resources/models/bitlens-hp-v1.pt --id 1
"""
from __future__ import annotations

import argparse
import os
import sys

import glob

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from codec.model.hyperprior import VariableRateHyperprior  # noqa: E402
from codec.engine import LearnedCodec  # noqa: E402
from codec.images import load_image  # noqa: E402
from codec.model.quality import QMAX  # noqa: E402
from codec.model.zoo import make_bundle  # noqa: E402


def rate_prior(bundle: dict, folder: str, n_images: int = 8, n_codes: int = 33) -> np.ndarray:
    """Mean log bpp over 768x512 crops of training photos at evenly spaced quality codes."""
    codec = LearnedCodec(bundle)
    codes = np.linspace(0, QMAX, n_codes).round().astype(np.int64)
    logs = []
    for path in sorted(glob.glob(os.path.join(folder, "*.png")))[:n_images]:
        src = load_image(path)
        h, w = min(512, src.height), min(768, src.width)
        src.rgb = src.rgb[:h, :w]
        an = codec.analyze(src)
        logs.append([np.log(codec.estimate_bytes(an, int(q)) * 8 / (h * w)) for q in codes])
    return np.stack([codes.astype(np.float64), np.mean(logs, axis=0)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("output")
    ap.add_argument("--id", type=int, default=1)
    ap.add_argument("--name", default=None)
    ap.add_argument("--photos", default="../shared/data/train-photos")
    args = ap.parse_args()
    state = torch.load(args.checkpoint, weights_only=False)
    model = VariableRateHyperprior(**state["config"]["model"])
    model.load_state_dict(state["model"])
    bundle = make_bundle(model, args.id, args.name or os.path.splitext(os.path.basename(args.output))[0])
    bundle["rate_prior"] = torch.from_numpy(rate_prior(bundle, args.photos))
    bundle["training"] = dict(step=state["step"], seconds=state["seconds"], config=state["config"])
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    torch.save(bundle, args.output + ".tmp")
    os.replace(args.output + ".tmp", args.output)
    print(f"exported step {state['step']} ({state['seconds'] / 60:.0f} min) to {args.output}")


if __name__ == "__main__":
    main()
