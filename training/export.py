"""Export a training checkpoint as a shipped model bundle (weights + integer entropy tables).

    python training/export.py checkpoints/base/last.pt resources/models/bitlens-hp-v1.pt --id 1
    python training/export.py checkpoints/postfilter-v14.pt resources/models/bitlens-hp-v14.pt --id 14 \
        --postfilter-max-code 50000
    python training/export.py checkpoints/postfilter-v15.pt resources/models/bitlens-hp-v15.pt --id 15 \
        --postfilter-below checkpoints/postfilter-v14.pt 32000
    # model 17: on v16's pictures, the 2x2-block post-filter up to code 36000, v15's above
    python training/export.py checkpoints/postfilter-v17-low.pt resources/models/bitlens-hp-v17.pt --id 17 \
        --postfilter-base 16 --postfilter-max-code 36000 --postfilter-also checkpoints/postfilter-v15.pt 65535
    # model 19: v16's pictures, the 5-layer 2x2-block post-filter up to 36000, model 18's above it
    python training/export.py checkpoints/postfilter-v19-low5.pt resources/models/bitlens-hp-v19.pt --id 19 \
        --postfilter-base 16 --postfilter-max-code 36000 --postfilter-also checkpoints/postfilter-v18-high.pt 65535
    # model 20: model 19's post-filter up to 36000, the 5-layer one above, both with two-piece weights
    python training/export.py training/postfilters/postfilter-v20-high5.pt resources/models/bitlens-hp-v20.pt \
        --id 20 --postfilter-base 16 --postfilter-also training/postfilters/postfilter-v19-low5.pt 36000 \
        --postfilter-two-pieces 36000 65535
    # model 21: 6-layer post-filters, one-piece integer weights as wide as each output channel allows
    python training/export.py training/postfilters/postfilter-v21-high6.pt resources/models/bitlens-hp-v21.pt \
        --id 21 --postfilter-base 16 --postfilter-also training/postfilters/postfilter-v21-low6.pt 36000 \
        --postfilter-per-channel
    # model 22: model 21 with a 7-layer post-filter up to code 36000
    python training/export.py training/postfilters/postfilter-v22-low7.pt resources/models/bitlens-hp-v22.pt \
        --id 22 --postfilter-base 16 --postfilter-max-code 36000 \
        --postfilter-also training/postfilters/postfilter-v21-high6.pt 65535 --postfilter-per-channel
    # a joint checkpoint trained from model 16 (z step 1.25 in its config), with 16's post-filters
    # (the 2026-11-29 CPU probe, not shipped: docs/MODEL.md "Joint fine-tune at the z step"; it was
    # compared as id 17 before model 17 took that id: a probe now takes a free id, e.g. 23)
    python training/export.py checkpoints/v17j/last.pt /tmp/bitlens-hp-v23.pt --id 23 \
        --extra-levels 3 4 --postfilters-of 16
"""
from __future__ import annotations

import argparse
import glob
import math
import os
import sys
from collections.abc import Collection

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from codec.engine import POSTFILTER_KEYS, LearnedCodec, anchor_cells, postfilter_entries  # noqa: E402
from codec.images import load_image  # noqa: E402
from codec.integer.fixedpoint import layers_to_dict  # noqa: E402
from codec.color import to_10bit  # noqa: E402
from codec.integer.networks import (build_integer_context, build_integer_hyper, build_integer_nets,  # noqa: E402
                                    build_integer_postfilter)
from codec.model.context import CheckerboardContext  # noqa: E402
from codec.model.hyperprior import VariableRateHyperprior  # noqa: E402
from codec.model.postfilter import PostFilter  # noqa: E402
from codec.model.quality import QMAX  # noqa: E402
from codec.model.zoo import load_bundle, make_bundle, merge_variant, read_bundle, z_table  # noqa: E402


def calibration_crops(folder: str, n_images: int) -> list:
    """768x512 top-left crops of the first training photos (never Kodak)."""
    crops = []
    for path in sorted(glob.glob(os.path.join(folder, "*.png")))[:n_images]:
        src = load_image(path)
        src.rgb = src.rgb[:512, :768]
        crops.append(src)
    return crops


def calibration_inputs(codec: LearnedCodec, crops: list) -> dict[str, list]:
    """Inputs of the integer networks on training crops at five qualities, plainly rounded (the
    shipped models' integer nets were calibrated so): z for h_s, y_hat for g_s, and, for models with
    them, the context network's, each channel slice's (anchors' and non-anchors') and the latent
    residual prediction's. The symbols are those of the codec as it is (without the integer slices
    being calibrated): close enough for activation ranges."""
    def groups(slices) -> list[list]:
        return [[] for _ in (slices.nets if slices is not None else [])]

    out = dict(z=[], y_hat=[], context=[], slices=groups(codec.net.slices), rest_slices=groups(codec.net.rest_slices),
               residual=[])
    with codec.options(rdoq=False):
        for src in crops:
            an = codec.analyze(src)
            for q in np.linspace(0, QMAX, 5).astype(int):
                hy = codec.hyper(an, int(q))
                if q == 0 or codec.net.hyper_gain:   # older models: one z per image
                    out["z"].append(torch.from_numpy(codec.z_hat(hy.z))[None])
                sy = codec.symbols(an, int(q))
                out["y_hat"].append(torch.from_numpy(codec.y_hat(sy).astype(np.float32))[None])
                if codec.net.context is None:
                    continue
                log2_ratio = torch.from_numpy(codec._steps_and_rows(hy.log2_sigma, int(q), sy.kmap)[2])[None].float()
                s_anchor = torch.from_numpy(np.where(anchor_cells(an.grid), sy.s, 0))[None].float()
                out["context"].append(CheckerboardContext.inputs(s_anchor, log2_ratio))
                for g, inputs in enumerate(out["slices"], start=1):
                    c = codec.net.slices.C
                    inputs.append(CheckerboardContext.inputs(s_anchor[:, :g * c], log2_ratio[:, g * c:(g + 1) * c]))
                s_all = torch.from_numpy(sy.s)[None].float()
                coded_ratio = torch.from_numpy(sy.log2_ratio)[None].float()
                for g, inputs in enumerate(out["rest_slices"], start=1):
                    c = codec.net.rest_slices.C
                    inputs.append(CheckerboardContext.inputs(s_all[:, :g * c], coded_ratio[:, g * c:(g + 1) * c]))
                if codec.net.residual is not None:
                    out["residual"].append(CheckerboardContext.inputs(s_all, coded_ratio))
    return out


def input_grid(step: float) -> tuple[float, int]:
    """(power-of-two input scale, integer factor) with scale x factor == step exactly."""
    scale = 2.0 ** math.floor(math.log2(step))
    while step / scale != round(step / scale):
        scale /= 2
        if scale < 2 ** -8:
            raise ValueError(f"z step {step} is not a multiple of a power of two down to 2^-8")
    return scale, int(round(step / scale))


def integer_hyper(codec: LearnedCodec, z_samples: list, nets) -> dict:
    """The `integer_hyper` entry of a model whose z symbols are round(z / step) (model 16 on): an
    integer hyper-synthesis whose input, factor x symbol at a power-of-two scale, holds z x step
    exactly (1.25 = 5 x 2^-2), with the output scales and weight bits of `nets` (the bundle's
    `integer`). `z_samples`: dequantized z (symbol x step) of calibration crops."""
    scale, factor = input_grid(codec.z_step)
    layers, _, _ = build_integer_hyper(codec.net, z_samples, scale, nets.weight_bits, out_scales=(nets.s_mu, nets.s_ls))
    return {"z_factor": torch.tensor(factor), **layers_to_dict(layers, "h_s.")}


def integer_slices(slices, inputs: list[list]) -> list[dict]:
    """Channel slices' integer networks, one per group after the first."""
    return [build_integer_context(net, x).to_dict() for net, x in zip(slices.nets, inputs)]


def integer_parts(bundle: dict, crops: list) -> None:
    """Calibrate activation ranges on training crops; add the 16-bit integer h_s + g_s, an
    8-bit-weight g_s and (for models with them) the integer context network, channel slices and
    latent residual prediction to the bundle."""
    codec = LearnedCodec(bundle)
    inputs = calibration_inputs(codec, crops)
    nets = build_integer_nets(codec.net, inputs["z"], inputs["y_hat"], 16)
    bundle["integer"] = nets.to_dict()
    if codec.z_step != 1.0:
        bundle["integer_hyper"] = integer_hyper(codec, inputs["z"], nets)
    if inputs["context"]:
        bundle["integer_context"] = build_integer_context(codec.net.context.net, inputs["context"]).to_dict()
    if inputs["slices"]:
        bundle["integer_slices"] = integer_slices(codec.net.slices, inputs["slices"])
    if inputs["rest_slices"]:
        bundle["integer_rest_slices"] = integer_slices(codec.net.rest_slices, inputs["rest_slices"])
    if inputs["residual"]:
        bundle["integer_residual"] = build_integer_context(codec.net.residual.net, inputs["residual"],
                                                           scale_shifts=False).to_dict()
    g8 = build_integer_nets(codec.net, inputs["z"], inputs["y_hat"], 8).g_s
    bundle["g_s8"] = layers_to_dict(g8)
    bundle["g_s8_rounding"] = "gptq"   # every layer 8-bit (`codec.integer.rounding`)


def addon_variant(state: dict, model_id: int, name: str, crops: list) -> dict:
    """A shipped model plus networks trained on it frozen, as a variant bundle: channel slices
    (training/train_slices.py: of its anchors, or with `"part": "rest"` of its non-anchors) or latent
    residual prediction (training/train_residual.py). The variant holds the base model's id, the
    new config, the new weights and their integer networks; the rest (weights, tables, integer
    networks) stays the base model's, read from its file (or its base's) at load."""
    base = read_bundle(state["config"]["init"])
    if "residual" in state:
        part, key = "residual", "residual"
    else:
        part, key = ("rest_slices" if state["config"].get("part") == "rest" else "slices"), "slices"
    model = VariableRateHyperprior(**{**base["config"], part: state["config"][key]})
    model.load_state_dict({k: v.float() for k, v in base["state_dict"].items()}, strict=False)
    getattr(model, part).load_state_dict(state[key])
    added = {k: v.detach().half() for k, v in model.state_dict().items() if k.startswith(part + ".")}
    variant = dict(base_model_id=int(base["model_id"]), model_id=model_id, name=name, config=model.config,
                   state_dict=added)
    codec = LearnedCodec(merge_variant(variant))
    inputs = calibration_inputs(codec, crops)[part]
    variant[f"integer_{part}"] = (build_integer_context(codec.net.residual.net, inputs, scale_shifts=False).to_dict()
                                  if part == "residual" else integer_slices(getattr(codec.net, part), inputs))
    return variant


def postfilter_entries_on(codec: LearnedCodec, filters: list[tuple[PostFilter, int]], crops: list,
                          two_pieces: Collection[int] = (), per_channel: bool = False) -> list[dict]:
    """Bundle entries of post-filters run on `codec`'s pictures (a model without post-filters), by
    rising highest quality code (each running above the previous one's): float weights, that code
    and the integer network, calibrated on the codec's reconstructions of training crops at five
    qualities; the post-filters whose highest codes are in `two_pieces` with integer weights wider than
    one float32 sum allows in every layer (`ShiftConv`); with `per_channel`, the other post-filters'
    weights as wide as each output channel's sums allow (`channel_weight_bits`)."""
    if unknown := set(two_pieces) - {max_code for _, max_code in filters}:
        raise SystemExit(f"--postfilter-two-pieces: no post-filter runs up to code {min(unknown)}")
    inputs = []
    with torch.no_grad():
        for src in crops:
            an = codec.analyze(src, loop_filter=False)
            for q in np.linspace(0, QMAX, 5).astype(int):
                ycc = codec.reconstruct(an, int(q), filtered=False).transpose(2, 0, 1)
                planes10 = torch.from_numpy(np.stack([to_10bit(p) for p in ycc]).astype(np.float32))[None]
                inputs.append(PostFilter.inputs(planes10, torch.tensor([int(q)])))
    return [dict(config=net.config, state_dict={k: v.float() for k, v in net.state_dict().items()},
                 max_code=int(max_code), integer=build_integer_postfilter(
                     net, inputs, two_pieces=range(len(net.convs())) if max_code in two_pieces else (),
                     per_channel=per_channel).to_dict())
            for net, max_code in sorted(filters, key=lambda f: f[1])]


def postfilter_variant(filters: list[tuple[dict, int]], model_id: int, name: str, crops: list,
                       base: int | None = None, two_pieces: Collection[int] = (), per_channel: bool = False) -> dict:
    """A shipped model plus post-filters trained on it frozen (training/postfilter.py), as a variant
    bundle: the base model's id, then `postfilter_entries_on` the base model. One filter: model
    14's layout; several: model 15's. With `base`, the post-filters go on that model instead of the
    one they were trained on (model 17: v16's pictures differ from v13's by v16's z step), replacing
    its own."""
    base_bundle = load_bundle(base if base is not None else filters[0][0]["base"])
    replaced = any(k in base_bundle for k in POSTFILTER_KEYS)
    # calibrated on the base's pictures before any post-filter, by a codec of its own (loaded
    # codecs are shared within a process)
    codec = LearnedCodec({k: v for k, v in base_bundle.items() if k not in POSTFILTER_KEYS})
    assert base is not None or all(state["base"] == codec.model_id for state, _ in filters), \
        "post-filters of one bundle share their base model"
    entries = postfilter_entries_on(codec, [(PostFilter.from_state(state), m) for state, m in filters], crops,
                                    two_pieces, per_channel)
    bundle = dict(base_model_id=codec.model_id, model_id=model_id, name=name)
    if len(entries) == 1 and not replaced:
        integer = entries[0].pop("integer")
        return dict(bundle, postfilter=entries[0], integer_postfilter=integer)
    return dict(bundle, postfilters=entries)


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
    ap.add_argument("--postfilter-max-code", type=int, default=QMAX,
                    help="post-filter variants: the highest quality code the post-filter runs at")
    ap.add_argument("--postfilter-also", "--postfilter-below", dest="postfilter_also", nargs=2, action="append",
                    default=[], metavar=("CHECKPOINT", "MAX_CODE"),
                    help="post-filter variants: another post-filter, run at codes up to MAX_CODE and above the "
                         "next lower one's (model 15: v14's below the checkpoint's)")
    ap.add_argument("--postfilter-base", type=int, default=None, metavar="ID",
                    help="post-filter variants: put them on this model, replacing its own (default: the model they were trained on)")
    ap.add_argument("--postfilter-two-pieces", type=int, nargs="+", default=(), metavar="MAX_CODE",
                    help="the post-filters running up to these codes with integer weights in two pieces, "
                         "15-16 bits instead of 8-10 (model 20: 36000 65535)")
    ap.add_argument("--postfilter-per-channel", action="store_true",
                    help="the other post-filters' integer weights as wide as each output channel allows "
                         "in one piece (model 21 on), not one width per layer")
    ap.add_argument("--z-step", type=float, default=None,
                    help="joint checkpoints: z's bin width (default: the training config's z_step, else 1)")
    ap.add_argument("--postfilters-of", type=int, default=None, metavar="ID",
                    help="joint checkpoints: carry shipped model ID's post-filters over, calibrated on this model")
    args = ap.parse_args()
    state = torch.load(args.checkpoint, weights_only=False)
    name = args.name or os.path.splitext(os.path.basename(args.output))[0]
    crops = calibration_crops(args.photos, 8)
    if "slices" in state or "residual" in state:   # training/train_slices.py, train_residual.py: variants
        bundle = addon_variant(state, args.id, name, crops)
        full = merge_variant(bundle)
    elif "base" in state:   # training/postfilter.py: a variant whose rates are its base's
        also = [(torch.load(c, weights_only=False), int(m)) for c, m in args.postfilter_also]
        bundle = postfilter_variant(also + [(state, args.postfilter_max_code)], args.id, name, crops, args.postfilter_base,
                                    args.postfilter_two_pieces, args.postfilter_per_channel)
        full = merge_variant(bundle)
    else:
        if "context" in state:   # training/train_context.py: a shipped model plus its context network
            base = torch.load(state["config"]["init"], weights_only=True)
            model = VariableRateHyperprior(**base["config"], context=dict(hidden=state["config"]["hidden"],
                                                                          kernel=state["config"]["kernel"]))
            model.load_state_dict({k: v.float() for k, v in base["state_dict"].items()}, strict=False)
            model.context.load_state_dict(state["context"])
        else:
            model = VariableRateHyperprior(**state["config"]["model"])
            model.load_state_dict(state["model"])
        bundle = full = make_bundle(model, args.id, name, tuple(args.extra_levels))
        z_step = args.z_step or float(state["config"].get("z_step", 1.0))
        if z_step != 1.0:   # z coded as round(z / step): its tables for bins of that width
            bundle["z_step"] = torch.tensor(z_step)
            bundle.update({k: torch.from_numpy(v) for k, v in z_table(model, step=z_step).to_dict("z").items()})
        integer_parts(bundle, crops)
        if args.postfilters_of is not None:
            carried = postfilter_entries(load_bundle(args.postfilters_of))
            bundle["postfilters"] = postfilter_entries_on(
                LearnedCodec(bundle), [(PostFilter.from_state(e), int(e["max_code"])) for e in carried], crops,
                args.postfilter_two_pieces, args.postfilter_per_channel)
    bundle["rate_prior"] = torch.from_numpy(rate_prior(full, crops))
    bundle["training"] = dict(step=state["step"], seconds=state["seconds"], config=state["config"],
                              extra_levels=list(args.extra_levels))
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    torch.save(bundle, args.output + ".tmp")
    os.replace(args.output + ".tmp", args.output)
    print(f"exported step {state['step']} ({state['seconds'] / 60:.0f} min) to {args.output}")


if __name__ == "__main__":
    main()
