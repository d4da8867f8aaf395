"""Decode one bitstream on every backend available here and compare the reconstructions.

Configurations: CPU with 1 and N threads (in process), CPU kernels forced to another instruction set
(`ATEN_CPU_CAPABILITY=default|avx2|avx512`, each in a subprocess since the variable is read when torch
loads), float64 and bf16 for the float decoder, CUDA and MPS when present. Each is run with the integer
decoder and the float decoder (on MPS the float decoder only: MPS has no float64, which the exact
integer convolutions need). Per row: SHA-256 of the decoded pixel array, pixels differing from that
decoder's reference row, max difference, time, and for the float path how many scale indices a float
hyper-synthesis would have derived differently from the integer ones the bitstream was coded with (any
such difference derails a range decoder that relies on float entropy parameters).

A report carries platform, CPU, torch version and model id, so reports from other machines compare.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .engine import LearnedCodec, available_devices, loop_filters, runs_integer
from .entropy.bitstream import Bitstream
from .errors import BitlensError
from .integer import fixedpoint

CAPABILITIES = ("default", "avx2", "avx512")
# the integer decoder's other CPU kernel runs by default only if it measured at most this many times
# slower than the chosen one
OTHER_KERNEL_MAX_SLOWDOWN = 4.0
DECODERS = ("integer", "float")


@dataclass
class BackendRow:
    config: str               # e.g. "cpu 1 thread", "cpu avx2 (subprocess)", "cpu float64"
    decoder: str              # integer | float
    sha256: str
    seconds: float
    mismatches: int = 0       # pixels differing from this decoder's reference row
    max_diff: int = 0         # largest difference of an 8-bit sample
    raw_max_diff: float = 0.0  # largest difference of the unrounded Y'CbCr output, in 10-bit units
    scale_index_mismatches: int | None = None   # float hyper-synthesis vs integer (float rows only)


@dataclass
class DeviceReport:
    machine: dict
    model_id: int
    bitstream_sha256: str
    rows: list[BackendRow] = field(default_factory=list)
    # decoded pixels per row index, kept only when asked (`keep_pixels`): the GUI's mismatch heatmap
    pixels: dict[int, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    def to_json(self) -> dict:
        return dict(machine=self.machine, model_id=self.model_id, bitstream_sha256=self.bitstream_sha256,
                    rows=[asdict(r) for r in self.rows])

    def integer_hashes(self) -> set[str]:
        return {r.sha256 for r in self.rows if r.decoder == "integer"}

    def float_hashes(self) -> set[str]:
        return {r.sha256 for r in self.rows if r.decoder == "float"}

    def reference_index(self, decoder: str) -> int:
        """Index of the row every other row of this decoder was compared with (its first row)."""
        return next(i for i, r in enumerate(self.rows) if r.decoder == decoder)

    def mismatch_map(self, index: int, against: int | None = None) -> np.ndarray:
        """Per-pixel max difference of row `index` against row `against` (default: the reference row
        of the same decoder); needs a report made with `keep_pixels=True`."""
        against = self.reference_index(self.rows[index].decoder) if against is None else against
        if index not in self.pixels or against not in self.pixels:
            raise BitlensError("this report has no decoded pixels (made without keep_pixels)")
        return mismatch_map(self.pixels[index], self.pixels[against])

    def summary(self) -> dict:
        """Distinct hashes per decoder and whether the integer decoder was bit-exact everywhere."""
        n_int = sum(r.decoder == "integer" for r in self.rows)
        n_float = sum(r.decoder == "float" for r in self.rows)
        return dict(integer_configs=n_int, integer_hashes=len(self.integer_hashes()),
                    float_configs=n_float, float_hashes=len(self.float_hashes()),
                    integer_bit_exact=n_int > 0 and len(self.integer_hashes()) == 1,
                    float_max_diff=max((r.max_diff for r in self.rows if r.decoder == "float"), default=0),
                    float_mismatching_pixels=max((r.mismatches for r in self.rows if r.decoder == "float"),
                                                 default=0))


def machine_info() -> dict:
    cpu = _cpuinfo("model name") or platform.processor() or platform.machine()
    return dict(platform=platform.platform(), cpu=cpu, python=platform.python_version(),
                torch=torch.__version__, numpy=np.__version__, threads=torch.get_num_threads(),
                cpu_capability=torch.backends.cpu.get_cpu_capability(),
                integer_products="int8" if fixedpoint.int8_products() else "float64")


def _cpuinfo(field: str) -> str | None:
    """The first value of `field` in /proc/cpuinfo (None where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith(field)), None)
    except OSError:
        return None


def pixel_sha256(pixels: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()


@contextmanager
def _threads(n: int):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def accelerators() -> list[tuple[str, str]]:
    """(torch device, row label) of every GPU backend present on this machine."""
    return [(d, f"cuda {torch.cuda.get_device_name(0)}" if d == "cuda" else d)
            for d in available_devices() if d != "cpu"]


def decode_once(codec: LearnedCodec, data: bytes, decoder: str, dtype: str = "float32",
                device: str = "cpu") -> dict:
    """Decode with one decoder; returns pixels, raw output, time and (float) scale-index mismatches."""
    t0 = time.perf_counter()
    if decoder == "float" and dtype != "float32":
        ycc = _float_decode_dtype(codec, data, getattr(torch, dtype))
        pixels = codec._finish(ycc, Bitstream.unpack(data), 0).pixels
    else:
        dec = codec.decode(data, decoder, device)
        ycc, pixels = dec.ycbcr, dec.pixels
    seconds = time.perf_counter() - t0
    out = dict(pixels=pixels, ycc=ycc, seconds=seconds, scale_mismatches=None)
    if decoder == "float":
        _, z, kmap, rows = codec.decode_latents(data)
        float_rows = codec.float_scale_rows(z, Bitstream.unpack(data).q_code, kmap, device)
        out["scale_mismatches"] = int((float_rows != rows).sum())
    return out


@torch.inference_mode()
def _float_decode_dtype(codec: LearnedCodec, data: bytes, dtype: torch.dtype) -> np.ndarray:
    """Float synthesis in another precision (float64 or bfloat16 autocast): entropy decoding, the
    post-filter and the loop filter unchanged."""
    bs = Bitstream.unpack(data)
    y_hat = torch.from_numpy(codec.y_hat(codec.entropy_decode(bs)))[None]
    if dtype == torch.bfloat16:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            x = codec.net.g_s(y_hat.float()).float()
    else:
        x = copy.deepcopy(codec.net.g_s).double()(y_hat.double()).float()
    return codec._in_loop(x[0, :, :bs.height, :bs.width].numpy(), bs.q_code, "float", filters=loop_filters(bs))


def _worker_main(argv: list[str]) -> int:
    """Subprocess entry: decode IN with both decoders, save results to OUT.npz."""
    src, dst = argv
    data = open(src, "rb").read()
    codec = LearnedCodec.load(Bitstream.unpack(data).model_id)
    arrays = {}
    for dec in DECODERS:
        r = decode_once(codec, data, dec)
        arrays[f"{dec}_pixels"], arrays[f"{dec}_ycc"] = r["pixels"], r["ycc"]
        arrays[f"{dec}_meta"] = np.array([r["seconds"], -1 if r["scale_mismatches"] is None else r["scale_mismatches"]])
    arrays["capability"] = np.array(torch.backends.cpu.get_cpu_capability())
    np.savez(dst, **arrays)
    return 0


def _subprocess_decode(path: str, capability: str, threads: int, timeout: float = 300) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "r.npz")
        env = dict(os.environ, ATEN_CPU_CAPABILITY=capability, OMP_NUM_THREADS=str(threads))
        try:
            p = subprocess.run([sys.executable, "-m", "codec.devices", "--worker", path, out], env=env,
                               capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BitlensError(f"decode with ATEN_CPU_CAPABILITY={capability} timed out") from None
        if p.returncode != 0:
            raise BitlensError(f"decode with ATEN_CPU_CAPABILITY={capability} failed: "
                               f"{(p.stderr.strip().splitlines() or ['?'])[-1]}")
        with np.load(out) as f:
            return {k: f[k] for k in f.files}


def compare_backends(path: str, threads: int | None = None, subprocesses: bool = True,
                     progress=None, keep_pixels: bool = False, should_stop=None,
                     other_kernel: bool | None = None) -> DeviceReport:
    """Decode the bitstream at `path` on every configuration available here (`keep_pixels`: keep each
    row's decoded pixels in `report.pixels`; `should_stop()`: checked between configurations, stops
    early with the rows done so far; `other_kernel`: also decode with the integer kernel this
    process did not choose, None: where it measured at most OTHER_KERNEL_MAX_SLOWDOWN times slower)."""
    try:
        data = open(path, "rb").read()
    except OSError as exc:
        raise BitlensError(f"{path}: cannot read: {exc.strerror}") from None
    bs = Bitstream.unpack(data)
    codec = LearnedCodec.load(bs.model_id)
    n = threads or max(2, os.cpu_count() or 2)
    results: list[tuple[str, str, dict]] = []

    def note(msg):
        if should_stop is not None and should_stop():
            raise _Stopped
        if progress:
            progress(msg)

    try:
        _run_configs(path, data, codec, n, subprocesses, results, note, other_kernel)
    except _Stopped:
        pass
    report = DeviceReport(machine_info(), bs.model_id, hashlib.sha256(data).hexdigest())
    refs = {}
    for config, dec, r in results:
        ref = refs.setdefault(dec, r)
        diff = np.abs(r["pixels"].astype(np.int16) - ref["pixels"].astype(np.int16))
        px = diff.reshape(diff.shape[0], diff.shape[1], -1).max(axis=2)
        report.rows.append(BackendRow(config, dec, pixel_sha256(r["pixels"]), round(r["seconds"], 4),
                                      int((px > 0).sum()), int(diff.max()),
                                      float(np.abs(r["ycc"] - ref["ycc"]).max() * 1023),
                                      r["scale_mismatches"]))
        if keep_pixels:
            report.pixels[len(report.rows) - 1] = r["pixels"]
    return report


class _Stopped(Exception):
    pass


def _run_configs(path, data, codec, n, subprocesses, results, note, other_kernel: bool | None = None) -> None:
    """Decode on every configuration, appending (config, decoder, result) to `results`."""
    for dec in DECODERS:
        for t in (1, n):
            note(f"{dec} decoder, {t} thread(s)")
            with _threads(t):
                results.append((f"cpu {t} thread{'s' if t > 1 else ''}", dec, decode_once(codec, data, dec)))
    # the integer decoder's other CPU kernel (int8 or float64 products, `fixedpoint.int8_products`):
    # the same integers by another route; by default only where it is not far slower (int8 products
    # on an AVX2-only CPU took 112 s for a 768x512 decode that float64 did in 1.3 s)
    other = not fixedpoint.int8_products()
    kind = "int8" if other else "float64"
    if fixedpoint.INT8_AVAILABLE and other_kernel is None:
        slowdown = fixedpoint.other_kernel_slowdown()
        other_kernel = slowdown is None or slowdown <= OTHER_KERNEL_MAX_SLOWDOWN
        if not other_kernel:
            note(f"integer decoder, {kind} products: not run, {slowdown:.0f}x slower here "
                 "(bitlens devices --other-kernel runs it)")
    if fixedpoint.INT8_AVAILABLE and other_kernel:
        note(f"integer decoder, {kind} products")
        with _threads(n), fixedpoint.forced_products(other):
            results.append((f"cpu {n} threads, {kind} products", "integer", decode_once(codec, data, "integer")))
    # and float64 in the form used off the CPU (one im2col convolution per strided layer, zero taps
    # included, instead of phase products): the same sums, grouped otherwise
    note("integer decoder, float64 im2col form")
    with _threads(n), fixedpoint.forced_products(False), fixedpoint.forced_phase_products(False):
        results.append((f"cpu {n} threads, im2col form", "integer", decode_once(codec, data, "integer")))
    for device, label in accelerators():
        for dec in DECODERS:
            if dec == "integer" and not runs_integer(device):
                continue
            note(f"{dec} decoder, {label}")
            decode_once(codec, data, dec, device=device)   # warm-up: kernel loading, weight upload
            results.append((label, dec, decode_once(codec, data, dec, device=device)))
    for dtype in ("float64", "bfloat16"):
        note(f"float decoder, {dtype}")
        results.append((f"cpu {dtype}", "float", decode_once(codec, data, "float", dtype)))
    if subprocesses:
        flags = (_cpuinfo("flags") or "").split()
        for cap in CAPABILITIES:
            note(f"ATEN_CPU_CAPABILITY={cap} (subprocess)")
            r = _subprocess_decode(path, cap, n)
            got = str(r["capability"])
            label = f"cpu {cap} kernels" + ("" if got.lower() == cap.lower() else f" (runs {got})")
            if cap == "avx512" and flags and "avx512f" not in flags:
                # torch reports the capability asked for without checking the CPU (seen with 2.13)
                label += " (asked for; this CPU has no AVX-512)"
            for dec in DECODERS:
                sm = int(r[f"{dec}_meta"][1])
                results.append((label, dec, dict(pixels=r[f"{dec}_pixels"], ycc=r[f"{dec}_ycc"],
                                                 seconds=float(r[f"{dec}_meta"][0]),
                                                 scale_mismatches=None if sm < 0 else sm)))


def mismatch_map(report_pixels_a: np.ndarray, report_pixels_b: np.ndarray) -> np.ndarray:
    """Per-pixel max absolute difference of two reconstructions (the GUI's mismatch heatmap)."""
    d = np.abs(report_pixels_a.astype(np.int16) - report_pixels_b.astype(np.int16))
    return d.max(axis=2) if d.ndim == 3 else d


def compare_reports(local: DeviceReport, others: list[dict]) -> list[str]:
    """One line per other report: does its integer hash equal ours? and the float ones?"""
    lines = []
    ours_int, ours_float = local.integer_hashes(), {r.sha256 for r in local.rows if r.decoder == "float"}
    for o in others:
        name = f"{o.get('machine', {}).get('cpu', '?')} / torch {o.get('machine', {}).get('torch', '?')}"
        if o.get("bitstream_sha256") != local.bitstream_sha256:
            lines.append(f"{name}: a different bitstream, not comparable")
            continue
        their_int = {r["sha256"] for r in o["rows"] if r["decoder"] == "integer"}
        their_float = {r["sha256"] for r in o["rows"] if r["decoder"] == "float"}
        same = their_int == ours_int and len(ours_int) == 1
        lines.append(f"{name}: integer decoder {'identical' if same else 'DIFFERENT'} "
                     f"({len(their_int | ours_int)} distinct hash(es)); float decoder "
                     f"{len(their_float | ours_float)} distinct hash(es) across both machines")
    return lines


def load_report(path: str) -> dict:
    try:
        with open(path) as f:
            d = json.load(f)
        if not isinstance(d, dict) or "rows" not in d:
            raise ValueError("no rows")
        return d
    except (OSError, ValueError) as exc:
        raise BitlensError(f"{path}: not a Bitlens devices report ({exc})") from None


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        sys.exit(_worker_main(sys.argv[2:]))
    sys.exit("usage: python -m codec.devices --worker IN.bln OUT.npz")
