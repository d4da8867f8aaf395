"""Shipped models: the id written in every bitstream, the weights file, and the bundle format.

A bundle is one torch file holding the network config and weights plus everything the entropy coder
needs as stored integers or stored floats (Q16 log2 steps, power-of-two tables, CDF tables), so that
nothing the decoder depends on is recomputed from floats at run time.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import torch

from ..entropy.tables import ESCAPE_MASS, FreqTable, gaussian_row, gaussian_scales, quantize_pmf
from ..errors import BitlensError
from .hyperprior import VariableRateHyperprior
from .names import DEFAULT_MODEL_ID, MODELS  # noqa: F401  (re-exported: the zoo's public names)
from .quality import pow2_tables

MODELS_DIR = Path(__file__).resolve().parents[2] / "resources" / "models"


def z_table(model: VariableRateHyperprior, radius: int = 256, tail: float = 1e-7, step: float = 1.0) -> FreqTable:
    """Per-channel frequency tables of the factorized prior over the range holding all but `tail`,
    for the symbols round(z / step) (bins of width `step`)."""
    v = (torch.arange(-radius, radius + 2, dtype=torch.float64) - 0.5).float() * step   # edges of bins -radius..radius
    with torch.no_grad():
        cdf = model.prior_z.cdf_at(v.unsqueeze(0).repeat(model.prior_z.channels, 1)).double().numpy()
    rows = []
    for c in range(cdf.shape[0]):
        lo = int(np.searchsorted(cdf[c, 1:], tail))                # first bin whose upper edge passes tail
        hi = int(np.searchsorted(cdf[c, :-1], 1 - tail, side="right")) - 1
        lo, hi = min(lo, radius), max(hi, radius)                 # always include 0
        pmf = np.diff(cdf[c, lo:hi + 2])
        esc = cdf[c, lo] + 1 - cdf[c, hi + 1]
        rows.append((quantize_pmf(np.append(pmf, max(esc, ESCAPE_MASS))), lo - radius))
    return FreqTable.from_rows(rows)


def extended_log2_steps(model: VariableRateHyperprior, below: int = 1, above: int = 1) -> np.ndarray:
    """The learned log2 step vectors plus `below` and `above` extrapolated levels (log-linear), so
    the quality range reaches below and above the trained rates (0.06 to 1.5 bpp on Kodak)."""
    s = model.log2_steps.detach().double().numpy()
    low = [s[0] - i * (s[1] - s[0]) for i in range(below, 0, -1)]
    high = [s[-1] + i * (s[-1] - s[-2]) for i in range(1, above + 1)]
    return np.concatenate([np.array(low).reshape(-1, s.shape[1]), s, np.array(high).reshape(-1, s.shape[1])])


def make_bundle(model: VariableRateHyperprior, model_id: int, name: str,
                extra_levels: tuple[int, int] = (1, 1)) -> dict:
    """Everything needed to encode and decode with `model`, ready for torch.save. `extra_levels`:
    extrapolated quality levels below and above the trained ones."""
    scales = gaussian_scales()
    hi, lo = pow2_tables()
    bundle = dict(
        name=name, model_id=model_id, config=model.config,
        # weights stored as float16 (half the file); the shipped model is defined by these values
        state_dict={k: v.detach().half() for k, v in model.state_dict().items()},
        log2_steps_q16=torch.from_numpy(np.round(extended_log2_steps(model, *extra_levels) * 65536).astype(np.int64)),
        trained_levels=torch.tensor([extra_levels[0], extra_levels[0] + model.levels - 1]),
        pow2_hi=torch.from_numpy(hi), pow2_lo=torch.from_numpy(lo),
        y_scales=torch.from_numpy(scales),
        y_log2_thresholds=torch.from_numpy((np.log2(scales[1:]) + np.log2(scales[:-1])) / 2),
    )
    tables = {**FreqTable.from_rows([gaussian_row(s) for s in scales]).to_dict("y"), **z_table(model).to_dict("z")}
    bundle.update({k: torch.from_numpy(v) for k, v in tables.items()})
    return bundle


def weights_path(model_id: int) -> Path:
    if model_id not in MODELS:
        raise BitlensError(f"model id {model_id} is not one this Bitlens ships "
                           f"(known: {', '.join(f'{i} ({n})' for i, n in MODELS.items())})")
    path = MODELS_DIR / f"{MODELS[model_id]}.pt"
    if not path.exists():
        raise BitlensError(f"model {model_id} ({MODELS[model_id]}) is missing: {path} not found")
    return path


def read_bundle(path: str | Path) -> dict:
    """A bundle file, a variant merged over its base (`merge_variant`)."""
    return merge_variant(torch.load(path, weights_only=True, map_location="cpu"))


def merge_variant(bundle: dict) -> dict:
    """A variant bundle (a base model id and the entries that differ, as training/luma_steps.py
    and training/export.py for channel slices write; its weights, if any, those it adds or
    changes) merged over its base, without the base's rate model and RDOQ weights (`load_bundle`
    attaches those per model). Other bundles come back as they are."""
    if "base_model_id" not in bundle:
        return bundle
    base = load_bundle(int(bundle["base_model_id"]))
    merged = {k: v for k, v in base.items() if k not in ("rate_model", "rdoq_channel_weights")}
    merged.update(bundle)
    if "state_dict" in bundle:
        merged["state_dict"] = {**base["state_dict"], **bundle["state_dict"]}
    return merged


@functools.lru_cache(maxsize=4)
def load_bundle(model_id: int = DEFAULT_MODEL_ID) -> dict:
    """The stored bundle of a shipped model (cached)."""
    bundle = read_bundle(weights_path(model_id))
    rate_model = weights_path(model_id).with_suffix(".rate.json")   # training/rate_model.py
    if rate_model.exists():
        try:
            fitted = json.loads(rate_model.read_text())
        except (OSError, ValueError):
            fitted = None
        if not isinstance(fitted, dict) or not {"u_lo", "width", "bits"} <= set(fitted):
            raise BitlensError(f"{rate_model}: not a readable rate model (reinstall it or run "
                               f"training/rate_model.py --id {model_id})")
        bundle["rate_model"] = fitted
    gains = weights_path(model_id).with_suffix(".gains.json")   # training/channel_gains.py
    if gains.exists():
        try:
            weights = np.array(json.loads(gains.read_text())["weights"], dtype=np.float64)
        except (OSError, ValueError, KeyError, TypeError):
            weights = None
        if weights is None or weights.ndim != 1 or not np.all(np.isfinite(weights) & (weights > 0)):
            raise BitlensError(f"{gains}: not readable RDOQ channel weights (reinstall it or run "
                               f"training/channel_gains.py --id {model_id})")
        bundle["rdoq_channel_weights"] = weights
    return bundle
