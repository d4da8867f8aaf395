"""The integer decoder's CPU kernels on this machine: int8 products vs float64 products, and the
float64 sub-pixel layers as products per tap and phase vs one im2col convolution.

All compute the same integers (`codec/integer/fixedpoint.py`); whether int8 or float64 products
are faster depends on the CPU (int8 dot-product instructions or not), so each process measures both
once and uses the faster (`fixedpoint.int8_products`). Here each kernel runs on the same images,
interleaved: encode at a fixed quality (the encoder runs the integer hyper-synthesis and context
networks), one rate-matcher size estimate, and an integer decode; medians, the ratio of each to
float64 products, whether the decoded pixels have one hash, and which kernel the automatic choice
took. `--kernels` picks some (int8 products take minutes per decode where they are slow).

    python benchmarks/cpu_kernels.py [--limit N] [--kernels int8 float64 float64-im2col]
                                     [--markdown docs/cpu_kernels.md]
"""
from __future__ import annotations

import hashlib
import time

import numpy as np
import torch

from _common import emit, images, machine_line, parser, seconds

from codec.engine import LearnedCodec
from codec.images import load_image
from codec.integer import fixedpoint

# name: (int8 products, float64 strided transposed layers by phase products)
KERNELS = {"int8": (True, True), "float64": (False, True), "float64-im2col": (False, False)}


def main() -> None:
    ap = parser(__doc__)
    ap.set_defaults(limit=4)
    ap.add_argument("--code", type=int, default=28000, help="quality code of the encodes")
    ap.add_argument("--kernels", nargs="+", choices=list(KERNELS), default=list(KERNELS))
    args = ap.parse_args()
    kernels = {k: KERNELS[k] for k in KERNELS if k in args.kernels}
    base = "float64" if "float64" in kernels else next(iter(kernels))
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    choose_s = seconds(fixedpoint.int8_products)
    chosen = "int8" if fixedpoint.int8_products() else "float64"
    codec = LearnedCodec.load()
    times = {k: {"encode": [], "trial": [], "decode": []} for k in kernels}
    same = True
    for path in images(args):
        src = load_image(path)
        hashes = set()
        for name, (int8, phases) in kernels.items():
            with fixedpoint.forced_products(int8), fixedpoint.forced_phase_products(phases):
                an = codec.analyze(src)
                times[name]["trial"].append(seconds(lambda: codec.estimate_bytes(an, args.code)))
                out = []
                times[name]["encode"].append(seconds(lambda: out.append(codec.encode(codec.analyze(src), args.code))))
                dec = []
                times[name]["decode"].append(seconds(lambda: dec.append(codec.decode(out[0].data))))
                hashes.add(hashlib.sha256(dec[0].pixels.tobytes()).hexdigest())
        same &= len(hashes) == 1
    n = len(images(args))
    med = {k: {p: float(np.median(v)) for p, v in d.items()} for k, d in times.items()}
    lines = [f"CPU kernels of the integer networks on {n} images, quality code {args.code}, "
             f"{args.threads} threads, model {codec.model_id}; {machine_line()}", "",
             "| kernel | encode s (fixed quality) | one size-estimate trial s | integer decode s |",
             "|---|---|---|---|"]
    for name in kernels:
        lines.append(f"| {name} | {med[name]['encode']:.3f} | {med[name]['trial']:.3f} | "
                     f"{med[name]['decode']:.3f} |")
    for name in kernels:
        if name != base:
            lines.append(f"| {name} / {base} | " + " | ".join(
                f"{med[name][p] / med[base][p]:.2f}" for p in ("encode", "trial", "decode")) + " |")
    lines += ["", f"decoded pixels: {'one hash per image for every kernel' if same else 'HASHES DIFFER'}; "
              f"the automatic choice took {chosen} products ({choose_s * 1000:.0f} ms to measure); "
              f"wall time {time.perf_counter() - t_start:.0f} s"]
    emit(lines, args)


if __name__ == "__main__":
    main()
