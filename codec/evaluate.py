"""Batch evaluation (`bitlens eval`, and the GUI's batch report): every image of a folder, every codec,
every target rate; keeps each bitstream and reconstruction, and writes results.csv, results.json, a
per-image BD-rate table against VVC and an RD plot.

Images run in parallel worker processes. Nothing one image does can stop the others: an unreadable
file, a target a codec cannot reach, a codec that is missing here, each becomes a failure row.
"""
from __future__ import annotations

import csv
import io
import json
import math
import multiprocessing
import os
import queue as queue_mod
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import BitlensError

CTC_TARGETS = (0.06, 0.12, 0.25, 0.5, 0.75)
DEFAULT_CODECS = ("ours", "vvc", "hevc", "jpeg")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".pnm", ".webp"}
ROW_FIELDS = ["image", "codec", "target_bpp", "ok", "bpp", "bytes", "psnr_y", "ms_ssim", "qp", "quality",
              "trials", "encode_seconds", "cached", "stream", "recon", "error"]


@dataclass
class EvalConfig:
    codecs: tuple[str, ...] = DEFAULT_CODECS
    targets: tuple[float, ...] = CTC_TARGETS
    method: str = "fast"           # our rate matcher
    backend: str = "integer"       # our decoder for the measured reconstruction
    loop_filter: bool = True       # our encoder sends the adaptive loop filter
    tolerance: float = 0.01        # our rate matcher's relative tolerance
    closest: bool = False          # anchors (and ours): accept the closest rate even above the target
    preset: str | None = None      # anchor preset, applied to the codecs that have it
    cache: bool = True             # anchor disk cache
    jobs: int = 1
    threads: int | None = None     # per worker (torch and ffmpeg); default: cores / jobs


@dataclass
class EvalResult:
    rows: list[dict]
    bd_rate_vs_vvc: dict[str, float | None]
    bd_rate_per_image: dict[str, dict[str, float | None]]
    bd_rate_notes: dict[str, dict[str, str]]
    files: dict[str, str]
    seconds: float
    config: dict = field(default_factory=dict)

    @property
    def failures(self) -> list[dict]:
        return [r for r in self.rows if not r["ok"]]

    def summary(self) -> dict:
        """What results.json holds (and `bitlens eval --json` prints); JSON-safe (inf as a string)."""
        return dict(rows=[{k: _json_safe(v) for k, v in r.items()} for r in self.rows],
                    bd_rate_vs_vvc=self.bd_rate_vs_vvc, bd_rate_per_image=self.bd_rate_per_image,
                    bd_rate_notes=self.bd_rate_notes, failures=len(self.failures), files=self.files,
                    seconds=self.seconds, config=self.config)


def validate_codecs(codecs) -> tuple[str, ...]:
    from .anchors import ANCHORS

    codecs = tuple(dict.fromkeys(c.strip().lower() for c in codecs if c.strip()))
    if not codecs:
        raise BitlensError("give at least one codec")
    bad = [c for c in codecs if c != "ours" and c not in ANCHORS]
    if bad:
        raise BitlensError(f"unknown codec {bad[0]!r} (choose from ours, {', '.join(ANCHORS)})")
    return codecs


def validate_targets(targets) -> tuple[float, ...]:
    out = []
    for t in targets:
        if not (isinstance(t, (int, float)) and math.isfinite(t) and t > 0):
            raise BitlensError(f"target bpp must be positive numbers, not {t}")
        out.append(float(t))
    if not out:
        raise BitlensError("give at least one target bpp")
    return tuple(sorted(set(out)))


def list_images(folder: str | os.PathLike) -> list[tuple[str, Path]]:
    """(image id, path) for the image files of a folder, sorted; ids are stems (names if stems clash)."""
    folder = Path(folder)
    if not folder.exists():
        raise BitlensError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise BitlensError(f"{folder}: not a folder")
    paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise BitlensError(f"{folder}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    stems = [p.stem for p in paths]
    return [(p.stem if stems.count(p.stem) == 1 else p.name, p) for p in paths]


# ---------------------------------------------------------------------------------------- one image

_LEARNED = None


def _learned_codec():
    global _LEARNED
    if _LEARNED is None:
        from .engine import LearnedCodec
        _LEARNED = LearnedCodec.load()
    return _LEARNED


def _row(image: str, codec: str, target: float, **kw) -> dict:
    row = dict.fromkeys(ROW_FIELDS)
    row.update(image=image, codec=codec, target_bpp=target, ok=False, error="")
    row.update(kw)
    return row


def evaluate_image(image_id: str, path: str, out_dir: str, cfg: EvalConfig,
                   progress: Callable[[str], None] | None = None) -> list[dict]:
    """All codecs and targets on one image; every point a row (failures included, never raised)."""
    from .images import load_image, save_png, write_atomic
    from .metrics import ms_ssim, psnr

    say = progress or (lambda msg: None)
    try:
        src = load_image(path)
    except BitlensError as exc:
        say(f"{image_id}: FAILED: {exc}")
        return [_row(image_id, c, t, error=str(exc)) for c in cfg.codecs for t in cfg.targets]
    stream_dir = Path(out_dir) / "streams" / image_id
    recon_dir = Path(out_dir) / "recon" / image_id
    stream_dir.mkdir(parents=True, exist_ok=True)
    recon_dir.mkdir(parents=True, exist_ok=True)
    y10 = src.y10()
    rows = []
    for codec in cfg.codecs:
        start_qp = None
        for t in cfg.targets:
            name = f"{codec}_{t:g}bpp"
            t0 = time.perf_counter()
            try:
                if codec == "ours":
                    from .pipeline import encode_image
                    rep = encode_image(_learned_codec(), src, target_bpp=t, method=cfg.method,
                                       tolerance=cfg.tolerance, closest=cfg.closest, backend=cfg.backend,
                                       loop_filter=cfg.loop_filter)
                    dec = rep.decoded
                    data, pixels, rec_y10, ext = rep.encoded.data, dec.pixels, dec.y10, ".bln"
                    extra = dict(quality=rep.quality, trials=len(rep.trace), encode_seconds=rep.encode_seconds,
                                 psnr_y=psnr(y10, dec.y10), cached=False)
                else:
                    from .anchors import get_anchor, match_anchor
                    a = get_anchor(codec)
                    preset = cfg.preset if cfg.preset in a.presets else None
                    res = match_anchor(codec, src, t, closest=cfg.closest, preset=preset, cache=cfg.cache,
                                       threads=cfg.threads, start_qp=start_qp)
                    start_qp = res.qp
                    data, pixels, rec_y10, ext = res.data, res.rgb8, res.y10, res.extension
                    extra = dict(qp=res.qp, trials=len(res.trace), encode_seconds=res.encode_seconds,
                                 psnr_y=res.psnr_y, cached=res.cached)
                stream = stream_dir / (name + ext)
                recon = recon_dir / (name + ".png")
                write_atomic(stream, lambda f: f.write(data))
                save_png(pixels, recon)
                row = _row(image_id, codec, t, ok=True, bytes=len(data), bpp=len(data) * 8 / (src.width * src.height),
                           ms_ssim=ms_ssim(y10, rec_y10), stream=str(stream.relative_to(out_dir)),
                           recon=str(recon.relative_to(out_dir)), **extra)
                say(f"{image_id} {codec} @ {t:g}: {row['bpp']:.4f} bpp, PSNR-Y {row['psnr_y']:.2f} dB"
                    f"{' (cached)' if row['cached'] else ''} [{time.perf_counter() - t0:.1f} s]")
            except BitlensError as exc:
                row = _row(image_id, codec, t, error=str(exc))
                say(f"{image_id} {codec} @ {t:g}: FAILED: {exc}")
            except Exception as exc:  # a bug must not stop the batch; keep its reason in the row
                row = _row(image_id, codec, t, error=f"{type(exc).__name__}: {exc}")
                say(f"{image_id} {codec} @ {t:g}: FAILED: {type(exc).__name__}: {exc}")
            rows.append(row)
    return rows


def _worker_init(threads: int) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    try:
        import torch
        torch.set_num_threads(threads)
    except ImportError:
        pass


def _worker(image_id: str, path: str, out_dir: str, cfg: EvalConfig, q) -> list[dict]:
    return evaluate_image(image_id, path, out_dir, cfg, progress=q.put)


# ------------------------------------------------------------------------------------------- a batch

def run_eval(folder: str | os.PathLike, out_dir: str | os.PathLike, cfg: EvalConfig | None = None,
             progress: Callable[[str], None] | None = None) -> EvalResult:
    """Evaluate every image in `folder`; write everything under `out_dir`; return rows and BD-rates."""
    cfg = cfg or EvalConfig()
    cfg.codecs = validate_codecs(cfg.codecs)
    cfg.targets = validate_targets(cfg.targets)
    if cfg.method not in ("fast", "bisection"):
        raise BitlensError(f"unknown rate-matching method {cfg.method!r} (fast or bisection)")
    if "ours" in cfg.codecs:
        from .engine import BACKENDS
        if cfg.backend not in BACKENDS:
            raise BitlensError(f"unknown decoder backend {cfg.backend!r} (choose from {', '.join(BACKENDS)})")
    images = list_images(folder)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BitlensError(f"{out}: cannot create output folder: {exc.strerror or exc}") from None
    say = progress or (lambda msg: None)
    jobs = max(1, min(int(cfg.jobs or 1), len(images)))
    cfg.jobs = jobs
    if cfg.threads is None and jobs > 1:
        cfg.threads = max(1, (os.cpu_count() or 1) // jobs)
    t0 = time.perf_counter()
    say(f"eval: {len(images)} images x {len(cfg.codecs)} codecs x {len(cfg.targets)} rates, "
        f"{jobs} job{'s' if jobs > 1 else ''}, output in {out}")
    results: dict[str, list[dict]] = {}
    if jobs == 1:
        for i, (iid, p) in enumerate(images, 1):
            results[iid] = evaluate_image(iid, str(p), str(out), cfg, lambda m, i=i: say(f"[{i}/{len(images)}] {m}"))
    else:
        results = _run_parallel(images, out, cfg, say)
    rows = [r for iid, _ in images for r in results[iid]]
    order = {c: i for i, c in enumerate(cfg.codecs)}
    rows.sort(key=lambda r: ([iid for iid, _ in images].index(r["image"]), order[r["codec"]], r["target_bpp"]))
    per_image, notes, mean = bd_rates(rows, cfg.codecs)
    res = EvalResult(rows, mean, per_image, notes, {}, time.perf_counter() - t0,
                     config=dict(folder=str(folder), **{k: (list(v) if isinstance(v, tuple) else v)
                                                        for k, v in asdict(cfg).items()}))
    res.files = write_outputs(res, out, cfg.codecs)
    nfail = len(res.failures)
    say(f"eval: done in {res.seconds:.1f} s, {len(rows) - nfail} points, {nfail} failed; "
        + ", ".join(f"BD-rate {c} vs vvc {v:+.2f}%" for c, v in mean.items() if v is not None))
    return res


def _run_parallel(images, out: Path, cfg: EvalConfig, say) -> dict[str, list[dict]]:
    ctx = multiprocessing.get_context("spawn")   # torch and fork do not mix
    results: dict[str, list[dict]] = {}
    with ctx.Manager() as manager:
        q = manager.Queue()
        with ProcessPoolExecutor(max_workers=cfg.jobs, mp_context=ctx, initializer=_worker_init,
                                 initargs=(cfg.threads or 1,)) as pool:
            futs = {pool.submit(_worker, iid, str(p), str(out), cfg, q): iid for iid, p in images}
            pending, done_n = set(futs), 0

            def drain():
                while True:
                    try:
                        say(f"[{done_n}/{len(images)} done] {q.get_nowait()}")
                    except queue_mod.Empty:
                        return
            while pending:
                finished, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
                drain()
                for f in finished:
                    iid = futs[f]
                    done_n += 1
                    try:
                        results[iid] = f.result()
                    except Exception as exc:  # the worker itself died (crash, out of memory)
                        msg = f"worker failed: {type(exc).__name__}: {exc}"
                        say(f"{iid}: FAILED: {msg}")
                        results[iid] = [_row(iid, c, t, error=msg) for c in cfg.codecs for t in cfg.targets]
            drain()
    return results


# -------------------------------------------------------------------------------------------- BD-rate

def bd_rates(rows: list[dict], codecs) -> tuple[dict, dict, dict]:
    """Per-image BD-rate (percent) of every codec against vvc, notes on the ones that could not be
    computed, and the mean over the images where it could."""
    from .metrics import bd_rate

    per_image: dict[str, dict[str, float | None]] = {}
    notes: dict[str, dict[str, str]] = {}
    others = [c for c in codecs if c != "vvc"]
    if "vvc" not in codecs:
        return {}, {}, {c: None for c in others}
    images = list(dict.fromkeys(r["image"] for r in rows))
    for img in images:
        curves = {}
        for c in codecs:
            pts = sorted({(r["bpp"], r["psnr_y"]) for r in rows
                          if r["image"] == img and r["codec"] == c and r["ok"] and math.isfinite(r["psnr_y"])})
            curves[c] = pts
        per_image[img] = {}
        for c in others:
            try:
                a, t = curves["vvc"], curves[c]
                v = bd_rate([p[0] for p in a], [p[1] for p in a], [p[0] for p in t], [p[1] for p in t])
                per_image[img][c] = v if math.isfinite(v) else None
                if not math.isfinite(v):
                    notes.setdefault(img, {})[c] = "BD-rate is not finite"
            except BitlensError as exc:
                per_image[img][c] = None
                notes.setdefault(img, {})[c] = str(exc)
    mean = {}
    for c in others:
        vals = [per_image[i][c] for i in images if per_image[i].get(c) is not None]
        mean[c] = float(np.mean(vals)) if vals else None
    return per_image, notes, mean


# -------------------------------------------------------------------------------------------- outputs

def _json_safe(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, (np.floating, np.integer)):
        return _json_safe(v.item())
    return v


def mean_curves(rows: list[dict], codecs) -> tuple[dict[str, list[tuple[float, float]]],
                                                    dict[str, dict[tuple[float, float], str]]]:
    """Per codec and target, the mean (bpp, PSNR-Y) over the images where the point succeeded; and
    for each mean over fewer than all the images, 'n/N' (a mean over only the images that reach a
    low rate is not comparable with the other codecs' means there, so the plot marks it)."""
    images = len({r["image"] for r in rows if r["ok"]})    # an unreadable image is no codec's point
    curves, partial = {}, {}
    for c in codecs:
        pts, few = [], {}
        for t in sorted({r["target_bpp"] for r in rows}):
            ok = [r for r in rows if r["codec"] == c and r["target_bpp"] == t and r["ok"]
                  and math.isfinite(r["psnr_y"])]
            if ok:
                pts.append((float(np.mean([r["bpp"] for r in ok])), float(np.mean([r["psnr_y"] for r in ok]))))
                if len(ok) < images:
                    few[pts[-1]] = f"{len(ok)}/{images}"
        curves[c], partial[c] = pts, few
    return curves, partial


def failure_lines(rows: list[dict]) -> list[str]:
    """One line per image and reason: 'IMAGE codec@rate, ...: reason' (or 'all points')."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        if not r["ok"]:
            groups.setdefault((r["image"], r["error"]), []).append(r)
    lines = []
    for (img, err), rs in groups.items():
        total = sum(1 for r in rows if r["image"] == img)
        where = "all points" if len(rs) == total else ", ".join(f"{r['codec']}@{r['target_bpp']:g}" for r in rs)
        lines.append(f"{img} ({where}): {err}")
    return lines


def write_outputs(res: EvalResult, out: Path, codecs) -> dict[str, str]:
    from .images import write_atomic
    from .rdplot import rd_plot

    files = dict(csv=str(out / "results.csv"), json=str(out / "results.json"),
                 bd_csv=str(out / "bd_rate.csv"), bd_md=str(out / "bd_rate.md"), plot=str(out / "rd.png"))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=ROW_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in res.rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in ROW_FIELDS})
    write_atomic(files["csv"], lambda f: f.write(buf.getvalue().encode()))

    others = [c for c in codecs if c != "vvc"]
    images = list(res.bd_rate_per_image)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["image", *others])
    for img in images:
        w.writerow([img, *("" if res.bd_rate_per_image[img].get(c) is None else f"{res.bd_rate_per_image[img][c]:.3f}"
                           for c in others)])
    w.writerow(["mean", *("" if res.bd_rate_vs_vvc.get(c) is None else f"{res.bd_rate_vs_vvc[c]:.3f}" for c in others)])
    write_atomic(files["bd_csv"], lambda f: f.write(buf.getvalue().encode()))

    def cell(v):
        return "n/a" if v is None else f"{v:+.2f} %"
    md = ["# BD-rate against VVC intra (PSNR-Y, PCHIP)", ""]
    if "vvc" not in codecs:
        md.append("VVC was not among the codecs evaluated: no BD-rate.")
    else:
        md += ["| image | " + " | ".join(others) + " |", "|---" * (len(others) + 1) + "|"]
        md += [f"| {img} | " + " | ".join(cell(res.bd_rate_per_image[img].get(c)) for c in others) + " |"
               for img in images]
        md.append("| **mean** | " + " | ".join(cell(res.bd_rate_vs_vvc.get(c)) for c in others) + " |")
        notes = [f"- {img} / {c}: {why}" for img, d in res.bd_rate_notes.items() for c, why in d.items()]
        if notes:
            md += ["", "Not computed:", *notes]
    write_atomic(files["bd_md"], lambda f: f.write(("\n".join(md) + "\n").encode()))

    res.files = files
    payload = res.summary()
    write_atomic(files["json"], lambda f: f.write(json.dumps(payload, indent=1).encode()))

    n = len({r["image"] for r in res.rows if r["ok"]})
    title = f"Rate-distortion, mean of {n} image{'s' if n != 1 else ''}" if n > 1 else f"Rate-distortion: {next((r['image'] for r in res.rows if r['ok']), 'no successful point')}"
    curves, partial = mean_curves(res.rows, codecs)
    rd_plot(curves, files["plot"], title=title, partial=partial)
    return files
