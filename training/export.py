"""Export a training checkpoint as a shipped model bundle (weights + integer entropy tables).

    python training/export.py checkpoints/base/last.pt resources/models/bitlens-hp-v1.pt --id 1
"""
from __future__ import annotations

import argparse
import glob
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from codec.engine import LearnedCodec, anchor_cells  # noqa: E402
from codec.images import load_image  # noqa: E402
from codec.integer.fixedpoint import layers_to_dict  # noqa: E402
from codec.integer.networks import build_integer_context, build_integer_nets  # noqa: E402
from codec.model.context import CheckerboardContext  # noqa: E402
from codec.model.hyperprior import VariableRateHyperprior  # noqa: E402
from codec.model.quality import QMAX  # noqa: E402
from codec.model.zoo import make_bundle  # noqa: E402


def calibration_crops(folder: str, n_images: int) -> list:
    """768x512 top-left crops of the first training photos (never Kodak)."""
    crops = []
    for path in sorted(glob.glob(os.path.join(folder, "*.png")))[:n_images]:
        src = load_image(path)
        src.rgb = src.rgb[:512, :768]
        crops.append(src)
    return crops


def integer_parts(bundle: dict, crops: list) -> None:
    """Calibrate activation ranges on training crops; add the 16-bit integer h_s + g_s, an
    8-bit-weight g_s and (for models with one) the integer context network to the bundle."""
    codec = LearnedCodec(bundle)
    codec.rdoq = False   # the shipped models' integer nets were calibrated on plainly rounded y
    zs, ys, contexts = [], [], []
    for src in crops:
        an = codec.analyze(src)
        for q in np.linspace(0, QMAX, 5).astype(int):
            hy = codec.hyper(an, int(q))
            if q == 0 or codec.net.hyper_gain:   # older models: one z per image
                zs.append(torch.from_numpy(hy.z.astype(np.float32))[None])
            sy = codec.symbols(an, int(q))   # hyperprior only: the anchors' symbols are final
            ys.append(torch.from_numpy(codec.y_hat(sy).astype(np.float32))[None])
            if codec.net.context is not None:
                log2_ratio = codec._steps_and_rows(hy.log2_sigma, int(q), sy.kmap)[2]
                s_anchor = np.where(anchor_cells(an.grid), sy.s, 0)
                contexts.append(CheckerboardContext.inputs(torch.from_numpy(s_anchor)[None].float(),
                                                           torch.from_numpy(log2_ratio)[None].float()))
    bundle["integer"] = build_integer_nets(codec.net, zs, ys, 16).to_dict()
    if contexts:
        bundle["integer_context"] = build_integer_context(codec.net.context, contexts).to_dict()
    g8 = build_integer_nets(codec.net, zs, ys, 8).g_s
    bundle["g_s8"] = layers_to_dict(g8)
    bundle["g_s8_rounding"] = "gptq"   # every layer 8-bit (`codec.integer.rounding`)


def rate_prior(bundle: dict, crops: list, n_codes: int = 33) -> np.ndarray:
    """Mean log bpp over training crops at evenly spaced quality codes (the fast matcher's prior)."""
    codec = LearnedCodec(bundle)
    codes = np.linspace(0, QMAX, n_codes).round().astype(np.int64)
    logs = []
    for src in crops:
        an = codec.analyze(src)
        logs.append([np.log(codec.estimate_bytes(an, int(q)) * 8 / (src.width * src.height)) for q in codes])
    return np.stack([codes.astype(np.float64), np.mean(logs, axis=0)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("output")
    ap.add_argument("--id", type=int, default=1)
    ap.add_argument("--name", default=None)
    ap.add_argument("--photos", default="../shared/data/train-photos")
    ap.add_argument("--extra-levels", type=int, nargs=2, default=(1, 1), metavar=("BELOW", "ABOVE"),
                    help="extrapolated quality levels below and above the trained ones")
    args = ap.parse_args()
    state = torch.load(args.checkpoint, weights_only=False)
    if "context" in state:   # training/train_context.py: a shipped model plus its context network
        base = torch.load(state["config"]["init"], weights_only=True)
        model = VariableRateHyperprior(**base["config"], context=dict(hidden=state["config"]["hidden"],
                                                                      kernel=state["config"]["kernel"]))
        model.load_state_dict({k: v.float() for k, v in base["state_dict"].items()}, strict=False)
        model.context.load_state_dict(state["context"])
    else:
        model = VariableRateHyperprior(**state["config"]["model"])
        model.load_state_dict(state["model"])
    bundle = make_bundle(model, args.id, args.name or os.path.splitext(os.path.basename(args.output))[0],
                         tuple(args.extra_levels))
    crops = calibration_crops(args.photos, 8)
    integer_parts(bundle, crops)
    bundle["rate_prior"] = torch.from_numpy(rate_prior(bundle, crops))
    bundle["training"] = dict(step=state["step"], seconds=state["seconds"], config=state["config"],
                              extra_levels=list(args.extra_levels))
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    torch.save(bundle, args.output + ".tmp")
    os.replace(args.output + ".tmp", args.output)
    print(f"exported step {state['step']} ({state['seconds'] / 60:.0f} min) to {args.output}")


if __name__ == "__main__":
    main()
