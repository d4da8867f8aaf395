"""Disk cache of anchor encodes, so nothing already measured is encoded twice (the GUI, eval, tests).

Key: sha256 of (image pixels hash, codec, encoder version string, parameters, plane-format version).
Entry: `KEY.bit` (the bitstream), `KEY.npz` (reconstruction planes) and `KEY.json` (numbers), each
written through a temporary file and `os.replace`, the JSON last: an entry exists once its JSON does,
and two processes writing the same entry at once leave one complete copy. The folder is
`$BITLENS_CACHE/anchors`, or `~/.cache/bitlens/anchors`. A cache that cannot be written is skipped,
never an error.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from ..images import SourceImage

FORMAT = 1  # bump when the planes we feed or the measurement change, to invalidate old entries


def cache_root() -> Path:
    base = os.environ.get("BITLENS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "bitlens")
    return Path(base) / "anchors"


def image_hash(source: SourceImage) -> str:
    """sha256 of the pixels (the float RGB array, its shape, and whether it is grey)."""
    rgb = np.ascontiguousarray(source.rgb, dtype=np.float64)
    h = hashlib.sha256(f"{rgb.shape}|{int(source.grayscale)}|".encode())
    h.update(rgb.tobytes())
    return h.hexdigest()


def entry_key(img_hash: str, codec: str, encoder: str, params: dict) -> str:
    blob = json.dumps(dict(format=FORMAT, image=img_hash, codec=codec, encoder=encoder, params=params),
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _paths(key: str) -> tuple[Path, Path, Path]:
    d = cache_root() / key[:2]
    return d / f"{key}.json", d / f"{key}.bit", d / f"{key}.npz"


def _write(path: Path, payload: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def get_meta(key: str) -> dict | None:
    """The numbers of an entry (cheap: no planes), or None."""
    meta_p, _, _ = _paths(key)
    try:
        return json.loads(meta_p.read_text())
    except (OSError, ValueError):
        return None


def get(key: str) -> tuple[dict, bytes, dict[str, np.ndarray]] | None:
    """(meta, bitstream, arrays) of a complete, intact entry, or None."""
    meta_p, bit_p, npz_p = _paths(key)
    meta = get_meta(key)
    if meta is None:
        return None
    try:
        data = bit_p.read_bytes()
        if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
            return None
        with np.load(npz_p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError):
        return None
    return meta, data, arrays


def put(key: str, meta: dict, data: bytes, arrays: dict[str, np.ndarray]) -> bool:
    """Store an entry; False (and nothing half-written) when the folder cannot be written."""
    meta_p, bit_p, npz_p = _paths(key)
    meta = dict(meta, sha256=hashlib.sha256(data).hexdigest())
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: v for k, v in arrays.items() if v is not None})
    try:
        meta_p.parent.mkdir(parents=True, exist_ok=True)
        _write(bit_p, data)
        _write(npz_p, buf.getvalue())
        _write(meta_p, json.dumps(meta, sort_keys=True).encode())
    except OSError:
        return False
    return True
