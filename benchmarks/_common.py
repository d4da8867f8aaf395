"""Shared helpers for the benchmark scripts (not run in CI)."""
from __future__ import annotations

import argparse
import glob
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
KODAK = os.path.join(ROOT, "..", "shared", "data", "kodak")
CTC = (0.06, 0.12, 0.25, 0.5, 0.75)


def parser(description: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--images", default=KODAK, help="folder of PNGs (default: the 24 Kodak images)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N images")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--markdown", default=None, help="also write the table to this file")
    return ap


def images(args) -> list[str]:
    paths = sorted(glob.glob(os.path.join(args.images, "*.png")))
    if not paths:
        sys.exit(f"no PNG images in {args.images}")
    return paths[: args.limit] if args.limit else paths


def emit(lines: list[str], args) -> None:
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")


def seconds(fn) -> float:
    """Wall-clock seconds of one call of `fn`."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def machine_line() -> str:
    """The CPU and the instruction set torch uses, for tables whose seconds depend on them."""
    from codec.devices import machine_info
    m = machine_info()
    return f"{m['cpu']}, {m['cpu_capability']}, {m['threads']} threads, torch {m['torch']}"
