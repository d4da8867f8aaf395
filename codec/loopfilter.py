"""Adaptive loop filter: Wiener filters per image and plane, fitted by the encoder, sent in the
bitstream and applied by every decoder in exact integer arithmetic (the idea of VVC's ALF).

The synthesis is trained for the average image; on one image its reconstruction is often a little
too smooth (fine periodic texture most of all), and small linear filters fitted to that image by
least squares recover part of it. Each filter is a 7x7 diamond (25 taps), point-symmetric, so 12
coefficients, written in residual form so that zero coefficients are the identity:

    out = x + (sum_j c_j * (C(x[p + o_j] - x[p]) + C(x[p - o_j] - x[p])) + 2^(PREC-1)) >> PREC

on 10-bit planes (edges replicated), clipped to 0..1023. Coefficients are int8 in units of
2^-PREC. C clips a difference to [-k, k], with k chosen per plane from `CLIPS` (or no clipping),
as in VVC's non-linear ALF: a neighbour across an edge then pulls the pixel by at most k, so the
filter can sharpen texture without smearing edges (on 6 training photos at two qualities, 12 luma
classes removed 4.17% of the squared error with a clip per plane, 2.97% without). Every term is an
integer well inside int32, so all decoders (threads, instruction sets, devices) get the same pixels.

Luma is filtered per class, as in ALF: each 4x4 block of the decoded plane is labelled by its
activity (its rank among the image's blocks: quartiles) and, in larger files, its direction
(horizontal, vertical, neither), and each class has its own filter. The class of a block is computed
from decoded pixels with integer arithmetic, so it costs no side information. Each filter gains a
share of the rate but costs a fixed 12 bytes, so how many there are follows from the size of the z
and y streams (`layout`): 1, 4 or 12 for luma, and one per chroma plane only in the largest files
(chroma does not count in PSNR-Y). Each filter is fitted on the decoder's own reconstruction and
kept only if it lowers its class's squared error; otherwise that class sends zeros. The block's
size follows from the stream sizes and the plane count alone, so the exact size computation of the
rate matcher knows it without fitting.

Written by hand because it is part of the format: the filter must be the same integer operation in
every decoder, and no library offers that.
"""
from __future__ import annotations

import numpy as np

from .entropy.bitstream import BitstreamError

# torch is imported in the functions that filter, classify or fit: the block's syntax (layouts,
# pack / unpack) is read without it, by `bitlens info`.

RADIUS = 3
PREC = 7                  # coefficients in units of 1/128
# one offset of each point-symmetric pair of the 7x7 diamond (the other is its negative)
OFFSETS = tuple((dy, dx) for dy in range(0, RADIUS + 1) for dx in range(-RADIUS, RADIUS + 1)
                if abs(dy) + abs(dx) <= RADIUS and (dy > 0 or dx > 0))
TAPS = len(OFFSETS)       # 12
MAX_FIT_PIXELS = 1 << 18  # the least-squares fit samples at most this many pixels per plane
BLOCK = 4                 # luma classes are given to blocks of BLOCK x BLOCK pixels
ACTIVITY_LEVELS = 4       # activity classes: the quartiles of the image's block activities
# Layouts a version-3 or 4 block can have (its first byte; its low two bits in version 4): luma
# filters, and filters per chroma plane.
LAYOUTS = ((1, 0), (4, 0), (12, 1))
# Clipping of the differences to the centre pixel a plane's filters use, by index (two bits per plane
# in a version-4 block's first byte); index 0, no clipping, is what version 2 and 3 blocks mean. The
# values are those the fit chose on training photos (64 and more never were).
CLIPS = (None, 32, 16, 8)
# z + y stream bytes from which the encoder picks layout 1 and 2: extra filters gain a share of the
# rate and cost 12 bytes each. Chosen on the last 12 training photos (768x512, model 8;
# `training/compare.py --loop-filter candidate`; chroma filtered at every size in the first four):
# BD-rate of the filter -0.70% with one luma filter, -1.23% with up to 4, -1.18% with 4 and 12 from
# 1,500 and 3,500 bytes, -1.41% with these, -1.73% with chroma only in the largest layout
LAYOUT_FROM = (2600, 9000)


def choose_layout(stream_bytes: int) -> int:
    """The layout the encoder uses for a file whose z and y streams have about this many bytes (the
    rate matcher asks with the target's size, so that the block does not change size during the
    search and every target stays reachable)."""
    return sum(stream_bytes >= b for b in LAYOUT_FROM)


def layout(planes: int, index: int | None) -> list[int]:
    """Filters per plane (0: the plane is not filtered) of layout `index`; None: a version-2 block,
    one filter per plane."""
    if index is None:
        return [1] * planes
    luma, chroma = LAYOUTS[index]
    return [luma] + [chroma] * (planes - 1)


def block_bytes(planes: int, index: int) -> int:
    """Size of a version-3 or 4 filter block (without its length field): layout byte and coefficients."""
    return 1 + TAPS * sum(layout(planes, index))


def identity(planes: int, index: int) -> list[np.ndarray]:
    """Coefficients that leave every plane as it is (all zero): (filters, TAPS) per plane."""
    return [np.zeros((n, TAPS), dtype=np.int8) for n in layout(planes, index)]


def classify(plane10: np.ndarray, classes: int) -> np.ndarray | None:
    """Class of each 4x4 block of a decoded luma plane (blocks of the plane padded to a multiple of
    4 by edge replication), from its activity (sum of absolute horizontal and vertical second
    differences) ranked against the image's other blocks, and with 12 classes its direction: 1 if
    the horizontal differences are more than twice the vertical ones, 2 the converse, 0 else.
    None for one class. Integer arithmetic and a sort (torch, on the CPU): the same in every decoder."""
    import torch

    if classes == 1:
        return None
    h, w = plane10.shape
    hb, wb = -(-h // BLOCK), -(-w // BLOCK)
    x = torch.from_numpy(np.pad(plane10.astype(np.int32), ((1, hb * BLOCK - h + 1), (1, wb * BLOCK - w + 1)),
                                mode="edge"))
    c = 2 * x[1:-1, 1:-1]
    gh = (c - x[1:-1, :-2] - x[1:-1, 2:]).abs_().reshape(hb, BLOCK, wb, BLOCK).sum(dim=(1, 3))
    gv = (c - x[:-2, 1:-1] - x[2:, 1:-1]).abs_().reshape(hb, BLOCK, wb, BLOCK).sum(dim=(1, 3))
    activity = gh + gv
    ranked = torch.sort(activity.reshape(-1)).values
    thresholds = ranked[torch.arange(1, ACTIVITY_LEVELS) * ranked.numel() // ACTIVITY_LEVELS]
    cls = torch.searchsorted(thresholds, activity.contiguous(), right=True)
    if classes == 3 * ACTIVITY_LEVELS:
        cls = 3 * cls + torch.where(gh > 2 * gv, 1, torch.where(gv > 2 * gh, 2, 0))
    return cls.numpy()


def _padded(plane: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The plane as int32, edge-replicated to `shape` (a block multiple) and then by RADIUS."""
    (h, w), (hp, wp) = plane.shape, shape
    return np.pad(plane.astype(np.int32), ((RADIUS, RADIUS + hp - h), (RADIUS, RADIUS + wp - w)), mode="edge")


def _pair_sum(pad: torch.Tensor, offset: tuple[int, int], shape: tuple[int, int],
              out: torch.Tensor | None = None) -> torch.Tensor:
    """x[p + o] + x[p - o] at every pixel p of a plane padded by RADIUS (int32), into `out` if
    given."""
    import torch

    (dy, dx), (h, w), r = offset, shape, RADIUS
    return torch.add(pad[r + dy:r + dy + h, r + dx:r + dx + w], pad[r - dy:r - dy + h, r - dx:r - dx + w], out=out)


def apply(plane10: np.ndarray, coeffs: np.ndarray, classes: np.ndarray | None = None, clip: int = 0) -> np.ndarray:
    """The filtered 10-bit plane (uint16), exactly as every decoder computes it: int32 torch
    arithmetic on the CPU into preallocated buffers (about 2 ms for 768x512 with one filter, 6 ms with
    12 classes on 2 cores; clipping adds about two thirds). `coeffs` is (filters, TAPS); with several
    filters, `classes` (from `classify`) picks each 4x4 block's, broadcast over the block; `clip`
    indexes `CLIPS`. Without clipping the centre terms fold into one product."""
    import torch

    coeffs = np.asarray(coeffs).reshape(-1, TAPS).astype(np.int32)
    if not np.any(coeffs):
        return plane10
    h, w = plane10.shape
    if classes is None:
        shape, per_tap, centre = (h, w), [int(c) for c in coeffs[0]], int(coeffs[0].sum())
    else:
        shape = (classes.shape[0] * BLOCK, classes.shape[1] * BLOCK)
        per_tap = torch.from_numpy(coeffs[classes]).permute(2, 0, 1)[:, :, None, :, None]  # (TAPS, hb, 1, wb, 1)
        centre = per_tap.sum(0)
    blocks = (lambda a: a) if classes is None else (lambda a: a.reshape(shape[0] // BLOCK, BLOCK, -1, BLOCK))
    pad = torch.from_numpy(_padded(plane10, shape))
    x = pad[RADIUS:-RADIUS, RADIUS:-RADIUS]
    acc, pair = torch.empty(shape, dtype=torch.int32), torch.empty(shape, dtype=torch.int32)
    limit = CLIPS[clip]
    if limit is None:
        torch.mul(blocks(x), -2 * centre, out=blocks(acc))
    else:
        acc.zero_()
    for c, offset in zip(per_tap, OFFSETS):
        if classes is None and not c:
            continue
        if limit is None:
            _pair_sum(pad, offset, shape, out=pair)
        else:
            _clipped_pair(pad, offset, shape, limit, out=pair)
        if classes is None:
            acc.add_(pair, alpha=c)
        else:
            blocks(acc).addcmul_(blocks(pair), c)
    acc.add_(1 << (PREC - 1)).bitwise_right_shift_(PREC).add_(x)
    return acc[:h, :w].clamp_(0, 1023).numpy().astype(np.uint16)


def _clipped_pair(pad: torch.Tensor, offset: tuple[int, int], shape: tuple[int, int], limit: int,
                  out: torch.Tensor) -> torch.Tensor:
    """C(x[p + o] - x[p]) + C(x[p - o] - x[p]), C clipping to [-limit, limit], at every pixel p of a
    plane padded by RADIUS (int32), into `out`. C is odd, so the second term is -D[p - o] with
    D[q] = C(x[q + o] - x[q]): one clipped difference over the plane and a margin, then one
    subtraction, instead of two of each."""
    import torch

    (dy, dx), (h, w), r = offset, shape, RADIUS
    c0, c1 = min(0, -dx), max(w, w - dx)           # columns q of D that p and p - o need (dy >= 0)
    d = torch.sub(pad[r:r + h + dy, r + c0 + dx:r + c1 + dx], pad[r - dy:r + h, r + c0:r + c1]).clamp_(-limit, limit)
    return torch.sub(d[dy:dy + h, -c0:-c0 + w], d[:h, -c0 - dx:-c0 - dx + w], out=out)


def fit(rec10: np.ndarray, ref10: np.ndarray, classes: np.ndarray | None = None,
        n_classes: int = 1) -> tuple[np.ndarray, int]:
    """int8 coefficients (n_classes, TAPS) that bring `rec10` closest to `ref10` in squared error,
    one filter per class of `classes` (zeros for a class no quantized filter improves), and the
    plane's clip index (`CLIPS`). Least squares on at most MAX_FIT_PIXELS pixels (a regular
    subsample), for each clip; the clip whose quantized filters leave the least squared error on
    those pixels wins (from the normal equations, without filtering). In torch: multithreaded, and a
    numpy BLAS product would leave OpenBLAS threads spinning, which slows the torch work after it."""
    import torch

    h, w = rec10.shape
    step = max(1, int(np.ceil(np.sqrt(rec10.size / MAX_FIT_PIXELS))))
    pad = torch.from_numpy(_padded(rec10, rec10.shape))
    ref = torch.from_numpy(ref10.astype(np.int32))
    rec = pad[RADIUS:-RADIUS, RADIUS:-RADIUS]
    x = rec[::step, ::step]                                # the samples
    target = (ref[::step, ::step] - x).reshape(-1).double()
    pixel_class = (torch.zeros((h, w), dtype=torch.int64) if classes is None else torch.from_numpy(
        np.repeat(np.repeat(classes, BLOCK, axis=0), BLOCK, axis=1)[:h, :w].copy()))
    sampled = pixel_class[::step, ::step].reshape(-1)
    order = torch.argsort(sampled, stable=True)            # the samples grouped by class
    ends = torch.cumsum(torch.bincount(sampled, minlength=n_classes), 0).tolist()
    target = target[order]
    # each tap's two differences to the centre at the samples, in class order: made once, then
    # clipped for each candidate
    diffs = torch.stack([pad[RADIUS + sy * dy:RADIUS + sy * dy + h:step, RADIUS + sy * dx:RADIUS + sy * dx + w:step] - x
                         for dy, dx in OFFSETS for sy in (1, -1)]).reshape(TAPS, 2, -1)[:, :, order]
    best: tuple[float, np.ndarray, int] | None = None
    for clip, limit in enumerate(CLIPS):
        d = diffs if limit is None else diffs.clamp(-limit, limit)
        feats = (d[:, 0] + d[:, 1]).double()
        q = np.zeros((n_classes, TAPS), dtype=np.int8)
        error = 0.0      # squared error left on the samples, each class filtered only if it helps
        for k, (start, end) in enumerate(zip([0] + ends[:-1], ends)):
            f, t = feats[:, start:end], target[start:end]
            base = float(t @ t)
            if end - start < 4 * TAPS:          # too few pixels to fit a filter on
                error += base
                continue
            gram, corr = f @ f.T, f @ t
            coef = torch.linalg.lstsq(gram, corr[:, None]).solution[:, 0]
            qk = torch.clamp(torch.round(coef * (1 << PREC)), -128, 127)
            c = qk / (1 << PREC)
            left = base - 2 * float(c @ corr) + float(c @ gram @ c)
            if left < base:
                q[k] = qk.numpy()
            error += min(left, base)
        if best is None or error < best[0]:
            best = (error, q, clip)
    _, q, clip = best
    if not np.any(q):
        return q, 0
    # keep a class's filter only where it lowers that class's squared error over the whole plane
    labels = pixel_class.reshape(-1)
    err = lambda plane: torch.bincount(labels, ((plane - ref) ** 2).reshape(-1).double(), minlength=n_classes)  # noqa: E731
    filtered = torch.from_numpy(apply(rec10, q, classes, clip).astype(np.int32))
    q[(err(filtered) >= err(rec)).numpy()] = 0
    return q, (clip if np.any(q) else 0)


def pack(coeffs: list[np.ndarray], index: int, clips: list[int] | None = None) -> bytes:
    """A version-4 filter block: the layout's index and each plane's clip index (two bits each, luma
    first, from bit 2), then every filter's coefficients in plane order."""
    head = index | sum(c << (2 + 2 * i) for i, c in enumerate(clips or []))
    return bytes([head]) + b"".join(np.asarray(c, dtype=np.int8).tobytes() for c in coeffs)


def unpack(data: bytes, planes: int, version: int = 4) -> tuple[list[np.ndarray], list[int]]:
    """Per-plane int8 coefficients (filters, TAPS) and clip indices from a filter block (version 2:
    one filter per plane, no first byte; version 3: the first byte is the layout alone). An unknown
    layout, a clip for a plane without filters, or a block of another size is corrupt."""
    clips = [0] * planes
    if version < 3:
        index, body, expected = None, data, TAPS * planes
    else:
        head = data[0] if data else None
        index = None if head is None else head & 3 if version >= 4 else head
        if index is None or index >= len(LAYOUTS):
            raise BitstreamError(f"corrupted bitstream: unknown loop-filter layout "
                                 f"{index if index is not None else 'missing'}")
        if version >= 4:
            clips = [(head >> (2 + 2 * i)) & 3 for i in range(planes)]
            if head >> (2 + 2 * planes) or any(c and not n for c, n in zip(clips, layout(planes, index))):
                raise BitstreamError(f"corrupted bitstream: loop-filter clips {head >> 2:#x} do not fit "
                                     f"layout {index} with {planes} plane{'s' if planes > 1 else ''}")
        body, expected = data[1:], block_bytes(planes, index)
    if len(data) != expected:
        raise BitstreamError(f"corrupted bitstream: loop-filter block of {len(data)} bytes, expected {expected}")
    arr = np.frombuffer(body, dtype=np.int8).reshape(-1, TAPS)
    counts = layout(planes, index)
    ends = np.cumsum(counts)
    return [arr[end - n:end].copy() for n, end in zip(counts, ends)], clips
