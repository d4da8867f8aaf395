"""Train the learned post-filters (codec/model/postfilter.py) of models 14, 15 and 17 to 22 on a frozen v13.

The loop filter (codec/loopfilter.py) is a classed, clipped Wiener filter fitted per image. The
post-filter is trained once: three 3x3 convolutions (Y'CbCr 10-bit planes and the quality code in,
a luma correction out) trained on the float reconstructions (v13 frozen, no loop filter) of training
photos at several quality codes, measured on the last 12 of ../shared/data/train-photos (never
trained on, never Kodak): the luma squared error left by the 12-class loop filter alone, by the
post-filter alone and by the post-filter followed by the loop filter (refitted on its output), each
against the plain reconstruction, and the PSNR-Y change. `training/export.py` turns the saved
weights into a model bundle.

    # model 14: the first 37 training photos, six codes up to 44000
    python training/postfilter.py --minutes 40 --per-code --codes 8000 14000 20000 28000 36000 44000 \
        --save checkpoints/postfilter-v14.pt
    # model 15: every rate (eleven codes up to 65535), the 34 Debian photos too
    # (training/debian_photos.py --max-side 1280), every photo also at half size
    python training/postfilter.py --minutes 35 --per-code --extra ../shared/data/debian-photos --half-scale 1 \
        --save checkpoints/postfilter-v15.pt
    # model 17: 4 layers of 32 channels on 2x2 pixel blocks, the codes up to 36000 (v15's set of photos)
    python training/postfilter.py --minutes 35 --per-code --codes 8000 14000 20000 28000 36000 \
        --eval-codes 8000 14000 20000 28000 32000 36000 44000 --extra ../shared/data/debian-photos \
        --half-scale 1 --channels 32 --layers 4 --unshuffle 2 --save checkpoints/postfilter-v17-low.pt
    # model 18, above 36000: the same network at the codes 36000-65535 (30 minutes)
    python training/postfilter.py --minutes 30 --per-code --codes 36000 44000 50000 54000 58000 62000 65535 \
        --eval-codes 40000 44000 50000 54000 58000 62000 65535 --extra ../shared/data/debian-photos \
        --half-scale 1 --channels 32 --layers 4 --unshuffle 2 --save checkpoints/postfilter-v18-high.pt
    # model 19, up to 36000: model 17's grown by a fifth (identity) layer and trained on
    python training/postfilter.py --minutes 35 --per-code --codes 8000 14000 20000 28000 36000 \
        --eval-codes 8000 14000 20000 28000 32000 36000 44000 --extra ../shared/data/debian-photos \
        --half-scale 1 --channels 32 --layers 5 --unshuffle 2 --init checkpoints/postfilter-v17-low.pt \
        --lr 3e-4 --save checkpoints/postfilter-v19-low5.pt
    # model 20, above 36000: model 18's grown the same way (28 minutes)
    python training/postfilter.py --minutes 28 --per-code --codes 36000 44000 50000 54000 58000 62000 65535 \
        --eval-codes 40000 44000 50000 54000 58000 62000 65535 --extra ../shared/data/debian-photos \
        --half-scale 1 --channels 32 --layers 5 --unshuffle 2 --init checkpoints/postfilter-v18-high.pt \
        --lr 3e-4 --save checkpoints/postfilter-v20-high5.pt
    # model 21: both grown to 6 layers; the high-code one trained on the grid of its one-piece integer
    # form (--on-grid; the low-code one's runs are in docs/MODEL.md)
    python training/postfilter.py --minutes 25 --per-code --codes 36000 44000 50000 54000 58000 62000 65535 \
        --eval-codes 40000 44000 50000 54000 58000 62000 65535 --extra ../shared/data/debian-photos \
        --half-scale 1 --channels 32 --layers 6 --unshuffle 2 --init training/postfilters/postfilter-v20-high5.pt \
        --lr 1e-4 --on-grid --save checkpoints/postfilter-v21-high6.pt
    # model 22: model 21's low-code network grown to 7 layers, on its grid
    python training/postfilter.py --minutes 25 --per-code --codes 8000 14000 20000 28000 36000 \
        --eval-codes 8000 14000 20000 28000 32000 36000 44000 --extra ../shared/data/debian-photos \
        --half-scale 1 --channels 32 --layers 7 --unshuffle 2 --init training/postfilters/postfilter-v21-low6.pt \
        --lr 2e-4 --on-grid --save checkpoints/postfilter-v22-low7.pt
    # a saved post-filter at other codes
    python training/postfilter.py --load checkpoints/postfilter-v14.pt --eval-codes 44000 48000 50000 52000 56000

Reconstructions are cached per photo and scale (checkpoints/postfilter-cache/, about 8 GB for
model 15's set): a stopped run keeps what it made, a later one adds only the codes it lacks.
"""
from __future__ import annotations

import argparse
import glob
import math
import os
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from codec import loopfilter  # noqa: E402
from codec.color import to_10bit  # noqa: E402
from codec.engine import LearnedCodec  # noqa: E402
from codec.images import SourceImage, from_pil  # noqa: E402
from codec.integer.networks import build_integer_postfilter  # noqa: E402
from codec.model.postfilter import PostFilter  # noqa: E402

CODES_V14 = (8000, 14000, 20000, 28000, 36000, 44000)            # model 14's post-filter
CODES = CODES_V14 + (50000, 54000, 58000, 62000, 65535)            # model 15's: every rate


def photo(path: str, scale: int = 1) -> SourceImage:
    """A training photo, downscaled `scale` times (Lanczos) and cropped to multiples of 16. Half-scale
    photos have Kodak's detail per pixel (the training photos are downscaled further from larger
    originals than Kodak's 768x512 scans), without looking at Kodak."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        if scale > 1:
            im = im.resize((im.width // scale, im.height // scale), Image.LANCZOS)
        src = from_pil(im, path)
    src.rgb = src.rgb[:src.rgb.shape[0] // 16 * 16, :src.rgb.shape[1] // 16 * 16]
    return src


@torch.no_grad()
def reconstruct(codec: LearnedCodec, src: SourceImage, codes) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """(original 10-bit Y'CbCr (3, H, W), {code: float reconstruction without the loop filter})."""
    an = codec.analyze(src, loop_filter=False)
    return np.stack(an.source10), {
        q: np.stack([to_10bit(p) for p in codec.reconstruct(an, q, backend="float", filtered=False).transpose(2, 0, 1)])
        for q in codes}


def reconstructions(codec_id: int, photos: list[tuple[str, int]], codes, cache: str | None = None) -> list:
    """[(original, [float reconstruction at each code])] for each (path, scale), through `per_photo_cache`."""
    codec = None

    def make(path: str, scale: int, missing: list[int]) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        nonlocal codec
        codec = codec or LearnedCodec.load(codec_id)
        return reconstruct(codec, photo(path, scale), missing)
    return per_photo_cache(photos, codes, cache, make)


def per_photo_cache(photos: list[tuple[str, int]], codes, cache: str | None,
                    make: Callable[[str, int, list[int]], tuple[np.ndarray, dict[int, np.ndarray]]]) -> list:
    """[(original, [array at each code])] for each (path, scale), `make(path, scale, codes)` giving
    (original, {code: array}). With a cache folder, one .npz per photo and scale (saved as it is
    made: an interrupted run keeps what it made), and only the codes it lacks are made."""
    out = []
    for path, scale in photos:
        file = cache and os.path.join(cache, f"{os.path.splitext(os.path.basename(path))[0]}-{scale}.npz")
        ref, stored = None, {}
        if file and os.path.exists(file):
            with np.load(file) as z:
                ref, stored = z["ref"], {int(k[1:]): z[k] for k in z.files if k != "ref"}
        missing = [q for q in codes if q not in stored]
        if missing:
            ref, new = make(path, scale, missing)
            stored.update(new)
            print(f"  {os.path.basename(path)} 1/{scale} {ref.shape[2]}x{ref.shape[1]}: codes {missing}", flush=True)
            if file:
                os.makedirs(cache, exist_ok=True)
                np.savez(file + ".tmp.npz", ref=ref, **{f"q{q}": r for q, r in stored.items()})
                os.replace(file + ".tmp.npz", file)
        out.append((ref, [stored[q] for q in codes]))
    return out


def batches(data, codes, size: int, patch: int, rng: np.random.Generator, align: int = 1):
    """Random (reconstruction, original luma, code) patches, flipped half the time; with `align`,
    patches start on that grid (16: the synthesis transform's, whose artefacts sit on it)."""
    while True:
        recs, refs, qs = [], [], []
        for _ in range(size):
            ref, rec = data[rng.integers(len(data))]
            i = rng.integers(len(codes))
            y0, x0 = (rng.integers((n - patch) // align) * align for n in ref.shape[1:])
            r, t = rec[i][:, y0:y0 + patch, x0:x0 + patch], ref[:1, y0:y0 + patch, x0:x0 + patch]
            if rng.random() < 0.5:
                r, t = r[:, :, ::-1], t[:, :, ::-1]
            recs.append(r.astype(np.float32))
            refs.append(t.astype(np.float32))
            qs.append(codes[i])
        yield torch.from_numpy(np.stack(recs)), torch.from_numpy(np.stack(refs)), torch.tensor(qs, dtype=torch.float32)


def loop_filtered(luma: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """10-bit luma after the 12-class loop filter fitted on it against `ref` (the default files' layout)."""
    classes = loopfilter.classify(luma, 12)
    coeffs, clip = loopfilter.fit(luma, ref, classes, 12)
    return loopfilter.apply(luma, coeffs, classes, clip)


def luma_errors(net: PostFilter, ref: np.ndarray, rec: np.ndarray, q: int) -> tuple[float, float, float, float]:
    """Luma squared error: plain, loop filter, CNN, CNN then loop filter."""
    def se(y: np.ndarray) -> float:
        return float(((y.astype(np.float64) - ref[0]) ** 2).sum())

    with torch.no_grad():
        out = net(torch.from_numpy(rec.astype(np.float32))[None], torch.tensor([float(q)]))[0, 0].numpy()
    cnn = np.clip(np.round(out), 0, 1023).astype(np.uint16)
    return se(rec[0]), se(loop_filtered(rec[0], ref[0])), se(cnn), se(loop_filtered(cnn, ref[0]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", default="../shared/data/train-photos")
    ap.add_argument("--base", type=int, default=13, help="the frozen codec's model id")
    ap.add_argument("--minutes", type=float, default=35)
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--unshuffle", type=int, default=1,
                    help="run the convolutions on r x r pixel blocks at 1/r resolution (model 17: 2)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--patch", type=int, default=96)
    ap.add_argument("--align", type=int, default=1, help="patches start on this pixel grid (16: the latents')")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--extra", nargs="*", default=[], help="more folders of training photos (never Kodak)")
    ap.add_argument("--half-scale", type=int, choices=(0, 1), default=0,
                    help="1: also train on every photo at half size, and add the held-out photos at half size to the table")
    ap.add_argument("--cache", default="checkpoints/postfilter-cache", help="folder of cached reconstructions")
    ap.add_argument("--save", default=None)
    ap.add_argument("--per-code", action="store_true",
                    help="weight each patch's error by 1 / its code's mean plain error (every rate counts alike)")
    ap.add_argument("--init", default=None,
                    help="start from these saved weights (as many channels; identity layers added where --layers is larger)")
    ap.add_argument("--load", default=None, help="evaluate these saved weights instead of training")
    ap.add_argument("--on-grid", action="store_true",
                    help="quantization-aware: each step's forward pass rounds the weights to the grid of their "
                         "one-piece integer form with each channel's widest weights (export --postfilter-per-channel), "
                         "the backward pass goes straight through; the saved weights are on it")
    ap.add_argument("--codes", type=int, nargs="+", default=list(CODES),
                    help="quality codes trained on (model 14: %s)" % " ".join(map(str, CODES_V14)))
    ap.add_argument("--eval-codes", type=int, nargs="+", default=None,
                    help="quality codes of the held-out table (default: --codes; codes the cache lacks are reconstructed and added)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    paths = sorted(glob.glob(os.path.join(args.photos, "*.png")))
    extra = sorted(p for d in args.extra for p in glob.glob(os.path.join(d, "*.png")))
    codes, eval_codes = args.codes, args.eval_codes or args.codes
    held_out = paths[-12:]
    train_photos = [(p, 1) for p in paths[:-12] + extra] + [(p, 2) for p in (paths[:-12] + extra) * args.half_scale]
    test_photos = [(p, 1) for p in held_out] + [(p, 2) for p in held_out * args.half_scale]
    test = reconstructions(args.base, test_photos, eval_codes, args.cache)
    if args.load:
        net = PostFilter.from_state(torch.load(args.load, weights_only=False))
        evaluate(net, test, eval_codes)
        return
    train = reconstructions(args.base, train_photos, codes, args.cache)
    plain = {q: np.mean([((recs[i][0].astype(np.float64) - ref[0]) ** 2).mean() for ref, recs in train])
             for i, q in enumerate(codes)}
    print("plain luma MSE per code: " + ", ".join(f"{q}: {v:.2f}" for q, v in plain.items()), flush=True)
    net = PostFilter(args.channels, args.layers, args.unshuffle)
    if args.init:
        grow_from(net, PostFilter.from_state(torch.load(args.init, weights_only=False)))
    print(f"{args.layers} layers x {args.channels} channels on {args.unshuffle}x{args.unshuffle} blocks: "
          f"{net.macs_per_pixel()} multiply-adds per pixel", flush=True)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    rng = np.random.default_rng(0)
    if args.on_grid:
        calibration = [PostFilter.inputs(torch.from_numpy(recs[i][:, :256, :256].astype(np.float32))[None], torch.tensor([q]))
                       for _, recs in train[:4] for i, q in enumerate(codes)]
    t0, step, seconds = time.perf_counter(), 0, args.minutes * 60
    running = []
    for rec, ref, q in batches(train, codes, args.batch, args.patch, rng, args.align):
        elapsed = time.perf_counter() - t0
        if elapsed > seconds:
            break
        for g in opt.param_groups:   # cosine decay over the time budget
            g["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * elapsed / seconds))
        if args.on_grid:
            if step % 100 == 0:   # the grid follows the weights as they move
                steps = weight_grid(net, calibration)
            out = torch.func.functional_call(net, on_grid(net, steps), (rec, q))
        else:
            out = net(rec, q)
        base = ((rec[:, :1] - ref) ** 2).mean()
        if args.per_code:
            w = torch.tensor([1.0 / plain[int(v)] for v in q]).view(-1, 1, 1, 1)
            loss = (((out - ref) ** 2) * w).mean() / w.mean()
        else:
            loss = ((out - ref) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        running.append(float(loss.detach() / base))
        step += 1
        if step % 500 == 0:
            print(f"step {step} {elapsed / 60:.1f} min: luma MSE x {np.mean(running):.4f} of the plain reconstruction", flush=True)
            running = []
        if args.save and step % 5000 == 0:   # a stopped run leaves usable weights
            save(net, step, time.perf_counter() - t0, args)
    if args.on_grid:
        with torch.no_grad():
            for name, w in on_grid(net, weight_grid(net, calibration)).items():
                net.get_parameter(name).copy_(w)
    if args.save:
        save(net, step, time.perf_counter() - t0, args)
    print(f"\n{step} steps", flush=True)
    evaluate(net, test, eval_codes)


def grow_from(net: PostFilter, old: PostFilter) -> None:
    """Start `net` as `old` exactly: its layers, and identity layers (a Dirac kernel, whose ReLU
    passes the non-negative activations unchanged) before its last one where `net` has more."""
    new_convs, old_convs = net.convs(), old.convs()
    if old.config["channels"] != net.config["channels"] or old.unshuffle != net.unshuffle or len(old_convs) > len(new_convs):
        raise SystemExit("--init: the saved post-filter has other channels or blocks, or more layers")
    sources = old_convs[:-1] + [None] * (len(new_convs) - len(old_convs)) + old_convs[-1:]
    with torch.no_grad():
        for m, src in zip(new_convs, sources):
            if src is None:
                torch.nn.init.dirac_(m.weight)
                m.bias.zero_()
            else:
                m.weight.copy_(src.weight)
                m.bias.copy_(src.bias)


def weight_grid(net: PostFilter, calibration: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each convolution's weight step per output channel in the integer form that
    `build_integer_postfilter(per_channel=True)` makes of the network as it is: the powers of two
    that its integer weights times give the float ones, by parameter name."""
    integer = build_integer_postfilter(net, calibration, per_channel=True)
    names = {m: name for name, m in net.named_modules()}
    steps = {}
    for m, layer in zip(net.convs(), integer.layers):
        largest = m.weight.detach().abs().amax(dim=(1, 2, 3)).double()
        widest = torch.from_numpy(np.abs(layer.weight).max(axis=(1, 2, 3))).double()
        step = torch.where(widest > 0, 2.0 ** torch.round(torch.log2(largest / widest.clamp(min=1))), 1.0)
        steps[names[m] + ".weight"] = step.float().view(-1, 1, 1, 1)
    return steps


def on_grid(net: PostFilter, steps: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The network's weights rounded to `steps` (`weight_grid`), whose gradient is the float
    weights' (straight-through), by parameter name."""
    return {name: w + (torch.round(w / steps[name]) * steps[name] - w).detach()
            for name, w in net.named_parameters() if name in steps}


def save(net: PostFilter, step: int, seconds: float, args: argparse.Namespace) -> None:
    """The weights and how they were made, for training/export.py."""
    torch.save({"base": args.base, "config": net.config, "state_dict": net.state_dict(), "step": step,
                "seconds": seconds, "args": vars(args)}, args.save)


def evaluate(net: PostFilter, test, codes) -> None:
    """The held-out tables (full size, then half size if there): luma squared error against the
    plain reconstruction, and PSNR-Y."""
    if len(test) > 12:
        evaluate(net, test[:12], codes)
        print("\nat half size:")
        test = test[12:]
    print("held-out photos (last 12), luma squared error against the plain reconstruction")
    print("| quality code | loop filter | CNN | CNN, then loop filter | PSNR-Y gain of CNN + filter over filter |")
    print("|---|---|---|---|---|")
    for i, q in enumerate(codes):
        e = np.array([luma_errors(net, ref, recs[i], q) for ref, recs in test])
        tot = e.sum(axis=0)
        rel = tot[1:] / tot[0] - 1
        gain = 10 * np.log10(e[:, 1] / e[:, 3]).mean()
        print(f"| {q} | " + " | ".join(f"{100 * x:+.2f}%" for x in rel) + f" | {gain:+.3f} dB |", flush=True)


if __name__ == "__main__":
    main()
