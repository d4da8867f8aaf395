"""The `bitlens` command line (the contract in DESIGN.md).

Exit status 0 on success, 1 on bad input or an undecodable bitstream, 2 on wrong usage; every error
is one line on stderr starting `bitlens: error:`.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .errors import BitlensError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage errors: one line, exit 2
        sys.stderr.write(f"bitlens: error: {message}\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="bitlens", description="Learned image codec workbench: encode at a target bpp, "
                                            "compare with VVC, decode bit-exactly.")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    g = sub.add_parser("gui", help="open the desktop application (the default)")
    g.add_argument("image", nargs="?")
    g.add_argument("--bpp", type=float, default=None)
    g.add_argument("--screenshot", default=None, help="save the window after the first encode and exit")

    e = sub.add_parser("encode", help="encode images at a target bpp or a fixed quality")
    e.add_argument("images", nargs="+", metavar="IMAGE")
    rate = e.add_mutually_exclusive_group(required=True)
    rate.add_argument("--bpp", type=float, help="target bits per pixel (rate matched)")
    rate.add_argument("--quality", type=float, help="fixed quality 0 (lowest rate) .. 100 (highest)")
    out = e.add_mutually_exclusive_group(required=True)
    out.add_argument("-o", "--output", help="output bitstream (one input image)")
    out.add_argument("--out-dir", help="folder for one IMAGE_STEM.bln per input")
    e.add_argument("--tolerance", type=float, default=0.01, help="relative rate tolerance (default 0.01)")
    e.add_argument("--closest", action="store_true", help="accept rates above the target too")
    e.add_argument("--method", choices=("fast", "bisection"), default="fast")
    maps = e.add_mutually_exclusive_group()
    maps.add_argument("--map", help="step offsets k as .npy (image size or latent grid)")
    maps.add_argument("--auto-map", choices=("vvc", "rdo", "variance"))
    e.add_argument("--model", type=int, default=None,
                   help="model id to encode with (default: 8; 5 is the previous default; 6 is model 5 with "
                        "its steps tuned for PSNR-Y, at a cost in chroma; 7 is model 5 trained further, backbone "
                        "and context jointly; 8 is model 7 trained further with a 4:2:0-aware chroma loss)")
    e.add_argument("--loop-filter", action=argparse.BooleanOptionalAction, default=True,
                   help="fit and send an adaptive loop filter per image (default: on; Kodak BD-rate against "
                        "VVenC +81.7%% instead of +90.2%%; the encoder runs a synthesis to fit it, about "
                        "+0.15 s at 768x512, and decoding takes about 25 ms longer)")
    e.add_argument("--threads", type=int, default=None)
    e.add_argument("--json", action="store_true")

    d = sub.add_parser("decode", help="decode a bitstream to PNG")
    d.add_argument("input", metavar="IN")
    d.add_argument("-o", "--output", required=True)
    d.add_argument("--backend", choices=("integer", "integer8", "float"), default="integer",
                   help="integer: bit-exact on every machine (default); integer8: 8-bit weights "
                        "(models before 10 keep 16 in the output layer); float")
    d.add_argument("--threads", type=int, default=None)
    d.add_argument("--device", choices=("cpu", "cuda", "mps"), default="cpu",
                   help="torch device for the decoder networks (default cpu)")
    d.add_argument("--json", action="store_true")

    v = sub.add_parser("devices", help="decode on every backend here and compare the reconstructions")
    v.add_argument("input", metavar="IN")
    v.add_argument("--json", dest="report", metavar="REPORT.json", help="write the report to this file")
    v.add_argument("--compare", nargs="+", default=[], metavar="OTHER.json", help="reports from other machines")
    v.add_argument("--threads", type=int, default=None, help="the N of the N-thread configuration")
    v.add_argument("--no-subprocess", action="store_true", help="skip the ATEN_CPU_CAPABILITY subprocesses")
    v.add_argument("--other-kernel", action=argparse.BooleanOptionalAction, default=None,
                   help="also decode with the integer CPU kernel (int8 or float64 products) this process did "
                        "not pick (default: where it measured at most 4x slower)")

    i = sub.add_parser("info", help="describe a bitstream")
    i.add_argument("input", metavar="IN")
    i.add_argument("--json", action="store_true")

    _add_anchor_eval_parsers(sub)
    return p


GuiLauncher = Callable[[Optional[str], Optional[float], Optional[str]], int]


def main(argv: list[str] | None = None, gui: GuiLauncher | None = None) -> int:
    """Run one command. `gui(image, bpp, screenshot)` starts the desktop application; the engine
    never imports it, so the `bitlens` entry point (app/cli.py) passes it in."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or (argv[0] not in {"gui", "encode", "decode", "info", "devices", "anchor", "eval", "-h",
                                       "--help"}):
        argv = ["gui", *argv]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # usage error (2) or --help (0)
        return int(exc.code or 0)
    try:
        if args.command == "gui":
            if gui is None:
                raise BitlensError("the headless engine has no window; start the application with `bitlens`")
            return gui(args.image, args.bpp, args.screenshot)
        if getattr(args, "threads", None):
            import torch
            torch.set_num_threads(max(1, args.threads))
        return {"encode": _encode, "decode": _decode, "info": _info, "devices": _devices,
                "anchor": _anchor, "eval": _eval}[args.command](args)
    except BitlensError as exc:
        sys.stderr.write(f"bitlens: error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("bitlens: error: interrupted\n")
        return 1


def _emit(args, payload, lines: list[str]) -> None:
    if args.json:
        print(json.dumps(payload, indent=2))
    else:
        print("\n".join(lines))


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise BitlensError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BitlensError(f"{path}: is a directory, not a bitstream") from None
    except OSError as exc:
        raise BitlensError(f"{path}: cannot read: {exc.strerror}") from None


def _encode(args) -> int:
    from .engine import LearnedCodec
    from .images import load_image, write_atomic
    from .bitalloc import load_map
    from .pipeline import encode_image

    if args.output and len(args.images) > 1:
        raise BitlensError("-o takes one input image; use --out-dir for several")
    if args.out_dir and not os.path.isdir(args.out_dir):
        raise BitlensError(f"{args.out_dir}: output folder does not exist")
    codec = LearnedCodec.load() if args.model is None else LearnedCodec.load(args.model)
    results = []
    for path in args.images:
        src = load_image(path)
        for w in src.warnings:
            sys.stderr.write(f"bitlens: warning: {w}\n")
        out = args.output or os.path.join(args.out_dir, Path(path).stem + ".bln")
        kmap = load_map(args.map, src.height, src.width) if args.map else None
        rep = encode_image(codec, src, target_bpp=args.bpp, quality=args.quality, method=args.method,
                           tolerance=args.tolerance, closest=args.closest, kmap=kmap, auto_map=args.auto_map,
                           loop_filter=args.loop_filter)
        write_atomic(out, lambda f: f.write(rep.encoded.data))
        results.append(dict(input=path, output=out, **rep.as_dict(), width=src.width, height=src.height,
                            model_id=codec.model_id, warnings=src.warnings))
    lines = [f"{r['input']} -> {r['output']}: {r['bytes']} bytes, {r['bpp']:.4f} bpp, "
             f"PSNR-Y {r['psnr_y']:.2f} dB, quality {r['quality']:.2f}, {r['iterations']} trials, "
             f"{r['encode_seconds']:.2f} s" for r in results]
    _emit(args, results[0] if len(results) == 1 else results, lines)
    return 0


def _decode(args) -> int:
    from .engine import decode_bitstream
    from .images import save_png

    dec = decode_bitstream(_read(args.input), args.backend, args.device)
    save_png(dec.pixels, args.output)
    sha = hashlib.sha256(np.ascontiguousarray(dec.pixels).tobytes()).hexdigest()
    bs = dec.header
    payload = dict(input=args.input, output=args.output, backend=args.backend, device=args.device,
                   seconds=dec.seconds,
                   sha256=sha, width=bs.width, height=bs.height, grayscale=bs.grayscale)
    _emit(args, payload, [f"{args.input} -> {args.output}: {bs.width}x{bs.height}, "
                          f"{dec.seconds:.2f} s, sha256 {sha[:16]}"])
    return 0


def _devices(args) -> int:
    from .devices import compare_backends, compare_reports, load_report
    from .images import write_atomic

    others = [load_report(p) for p in args.compare]
    report = compare_backends(args.input, args.threads, not args.no_subprocess,
                              progress=lambda m: sys.stderr.write(f"  {m}\n"), other_kernel=args.other_kernel)
    lines = [f"{'configuration':32} {'decoder':8} {'sha256':16} {'mismatch':>8} {'maxdiff':>7} "
             f"{'raw':>8} {'scale-idx':>9} {'seconds':>8}"]
    for r in report.rows:
        si = "" if r.scale_index_mismatches is None else str(r.scale_index_mismatches)
        lines.append(f"{r.config:32} {r.decoder:8} {r.sha256[:16]} {r.mismatches:8d} {r.max_diff:7d} "
                     f"{r.raw_max_diff:8.4f} {si:>9} {r.seconds:8.3f}")
    n_int = len(report.integer_hashes())
    lines.append(f"integer decoder: {n_int} distinct hash(es) over {sum(r.decoder == 'integer' for r in report.rows)} "
                 f"configurations")
    lines += compare_reports(report, others)
    if args.report:
        write_atomic(args.report, lambda f: f.write(json.dumps(report.to_json(), indent=2).encode()))
    print("\n".join(lines))
    return 0


def _info(args) -> int:
    from .entropy.bitstream import Bitstream
    from .entropy.offsetmap import decode_map
    from .grid import latent_grid
    from .model.names import MODELS
    from .model.quality import QMAX

    data = _read(args.input)
    bs = Bitstream.unpack(data)
    grid = latent_grid(bs.height, bs.width)
    kmap = decode_map(bs.map_data, grid) if bs.map_data is not None else None
    payload = dict(input=args.input, bytes=len(data), bpp=len(data) * 8 / (bs.width * bs.height),
                   width=bs.width, height=bs.height, version=bs.version, model_id=bs.model_id,
                   model=MODELS.get(bs.model_id), quality=100 * bs.q_code / QMAX, q_code=bs.q_code,
                   grayscale=bs.grayscale, map=bs.map_data is not None, **_filter_info(bs),
                   map_range=[int(kmap.min()), int(kmap.max())] if kmap is not None else [0, 0],
                   header_bytes=bs.header_bytes(), z_bytes=len(bs.z_data), y_bytes=len(bs.y_data))
    _emit(args, payload, [f"{k}: {v}" for k, v in payload.items()])
    return 0


def _filter_info(bs) -> dict:
    """`loop_filter`: the planes the bitstream's loop filter changes (empty: no filter block, or
    identity filters); `loop_filters`: the filters it sends per plane, how many are not the
    identity, and the clipping of their differences (null: none)."""
    from .loopfilter import CLIPS, unpack
    coeffs, clips = unpack(bs.filter_data, bs.planes, bs.version) if bs.filter_data is not None else ([], [])
    names = ("Y", "Cb", "Cr")
    return dict(loop_filter=[n for n, c in zip(names, coeffs) if c.any()],
                loop_filters={n: [len(c), int(c.any(axis=1).sum()), CLIPS[k]]
                              for n, c, k in zip(names, coeffs, clips)})


def _add_anchor_eval_parsers(sub) -> None:
    from .anchors import ANCHORS

    a = sub.add_parser("anchor", help="encode with a classical codec (VVC intra, HEVC, AV1, JPEG, WebP)")
    a.add_argument("codec", choices=list(ANCHORS))
    a.add_argument("image", metavar="IMAGE")
    rate = a.add_mutually_exclusive_group(required=True)
    rate.add_argument("--bpp", type=float, help="target bits per pixel (closest rate not above it)")
    rate.add_argument("--qp", type=int, help="fixed QP (AV1: CRF; JPEG, WebP: quality)")
    a.add_argument("-o", "--output", required=True, help="reconstruction PNG")
    a.add_argument("--stream", default=None, help="also write the bitstream here")
    a.add_argument("--preset", default=None, help="encoder preset (VVC default: medium)")
    a.add_argument("--closest", action="store_true", help="accept rates above the target too")
    a.add_argument("--no-cache", action="store_true", help="encode even if the result is cached")
    a.add_argument("--json", action="store_true")

    v = sub.add_parser("eval", help="evaluate codecs on a folder of images: CSV, JSON, BD-rate, RD plot")
    v.add_argument("folder", metavar="DIR")
    v.add_argument("--codecs", default="ours,vvc,hevc,jpeg", help="comma-separated: ours," + ",".join(ANCHORS))
    v.add_argument("--bpp", default="0.06,0.12,0.25,0.5,0.75", help="comma-separated target rates")
    v.add_argument("--out", default="bitlens-eval", help="output folder (default: ./bitlens-eval)")
    v.add_argument("--jobs", type=int, default=1, help="images in parallel (worker processes)")
    v.add_argument("--method", choices=("fast", "bisection"), default="fast")
    v.add_argument("--backend", choices=("integer", "integer8", "float"), default="integer",
                   help="our decoder for the measured reconstructions")
    v.add_argument("--loop-filter", action=argparse.BooleanOptionalAction, default=True,
                   help="our encoder sends the adaptive loop filter (default: on)")
    v.add_argument("--tolerance", type=float, default=0.01)
    v.add_argument("--preset", default=None, help="anchor preset, for the codecs that have it")
    v.add_argument("--closest", action="store_true", help="accept rates above the targets too")
    v.add_argument("--no-cache", action="store_true")
    v.add_argument("--json", action="store_true")


def _anchor(args) -> int:
    from .anchors import encode_anchor, get_anchor, match_anchor
    from .images import load_image, save_png, write_atomic
    from .metrics import ms_ssim

    src = load_image(args.image)
    for w in src.warnings:
        sys.stderr.write(f"bitlens: warning: {w}\n")
    if args.bpp is not None:
        res = match_anchor(args.codec, src, args.bpp, closest=args.closest, preset=args.preset,
                           cache=not args.no_cache)
    else:
        if args.closest:
            raise BitlensError("--closest only applies with --bpp")
        res = encode_anchor(args.codec, src, args.qp, args.preset, cache=not args.no_cache)
    save_png(res.rgb8, args.output)
    if args.stream:
        write_atomic(args.stream, lambda f: f.write(res.data))
    payload = dict(input=args.image, output=args.output, stream=args.stream, **res.as_dict(),
                   ms_ssim=ms_ssim(src.y10(), res.y10), warnings=src.warnings)
    _emit(args, payload, [f"{args.image} -> {args.output}: {res.codec} {res.nbytes} bytes, {res.bpp:.4f} bpp, "
                          f"PSNR-Y {res.psnr_y:.2f} dB, {get_anchor(res.codec).param} {res.qp}"
                          f"{' (cached)' if res.cached else ''}, "
                          f"{res.encode_seconds:.2f} s"])
    return 0


def _csv_list(text: str, what: str, conv=str) -> list:
    try:
        return [conv(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise BitlensError(f"{what}: expected a comma-separated list, got {text!r}") from None


def _eval(args) -> int:
    from .evaluate import EvalConfig, failure_lines, run_eval

    if args.jobs < 1:
        raise BitlensError("--jobs must be at least 1")
    cfg = EvalConfig(codecs=tuple(_csv_list(args.codecs, "--codecs")),
                     targets=tuple(_csv_list(args.bpp, "--bpp", float)), method=args.method,
                     tolerance=args.tolerance, closest=args.closest, preset=args.preset,
                     cache=not args.no_cache, jobs=args.jobs, backend=args.backend,
                     loop_filter=args.loop_filter)
    res = run_eval(args.folder, args.out, cfg, progress=lambda m: sys.stderr.write(f"bitlens: {m}\n"))
    nfail = len(res.failures)
    lines = [f"{len(res.rows) - nfail} points, {nfail} failed, {res.seconds:.1f} s; results in {args.out}"]
    lines += [f"BD-rate {c} vs vvc: " + ("n/a" if v is None else f"{v:+.2f} %") for c, v in res.bd_rate_vs_vvc.items()]
    lines += [f"failed: {ln}" for ln in failure_lines(res.rows)]
    if args.json:
        print(json.dumps(res.summary(), indent=2))
    else:
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
