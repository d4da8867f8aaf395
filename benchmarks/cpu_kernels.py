"""The integer decoder's two CPU kernels on this machine: int8 products vs float64 products.

Both compute the same integers (`codec/integer/fixedpoint.py`); which is faster depends on the
CPU (int8 dot-product instructions or not), so each process measures both once and uses the
faster (`fixedpoint.int8_products`). Here both run on the same images, interleaved: encode at a
fixed quality (the encoder runs the integer hyper-synthesis and context networks), one rate-matcher
size estimate, and an integer decode; medians, the ratio int8 / float64, whether the decoded pixels
have one hash, and which kernel the automatic choice took.

    python benchmarks/cpu_kernels.py [--limit N] [--markdown docs/cpu_kernels.md]
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

KERNELS = (("int8", True), ("float64", False))


def main() -> None:
    ap = parser(__doc__)
    ap.set_defaults(limit=4)
    ap.add_argument("--code", type=int, default=28000, help="quality code of the encodes")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    choose_s = seconds(fixedpoint.int8_products)
    chosen = "int8" if fixedpoint.int8_products() else "float64"
    codec = LearnedCodec.load()
    times = {k: {"encode": [], "trial": [], "decode": []} for k, _ in KERNELS}
    same = True
    for path in images(args):
        src = load_image(path)
        hashes = set()
        for name, int8 in KERNELS:
            with fixedpoint.forced_products(int8):
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
    for name, _ in KERNELS:
        lines.append(f"| {name} products | {med[name]['encode']:.3f} | {med[name]['trial']:.3f} | "
                     f"{med[name]['decode']:.3f} |")
    lines.append("| int8 / float64 | " + " | ".join(
        f"{med['int8'][p] / med['float64'][p]:.2f}" for p in ("encode", "trial", "decode")) + " |")
    lines += ["", f"decoded pixels: {'one hash per image for both kernels' if same else 'HASHES DIFFER'}; "
              f"the automatic choice took {chosen} products ({choose_s * 1000:.0f} ms to measure); "
              f"wall time {time.perf_counter() - t_start:.0f} s"]
    emit(lines, args)


if __name__ == "__main__":
    main()
