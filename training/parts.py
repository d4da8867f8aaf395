"""Model weights split into files under 16 MB, and back.

A training run on the lent GPU machine can only return files of at most 16 MiB; the model alone
is about 19 MB in float32. Splitting keeps the weights exact (no fp16/bf16 rounding).

    python training/parts.py checkpoints/v5/parts checkpoints/v5/last.pt   # merge into a checkpoint

The merged checkpoint has no optimizer state: export it, or use it as a config's "init".
"""
from __future__ import annotations

import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from codec.model.zoo import merge_variant  # noqa: E402

PART_BYTES = 12_000_000


def save_parts(state_dict: dict[str, torch.Tensor], meta: dict, folder: str) -> None:
    """Write state_dict as model-<i>.pt files of at most ~PART_BYTES each, plus meta.json
    (step, seconds, config); the old parts are replaced only once all new ones are written."""
    os.makedirs(folder, exist_ok=True)
    parts, part, size = [], {}, 0
    for k, v in state_dict.items():
        nbytes = v.numel() * v.element_size()
        if part and size + nbytes > PART_BYTES:
            parts.append(part)
            part, size = {}, 0
        part[k] = v.detach().cpu()
        size += nbytes
    parts.append(part)
    for i, p in enumerate(parts):
        torch.save(p, os.path.join(folder, f"model-{i}.pt.tmp"))
    for i in range(len(parts)):
        os.replace(os.path.join(folder, f"model-{i}.pt.tmp"), os.path.join(folder, f"model-{i}.pt"))
    with open(os.path.join(folder, "meta.json.tmp"), "w") as f:
        json.dump(dict(meta, parts=len(parts)), f)
    os.replace(os.path.join(folder, "meta.json.tmp"), os.path.join(folder, "meta.json"))


def load_parts(folder: str) -> tuple[dict[str, torch.Tensor], dict]:
    """The state dict and meta written by save_parts."""
    meta = json.load(open(os.path.join(folder, "meta.json")))
    state: dict[str, torch.Tensor] = {}
    for i in range(meta["parts"]):
        state.update(torch.load(os.path.join(folder, f"model-{i}.pt"), weights_only=True))
    return state, meta


def load_model_state(path: str) -> dict[str, torch.Tensor]:
    """Model weights from a training checkpoint, a parts folder or a shipped model bundle."""
    if os.path.isdir(path):
        return load_parts(path)[0]
    state = torch.load(path, weights_only=False, map_location="cpu")
    return state["model"] if "model" in state else merge_variant(state)["state_dict"]


def main() -> None:
    folder, out = sys.argv[1], sys.argv[2]
    state, meta = load_parts(folder)
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    torch.save(dict(model=state, step=meta["step"], seconds=meta["seconds"], config=meta["config"]), out)
    print(f"merged {meta['parts']} parts (step {meta['step']}) into {out}")


if __name__ == "__main__":
    main()
