"""A model variant that quantizes the hyper-latent z more coarsely: symbols round(z / step).

The trained z costs about 0.02 bpp at every rate (768x512 crops of training photos: 0.0177-0.0222
bpp from code 4000 to 48000, `training/probes/z_step_probe.py`), a third of a 0.06 bpp file: the
variable-rate training never taught it to shrink at low rates. A bin of width 1.25 instead of 1
sends about 0.008 bpp, and the y prior the hyper-synthesis derives from z * step is nearly as good,
so the whole file gets smaller at every rate (most at the low ones). Nothing is retrained: the
variant holds its base's model id, the step, the factorized prior's tables for bins of that width,
an integer hyper-synthesis whose input scale holds z * step exactly (step 1.25 = 5 x 2^-2: the
input is 5 x the symbol at scale 2^-2, with the base's output scales) and the matcher's prior.
It needs a model id of its own: the same file bytes now mean other z values.

    python training/z_step.py --base-id 15 --id 16 --step 1.25 resources/models/bitlens-hp-v16.pt
    cp resources/models/bitlens-hp-v15.gains.json resources/models/bitlens-hp-v16.gains.json
    python training/rate_model.py --id 16
    python training/compare.py 16 15 --last 12 --codes 11000 14000 17000 20000 24000 28000 32000 36000 40000 44000
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from codec.engine import LearnedCodec  # noqa: E402
from codec.model.zoo import load_bundle, merge_variant, z_table  # noqa: E402
from training.export import calibration_crops, calibration_inputs, integer_hyper, rate_prior  # noqa: E402


def z_step_variant(base_id: int, step: float, model_id: int, name: str, crops: list) -> dict:
    """The variant bundle of model `base_id` with z quantized at `step` (see the module docstring)."""
    base = LearnedCodec(load_bundle(base_id))
    if base.z_step != 1.0:
        raise ValueError(f"model {base_id} already has z step {base.z_step}")
    variant = dict(base_model_id=base_id, model_id=model_id, name=name, z_step=torch.tensor(float(step)),
                   **{k: torch.from_numpy(v) for k, v in z_table(base.net, step=step).to_dict("z").items()})
    # z's symbols are the variant's (the hyper-analysis is the base's); the calibration needs no
    # integer hyper-synthesis, and a codec with the base's (for bins of 1) is refused at load
    full = merge_variant(variant)
    codec = LearnedCodec({k: v for k, v in full.items() if k != "integer"})
    variant["integer_hyper"] = full["integer_hyper"] = integer_hyper(codec, calibration_inputs(codec, crops)["z"], base.integer)
    variant["rate_prior"] = torch.from_numpy(rate_prior(full, crops))
    return variant


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("output")
    ap.add_argument("--base-id", type=int, default=15)
    ap.add_argument("--id", type=int, required=True)
    ap.add_argument("--step", type=float, default=1.25)
    ap.add_argument("--name", default=None)
    ap.add_argument("--photos", default="../shared/data/train-photos")
    args = ap.parse_args()
    torch.set_num_threads(2)
    name = args.name or os.path.splitext(os.path.basename(args.output))[0]
    bundle = z_step_variant(args.base_id, args.step, args.id, name, calibration_crops(args.photos, 8))
    torch.save(bundle, args.output + ".tmp")
    os.replace(args.output + ".tmp", args.output)
    print(f"model {args.id}: model {args.base_id} with z step {args.step} -> {args.output}")


if __name__ == "__main__":
    main()
