"""Workbench sessions and exported reports, Qt-free so scripts can read and write them too.

A session is one `.npz` file (no pickles): a JSON header (`meta`: format version, image path, target
bpp, whether the painted map was applied, the rate matcher's trials, free-form settings) plus arrays: the painted map at image
resolution (`painted`, float32), the integer step-offset map of the last encode (`kmap`) and that
encode's bitstream (`bitstream`, uint8). Written atomically through `codec.images.write_atomic`.

A report folder holds `numbers.json` (everything), `numbers.csv` (one row per codec and rate),
`blocks.csv` (per-block PSNR-Y of both codecs and our bits) and, when present, `devices.json`.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import BitlensError
from .images import write_atomic

SESSION_FORMAT = 1
SESSION_SUFFIX = ".bls.npz"


@dataclass
class Session:
    image_path: str
    target_bpp: float | None = None
    painted: np.ndarray | None = None        # float32 (H, W) offsets (negative = more bits)
    kmap: np.ndarray | None = None           # integer offsets on the latent grid of the last encode
    map_applied: bool = False                # the last encode used the painted map
    bitstream: bytes | None = None           # the last encode
    settings: dict = field(default_factory=dict)
    trace: list = field(default_factory=list)   # rate matcher trials of the last encode [(q, bpp)]


def save_session(path: str | os.PathLike, s: Session) -> None:
    meta = dict(format=SESSION_FORMAT, kind="bitlens-session", image_path=s.image_path, target_bpp=s.target_bpp,
                map_applied=bool(s.map_applied), settings=s.settings,
                trace=[[int(q), float(b)] for q, b in s.trace])
    arrays = dict(meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    if s.painted is not None:
        arrays["painted"] = np.asarray(s.painted, dtype=np.float32)
    if s.kmap is not None:
        arrays["kmap"] = np.asarray(s.kmap, dtype=np.int16)
    if s.bitstream is not None:
        arrays["bitstream"] = np.frombuffer(s.bitstream, dtype=np.uint8)
    write_atomic(path, lambda f: np.savez_compressed(f, **arrays))


def load_session(path: str | os.PathLike) -> Session:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise BitlensError(f"{path}: no such file") from None
    except (OSError, ValueError, EOFError) as exc:
        raise BitlensError(f"{path}: not a Bitlens session ({exc})") from None
    try:
        meta = json.loads(arrays["meta"].tobytes().decode())
        if meta.get("kind") != "bitlens-session":
            raise ValueError("no session header")
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        raise BitlensError(f"{path}: not a Bitlens session ({exc})") from None
    if meta.get("format") != SESSION_FORMAT:
        raise BitlensError(f"{path}: session format {meta.get('format')} is not supported (this is {SESSION_FORMAT})")
    painted = arrays.get("painted")
    if painted is not None and painted.ndim != 2:
        raise BitlensError(f"{path}: painted map has shape {painted.shape}, expected 2-D")
    target = meta.get("target_bpp")
    return Session(str(meta.get("image_path", "")), None if target is None else float(target),
                   None if painted is None else painted.astype(np.float32),
                   None if "kmap" not in arrays else arrays["kmap"].astype(np.int64),
                   bool(meta.get("map_applied", False)),
                   None if "bitstream" not in arrays else arrays["bitstream"].tobytes(),
                   dict(meta.get("settings") or {}),
                   [(int(q), float(b)) for q, b in meta.get("trace") or []])


# ------------------------------------------------------------------------------------------ reports

NUMBER_FIELDS = ["source", "codec", "target_bpp", "bpp", "psnr_y", "param", "note"]
BLOCK_FIELDS = ["row", "col", "x", "y", "psnr_ours", "psnr_anchor", "psnr_diff", "bits"]


def _json_safe(v):
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, (np.floating, np.integer)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


def _csv_bytes(fields: list[str], rows: list[dict]) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if r.get(k) is None else r.get(k) for k in fields})
    return buf.getvalue().encode()


def export_numbers(folder: str | os.PathLike, comparison=None, rd=None, devices=None,
                   extra: dict | None = None) -> dict[str, str]:
    """Write the numbers of a comparison (`codec.compare.Comparison`), an RD run (`codec.rd.RDResult`)
    and a devices report (`codec.devices.DeviceReport`) into `folder`; returns {kind: path}."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BitlensError(f"{folder}: not a folder")
    files = {}
    payload = dict(extra or {})
    rows = []
    if comparison is not None:
        payload["comparison"] = comparison.summary()
        for side in (comparison.ours, comparison.anchor):
            if side is not None:
                rows.append(dict(source="comparison", **side.as_dict()))
        files["blocks"] = str(folder / "blocks.csv")
        write_atomic(files["blocks"], lambda f: f.write(_csv_bytes(BLOCK_FIELDS, comparison.block_rows())))
    if rd is not None:
        payload["rd"] = rd.summary()
        rows += [dict(source="rd", **{k: v for k, v in p.items() if k in NUMBER_FIELDS},
                      note=p.get("error", "")) for p in rd.rows()]
    if devices is not None:
        payload["devices"] = dict(devices.to_json(), summary=devices.summary())
        files["devices"] = str(folder / "devices.json")
        write_atomic(files["devices"], lambda f: f.write(json.dumps(_json_safe(devices.to_json()), indent=1).encode()))
    files["csv"] = str(folder / "numbers.csv")
    write_atomic(files["csv"], lambda f: f.write(_csv_bytes(NUMBER_FIELDS, [_json_safe(r) for r in rows])))
    files["json"] = str(folder / "numbers.json")
    payload["files"] = dict(files)
    write_atomic(files["json"], lambda f: f.write(json.dumps(_json_safe(payload), indent=1).encode()))
    return files
