"""Probe: does fine-tuning the synthesis alone, on the latents the encoder really sends, pay?

Every other part of the codec stays frozen (analysis, hyperprior, context model, channel slices,
latent residual prediction), so every quality code keeps its symbols and every file its size: any
PSNR change at a code is a change at equal rate. The synthesis was trained on noisy latents (uniform
noise standing in for rounding) with the rate in the loss; here it sees the decoded latents (RDOQ,
context model, residual prediction) at eight codes from the lowest to the highest rate, and its
output goes through the base model's frozen post-filters (float forms) before the loss, as in the
decoder. The loss is log MSE_Y + w log MSE_C (chroma on 4:2:0 means), so each rate counts in
decibels rather than raw squared error (the low rates would take all the weight).

Data: the decoded latents of the first 37 of ../shared/data/train-photos and of the Debian photos
(training/debian_photos.py), each also at half size (training/postfilter.py `photo`), cached per
photo (checkpoints/synthesis-cache/, about 2 minutes to build). Measured on the last 12 training
photos at full and half size (never trained on, never Kodak): PSNR-Y of the whole decoded image,
before and after the 12-class luma loop filter fitted on it, against the base model's. Results and
the settings that failed (bf16 autocast, Adam at 1e-5 and 2e-5, chroma in the loss):
training/v16-synthesis-probe-log.txt and docs/MODEL.md. Nothing here is shipped.

    python training/probes/synthesis_finetune.py --minutes 30 --extra ../shared/data/debian-photos \
        --save checkpoints/synthesis-v16.pt
    python training/probes/synthesis_finetune.py --load checkpoints/synthesis-v16.pt   # the table only
"""
from __future__ import annotations

import argparse
import glob
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from codec.color import to_10bit  # noqa: E402
from codec.engine import LearnedCodec  # noqa: E402
from training.postfilter import loop_filtered, per_photo_cache, photo  # noqa: E402

CODES = (8000, 14000, 20000, 28000, 36000, 44000, 52000, 60000)
STRIDE = 16     # pixels per latent cell
MARGIN = 2      # latent cells around a training crop whose pixels are not in the loss (edge effects)


def cached_latents(codec: LearnedCodec, photos: list[tuple[str, int]], codes, cache: str) -> list:
    """[(original 10-bit Y'CbCr (3, H, W), [decoded latent y_hat at each code])] per (path, scale), flat
    offset map (the latent does not depend on the loop filter), cached per photo."""
    @torch.no_grad()
    def make(path: str, scale: int, missing: list[int]) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        an = codec.analyze(photo(path, scale), loop_filter=False)
        return np.stack(an.source10), {q: codec.y_hat(codec.symbols(an, q)).astype(np.float16) for q in missing}
    return per_photo_cache(photos, codes, cache, make)


class Decoder(torch.nn.Module):
    """The decoder's float path from y_hat to Y'CbCr in [0, 1]: the synthesis (trained), then the
    quality code's post-filter on luma (frozen), as `LearnedCodec._in_loop` runs them (there on
    rounded 10-bit planes)."""

    def __init__(self, codec: LearnedCodec):
        super().__init__()
        self.g_s = codec.net.g_s
        self.codec = codec
        for _, net, _ in codec.postfilters:
            net.requires_grad_(False)

    def forward(self, y_hat: torch.Tensor, q: int) -> torch.Tensor:
        x = self.g_s(y_hat).clamp(0, 1)
        chosen = self.codec.postfilter_for(q)
        if chosen is None:
            return x
        luma = chosen[0](x * 1023, torch.full((len(x),), float(q))) / 1023
        return torch.cat([luma.clamp(0, 1), x[:, 1:]], 1)


def batches(data, codes, size: int, cells: int, rng: np.random.Generator):
    """Batches of one quality code: (y_hat crops with MARGIN cells around, original crops, code)."""
    span = cells + 2 * MARGIN
    data = [d for d in data if min(d[0].shape[1:]) >= span * STRIDE]
    while True:
        i = int(rng.integers(len(codes)))
        ys, refs = [], []
        for _ in range(size):
            ref, ys_ = data[rng.integers(len(data))]
            y = ys_[i]
            # the latent covers the image padded to the network's multiple: crops stay inside the image
            r0, c0 = rng.integers(ref.shape[1] // STRIDE - span + 1), rng.integers(ref.shape[2] // STRIDE - span + 1)
            ys.append(y[:, r0:r0 + span, c0:c0 + span].astype(np.float32))
            p0, q0 = (r0 + MARGIN) * STRIDE, (c0 + MARGIN) * STRIDE
            refs.append(ref[:, p0:p0 + cells * STRIDE, q0:q0 + cells * STRIDE].astype(np.float32) / 1023)
        yield torch.from_numpy(np.stack(ys)), torch.from_numpy(np.stack(refs)), codes[i]


def errors(x_hat: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample MSE of luma, and of chroma on 2x2 means (the resolution a 4:2:0 anchor keeps, as
    `training.train.weighted_mse` measures it)."""
    err = x_hat - x
    return err[:, 0].pow(2).mean(dim=(1, 2)), F.avg_pool2d(err[:, 1:], 2).pow(2).mean(dim=(1, 2, 3))


def interior(x: torch.Tensor) -> torch.Tensor:
    m = MARGIN * STRIDE
    return x[..., m:-m, m:-m]


@torch.no_grad()
def psnrs(decoder: Decoder, test, codes) -> np.ndarray:
    """(photos, codes, 4): PSNR of the whole decoded images: Y without and with the luma loop filter
    fitted on it, Cb and Cr (10-bit)."""
    out = np.zeros((len(test), len(codes), 4))

    def psnr(a: np.ndarray, b: np.ndarray) -> float:
        return 10 * np.log10(1023 ** 2 / ((a.astype(np.float64) - b) ** 2).mean())

    for n, (ref, ys) in enumerate(test):
        h, w = ref.shape[1:]
        for i, q in enumerate(codes):
            rec = [to_10bit(p) for p in decoder(torch.from_numpy(ys[i].astype(np.float32))[None], q)[0, :, :h, :w].numpy()]
            out[n, i] = (psnr(rec[0], ref[0]), psnr(loop_filtered(rec[0], ref[0]), ref[0]),
                         psnr(rec[1], ref[1]), psnr(rec[2], ref[2]))
    return out


def report(before: np.ndarray, after: np.ndarray, codes) -> None:
    """The held-out tables: the 12 photos at full size, then at half size."""
    for part, title in ((slice(0, 12), "held-out photos, full size"), (slice(12, None), "held-out photos, half size")):
        table(before[part], after[part], codes, title)


def table(before: np.ndarray, after: np.ndarray, codes, title: str) -> None:
    print(f"\n{title}: PSNR change of the tuned synthesis (mean over photos)")
    print("| quality code | PSNR-Y before (no filter) | Y, no loop filter | Y, with loop filter | photos better (Y, filter) | Cb | Cr |")
    print("|---|---|---|---|---|---|---|")
    d = after - before
    for i, q in enumerate(codes):
        print(f"| {q} | {before[:, i, 0].mean():.2f} | {d[:, i, 0].mean():+.3f} dB | {d[:, i, 1].mean():+.3f} dB | "
              f"{int((d[:, i, 1] > 0).sum())}/{len(d)} | {d[:, i, 2].mean():+.3f} dB | {d[:, i, 3].mean():+.3f} dB |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", default="../shared/data/train-photos")
    ap.add_argument("--extra", nargs="*", default=[], help="more folders of training photos (never Kodak)")
    ap.add_argument("--base", type=int, default=15, help="the frozen codec's model id (its post-filters run in the loss)")
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--cells", type=int, default=16, help="latent cells per side of a training crop (x16 pixels)")
    ap.add_argument("--lr", type=float, default=1e-6,
                    help="Adam from scratch on the converged synthesis: 1e-5 and above made every rate worse")
    ap.add_argument("--bf16", type=int, choices=(0, 1), default=0,
                    help="1: bf16 autocast for the synthesis: twice as fast on CPUs with AVX-512 BF16, but its "
                         "8-bit mantissas cap the output's precision (a probe lost 0.01-0.74 dB, most at high codes)")
    ap.add_argument("--chroma-weight", type=float, default=0.0,
                    help="weight of the chroma's log MSE against luma's in the loss (dB of chroma per dB of luma)")
    ap.add_argument("--codes", type=int, nargs="+", default=list(CODES))
    ap.add_argument("--cache", default="checkpoints/synthesis-cache")
    ap.add_argument("--save", default=None, help="checkpoint (written every 5 minutes and at the end; resumed from)")
    ap.add_argument("--load", default=None, help="evaluate these saved weights instead of training")
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    codec = LearnedCodec.load(args.base)
    decoder = Decoder(codec)
    paths = sorted(glob.glob(os.path.join(args.photos, "*.png")))
    extra = sorted(p for d in args.extra for p in glob.glob(os.path.join(d, "*.png")))
    test = cached_latents(codec, [(p, s) for s in (1, 2) for p in paths[-12:]], args.codes, args.cache)
    before = psnrs(decoder, test, args.codes)
    if args.load:
        decoder.g_s.load_state_dict(torch.load(args.load, weights_only=False)["g_s"])
        report(before, psnrs(decoder, test, args.codes), args.codes)
        return
    train = cached_latents(codec, [(p, s) for s in (1, 2) for p in paths[:-12] + extra], args.codes, args.cache)
    opt = torch.optim.Adam(decoder.g_s.parameters(), lr=args.lr)
    step, spent, log = 0, 0.0, []
    if args.save and os.path.exists(args.save):
        state = torch.load(args.save, weights_only=False)
        decoder.g_s.load_state_dict(state["g_s"])
        opt.load_state_dict(state["opt"])
        step, spent = state["step"], state["seconds"]
        print(f"resumed at step {step}, {spent / 60:.1f} min", flush=True)

    def save() -> None:
        if args.save:
            torch.save({"base": args.base, "g_s": decoder.g_s.state_dict(), "opt": opt.state_dict(), "step": step,
                        "seconds": spent, "args": vars(args)}, args.save + ".tmp")
            os.replace(args.save + ".tmp", args.save)

    rng = np.random.default_rng(step)
    budget, t0, saved = args.minutes * 60, time.perf_counter() - spent, spent
    for y, ref, q in batches(train, args.codes, args.batch, args.cells, rng):
        spent = time.perf_counter() - t0
        if spent > budget:
            break
        for g in opt.param_groups:   # cosine decay over the time budget
            g["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * spent / budget))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(args.bf16)):
            out = decoder(y, q)
        mse_y, mse_c = errors(interior(out.float()), ref)
        loss = (torch.log(mse_y) + args.chroma_weight * torch.log(mse_c)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        log.append(float(10 * torch.log10(1 / mse_y.detach()).mean()))
        if step % 200 == 0:
            print(f"step {step} {spent / 60:.1f} min: training crops' PSNR-Y {np.mean(log):.2f} dB", flush=True)
            log = []
        if spent - saved > 300:
            save()
            saved = spent
    save()
    print(f"\n{step} steps, {spent / 60:.1f} min", flush=True)
    report(before, psnrs(decoder, test, args.codes), args.codes)


if __name__ == "__main__":
    main()
