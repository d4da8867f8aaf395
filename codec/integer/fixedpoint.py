"""Fixed-point convolution layers with a proven accumulator bound.

A layer holds integer weights (per-output-channel scale, 16 or 8 bits), an integer bias at the
accumulator's scale, and a per-channel requantization multiplier and shift:

    acc   = sum(w_int * x_int) + b_int            exact: computed as float64 on integer values, valid
                                                  because |acc| <= ACC_LIMIT = 2^53 is proven below
    x_out = clamp((acc * mult + 2^(shift-1)) >> shift, lo, hi)     int64, rounds half up

On a CPU with fast int8 dot products the convolution runs as int8 matrix products with int32
accumulators (`int8_conv`): 16-bit activations and weights are split into 8-bit halves, so the
four products of halves (two for 8-bit weights), grouped by power of 2^8 into three matrix
products, give the exact sum; the wide g_s layers run about 3x faster than in float64 on a CPU
with AVX-512 VNNI / AMX, and a 768x512 decode took 0.31 s instead of 0.59 s when they came in.
Where int8 products are slow (AVX2 alone: 12x slower than float64) and off the CPU it runs as float64,
exact because every partial sum is an integer below 2^53, so any summation order (threads, SIMD
width, blocking) gives the same exact result; CPU float64 convolutions use im2col + GEMM or one
GEMM per tap (`float64_conv_by_phases`), never Winograd or FFT. On CUDA the layers run with cuDNN disabled, so PyTorch's own
im2col + GEMM kernels are used there too (cuDNN may pick FFT or Winograd algorithms, whose
intermediate values are not integers). `reference_forward` does the same with int64 arithmetic only,
for the tests.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

ACC_LIMIT = 1 << 53          # float64 represents every integer below this exactly
FLOAT32_LIMIT = 1 << 24      # float32 represents every integer below this exactly
PRODUCT_LIMIT = 1 << 62      # acc * mult must stay inside int64
ACT_BITS = 16                # activations are signed 16-bit


@dataclass
class IntLayer:
    """One convolution (or transposed convolution) in fixed point, optionally followed by ReLU."""

    weight: np.ndarray        # int64 (conv layout of torch: (Cout,Cin,k,k) or (Cin,Cout,k,k) if transposed)
    bias: np.ndarray          # int64 (Cout,), at scale s_in * s_w[c]
    mult: np.ndarray          # int64 (Cout,)
    shift: int
    transposed: bool
    stride: int
    padding: int
    output_padding: int
    relu: bool
    in_max: int               # inputs are clamped to [-in_max, in_max] before the layer
    out_min: int
    out_max: int

    def __post_init__(self):
        # `_finish` folds ReLU into the output clamp, which needs these
        assert (self.mult >= 0).all() and (not self.relu or self.out_min == 0)
        # a strided transposed layer runs as a sub-pixel convolution on the CPU (int8 products or
        # float64 phase products); elsewhere, in one float64 convolution, only when wide (the
        # 3-channel output is faster as a plain float64 transposed convolution)
        self._strided = self.transposed and self.stride > 1
        self._subpixel = self._strided and self.out_channels >= 16
        if self._strided:
            self._phases = phase_offsets(self.weight.shape[-1], self.stride, self.padding)
        self._on: dict[torch.device, tuple[torch.Tensor, ...]] = {}
        # the narrowest integer type holding every output (16-bit activations: int16)
        self._out_type = torch.int16 if -(1 << 15) <= self.out_min and self.out_max < 1 << 15 else torch.int64
        self._int8: tuple[Int8Weights, torch.Tensor, torch.Tensor] | None = None
        self._phases_f64: tuple[PhaseKernel, torch.Tensor, torch.Tensor] | None = None

    def _params(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """float64 kernel, and int64 bias and multiplier per output channel of that kernel ((channel,
        phase) for sub-pixel layers), on `device` (made once per device)."""
        if device not in self._on:
            w = self.weight.astype(np.float64)
            phases = 1
            if self._subpixel:
                w, phases = subpixel_kernel(w, self.stride, self.padding), self.stride ** 2
            bias, mult = (torch.from_numpy(v.astype(np.int64)).repeat_interleave(phases).view(1, -1, 1, 1).to(device)
                          for v in (self.bias, self.mult))
            self._on[device] = (torch.from_numpy(w).to(device), bias, mult)
        return self._on[device]

    @property
    def out_channels(self) -> int:
        return self.weight.shape[1] if self.transposed else self.weight.shape[0]

    def abs_weight_sums(self) -> np.ndarray:
        """Sum of |w| feeding each output channel (for transposed conv: per output phase, bounded by all)."""
        w = np.abs(self.weight)
        return w.sum(axis=(0, 2, 3)) if self.transposed else w.sum(axis=(1, 2, 3))

    def accepts(self, previous: "IntLayer") -> bool:
        """Whether every output of `previous` is within this layer's input range."""
        return -self.in_max <= previous.out_min and previous.out_max <= self.in_max

    def accumulator_bound(self) -> int:
        """Largest |acc| any input within [-in_max, in_max] can produce."""
        return int((self.abs_weight_sums() * self.in_max + np.abs(self.bias)).max())

    def check_bounds(self) -> None:
        acc = self.accumulator_bound()
        if acc >= ACC_LIMIT:
            raise ValueError(f"accumulator bound {acc} exceeds 2^53")
        if acc * int(np.abs(self.mult).max()) + (1 << self.shift) >= PRODUCT_LIMIT:
            raise ValueError("requantization product exceeds int64")

    def _int8_params(self) -> tuple["Int8Weights", torch.Tensor, torch.Tensor]:
        """int8 weight pieces and the bias (with the pieces' column offset) and multiplier per
        output column, (channel, phase) for sub-pixel layers (made once)."""
        if self._int8 is None:
            w = subpixel_kernel(self.weight, self.stride, self.padding) if self._strided else self.weight
            weights = Int8Weights.split(w)
            phases = self.stride ** 2 if self._strided else 1
            bias, mult = (torch.from_numpy(v.astype(np.int64)).repeat_interleave(phases)
                          for v in (self.bias, self.mult))
            # each column's sign (`Int8Weights`) in its bias and multiplier
            self._int8 = (weights, weights.signs * bias + weights.col_offset, weights.signs * mult)
        return self._int8

    def _phase_kernel(self) -> tuple["PhaseKernel", torch.Tensor, torch.Tensor]:
        """The float64 tap groups of a sub-pixel layer for the CPU, and the bias and multiplier
        per output column (made once)."""
        if self._phases_f64 is None:
            bias, mult = (torch.from_numpy(v.astype(np.int64)).repeat(self.stride ** 2)
                          for v in (self.bias, self.mult))
            self._phases_f64 = PhaseKernel.split(self.weight, self.stride, self.padding), bias, mult
        return self._phases_f64

    def prepare(self) -> None:
        """Pack the int8 weight pieces now (once per layer) rather than in the first forward."""
        if int8_products() and (self._strided or not self.transposed):
            self._int8_params()

    def _use_int8(self, x: torch.Tensor) -> bool:
        """int8 products on the CPU for 16-bit inputs (not for a stride-1 transposed layer, which
        no shipped model has)."""
        return (x.device.type == "cpu" and int8_products() and self.in_max < 1 << 15
                and (self._strided or not self.transposed))

    def _forward_int8(self, x: torch.Tensor) -> torch.Tensor:
        """The layer via int8 products (CPU); int16 out, channels-last in memory. Narrow layers
        (the 3-channel output's 12 phase columns) take the tap-by-tap form, wide ones im2col."""
        weights, bias, mult = self._int8_params()

        def finish(acc: torch.Tensor) -> torch.Tensor:     # (rows, Cout): channels along the last axis
            return self._finish(acc, bias, mult)

        if self._strided:
            conv = int8_conv_by_taps if weights.col_offset.numel() <= NARROW_COLUMNS else int8_conv
            # the kernels write each phase to its output pixel: no pixel shuffle pass after them
            return self._subpixel_conv(x, lambda v, pad: conv(v, weights, 1, pad, finish, shuffle=self.stride),
                                       shuffled=True)
        return int8_conv(x, weights, self.stride, (self.padding, self.padding), finish)

    def _subpixel_conv(self, x: torch.Tensor, conv: Callable[[torch.Tensor, tuple[int, int]], torch.Tensor],
                       shuffled: bool = False) -> torch.Tensor:
        """The transposed convolution as one stride-1 convolution producing every output phase,
        conv(x, (pad before, pad after)), then a pixel shuffle (unless `conv` returns its output
        `shuffled` already): the same sums of products, about
        twice as fast as CPU float64 conv_transpose2d (whose col2im path dominated decode time) for
        wide layers; narrow ones (the 3-channel output) are faster as they are."""
        d, k = self.stride, self.weight.shape[-1]
        size = [(n - 1) * d - 2 * self.padding + k + self.output_padding for n in x.shape[-2:]]
        dmax, dmin = self._phases
        y = conv(x, (dmax, -dmin))
        return (y if shuffled else F.pixel_shuffle(y, d))[..., :size[0], :size[1]]

    def _conv(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """A layer that is not sub-pixel, in float64 (`forward` runs the sub-pixel ones)."""
        if self.transposed:
            return F.conv_transpose2d(x, w, stride=self.stride, padding=self.padding,
                                      output_padding=self.output_padding)
        return F.conv2d(x, w, stride=self.stride, padding=self.padding)

    def _finish(self, acc: torch.Tensor, b: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """Bias, ReLU and requantization of int64 accumulators (b and m broadcast over acc), in
        place: these int64 passes are a large part of decode time, so there are three.
        (acc + b) * m + 2^(shift-1) is computed as acc * m + (b * m + 2^(shift-1)), and ReLU needs
        no pass of its own: with m >= 0 a negative acc + b shifts to a value <= 0, which the clamp
        at out_min = 0 makes 0, as ReLU would. No overflow: |acc|, |b| and |acc + b| are each within
        the accumulator bound, whose product with m `check_bounds` keeps below 2^62."""
        acc = acc.mul_(m).add_(b * m + (1 << (self.shift - 1))).bitwise_right_shift_(self.shift)
        return acc.clamp_(self.out_min, self.out_max)

    def forward(self, x: torch.Tensor, in_range: bool = False) -> torch.Tensor:
        """Integer (B,Cin,H,W) -> integer (B,Cout,H',W'), exact, on x's device: int16 from the int8
        products and the float64 sub-pixel layers, int64 from the other float64 ones (the values are
        the same). `in_range`: the caller knows x is within [-in_max, in_max] (the previous layer's
        output range), so the clamp, a pass over the input, is skipped."""
        if not in_range:
            x = x.clamp(-self.in_max, self.in_max)
        if self._use_int8(x):
            return self._forward_int8(x)
        if self._strided and x.device.type == "cpu" and PHASE_PRODUCTS:
            kernel, bias, mult = self._phase_kernel()
            return self._subpixel_conv(x, lambda v, pad: float64_conv_by_phases(
                v, kernel, pad, lambda acc: self._finish(acc, bias, mult), self._out_type), shuffled=True)
        w, bias, mult = self._params(x.device)
        with torch.backends.cudnn.flags(enabled=False):
            if self._subpixel:   # requantized before the pixel shuffle, which then moves int16
                def conv(v: torch.Tensor, pad: tuple[int, int]) -> torch.Tensor:
                    acc = F.conv2d(F.pad(v.to(torch.float64), pad * 2), w).to(torch.int64)
                    return self._finish(acc, bias, mult).to(self._out_type)

                return self._subpixel_conv(x, conv)
            acc = self._conv(x.to(torch.float64), w).to(torch.int64)
        return self._finish(acc, bias, mult)

    def forward_every_other(self, x: torch.Tensor, r0: int, c0: int) -> torch.Tensor:
        """The output at rows r0, r0 + 2, ... and columns c0, c0 + 2, ... only: the same values as
        forward(x)[..., r0::2, c0::2] for a quarter of the work (a stride-1 convolution padded to
        keep the size, such as the context model's first layer)."""
        assert not self.transposed and self.stride == 1 and 2 * self.padding + 1 == self.weight.shape[-1]
        x = x.clamp(-self.in_max, self.in_max)
        p = self.padding
        shifted = F.pad(x, (p, p, p, p))[..., r0:, c0:]     # a stride-2 convolution of this
        if not self._use_int8(x):
            w, bias, mult = self._params(x.device)
            with torch.backends.cudnn.flags(enabled=False):
                acc = F.conv2d(shifted.to(torch.float64), w, stride=2).to(torch.int64)
            return self._finish(acc, bias, mult)
        weights, bias, mult = self._int8_params()
        return int8_conv(shifted, weights, 2, (0, 0), lambda acc: self._finish(acc, bias, mult))

    def reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The same layer with int64 arithmetic only (im2col + integer matmul); slow, for tests."""
        x = x.clamp(-self.in_max, self.in_max).to(torch.int64)
        w = torch.from_numpy(self.weight.astype(np.int64))
        if self.transposed:
            # transposed conv = zero-insertion, padding, and a stride-1 conv with the flipped kernel
            b, c, h, wd = x.shape
            k = w.shape[-1]
            up = torch.zeros(b, c, (h - 1) * self.stride + 1, (wd - 1) * self.stride + 1, dtype=torch.int64)
            up[:, :, ::self.stride, ::self.stride] = x
            p = k - 1 - self.padding
            up = F.pad(up, (p, p + self.output_padding, p, p + self.output_padding))
            w = w.flip(-1, -2).transpose(0, 1)
            stride, x = 1, up
        else:
            stride = self.stride
            x = F.pad(x, (self.padding,) * 4)
        k = w.shape[-1]
        b, c, h, wd = x.shape
        oh, ow = (h - k) // stride + 1, (wd - k) // stride + 1
        cols = x.unfold(2, k, stride).unfold(3, k, stride)            # (B,C,oh,ow,k,k)
        cols = cols.permute(0, 2, 3, 1, 4, 5).reshape(b, oh * ow, c * k * k)
        acc = cols @ w.reshape(w.shape[0], -1).T                      # int64 matmul
        acc = acc.permute(0, 2, 1).reshape(b, -1, oh, ow)
        bias, mult = (torch.from_numpy(v.astype(np.int64)).view(1, -1, 1, 1) for v in (self.bias, self.mult))
        acc = acc + bias                   # the formula as written, not `_finish`'s refactoring
        if self.relu:
            acc = acc.clamp_min(0)
        return ((acc * mult + (1 << (self.shift - 1))) >> self.shift).clamp(self.out_min, self.out_max)


# torch._int_mm (int8 x int8 -> int32 matrix product) is private but has been in PyTorch since 2.1
# and is what torchao's int8 kernels build on; without it the layers fall back to float64.
# int8_conv reads the bytes of int16 values, so it needs a little-endian machine.
# Both kernels give the same integers; which is faster depends on the CPU. With int8 dot products
# (AVX-512 VNNI, AMX) the int8 form ran the wide g_s layers 3x faster than float64; on an AVX2-only
# AMD EPYC (2026-11-27) torch._int_mm ran 12x *slower* than a float64 product of the same matrices
# and a 768x512 encode took 11.6 s instead of 1.1-1.3 s. So each process measures both once
# (`int8_products`); BITLENS_INT8_PRODUCTS=1 or 0 forces the choice. None: not measured yet.
INT8_AVAILABLE = hasattr(torch, "_int_mm") and sys.byteorder == "little"
INT8_MATMUL: bool | None = None if INT8_AVAILABLE else False


def int8_products() -> bool:
    """Whether the CPU layers use int8 matrix products (else float64 ones): forced by
    BITLENS_INT8_PRODUCTS, else whichever ran faster here (measured once per process)."""
    global INT8_MATMUL
    if INT8_MATMUL is None:
        forced = os.environ.get("BITLENS_INT8_PRODUCTS", "").strip()
        INT8_MATMUL = forced == "1" if forced in ("0", "1") else int8_faster_than_float64()
    return INT8_MATMUL


@contextlib.contextmanager
def forced_products(int8: bool):
    """A block in which the CPU layers use int8 products (True) or float64 ones (False), whichever
    this machine would pick: for showing that both give the same pixels (`codec.devices`). Process-
    wide: layers running in other threads meanwhile switch too (the same integers, at the other
    kernel's speed)."""
    with _switched("INT8_MATMUL", int8 and INT8_AVAILABLE):
        yield


# strided transposed layers on the CPU in float64: phase products (`float64_conv_by_phases`); False:
# the forms used off the CPU (and on it before 2026-11-28), one im2col convolution with
# `subpixel_kernel`, zero taps included, or for the 3-channel layer a transposed convolution; kept
# selectable for benchmarks/cpu_kernels.py
PHASE_PRODUCTS = True


@contextlib.contextmanager
def forced_phase_products(on: bool):
    """A block in which the CPU's float64 strided transposed layers use `float64_conv_by_phases`
    (True) or the forms used off the CPU (False): the same integers, for comparing their speed.
    Process-wide."""
    with _switched("PHASE_PRODUCTS", on):
        yield


@contextlib.contextmanager
def _switched(name: str, value: bool):
    """This module's global `name` set to `value` for a block, then restored."""
    old = globals()[name]
    globals()[name] = value
    try:
        yield
    finally:
        globals()[name] = old


def int8_faster_than_float64(rows: int = 128, k: int = 576, cout: int = 128) -> bool:
    """Whether a 16-bit layer's int8 products (high and low pieces over K, the middle group over 2K:
    `Int8Weights.products`) take less time than one float64 product over K, on random matrices of
    a g_s layer's width. A few milliseconds where int8 is fast; where it is slow, the int8 side
    stops after its first try (90 ms in all on the AVX2 EPYC)."""
    gen = torch.Generator().manual_seed(0)
    a8 = torch.randint(-128, 128, (rows, 2 * k), dtype=torch.int8, generator=gen)
    w8 = torch.randint(-128, 128, (2 * k, cout), dtype=torch.int8, generator=gen)
    a64, w64 = a8[:, :k].double(), w8[:k].double()

    def seconds(f: Callable[[], object]) -> float:
        t0 = time.perf_counter()
        f()
        return time.perf_counter() - t0

    def int8() -> None:
        for a, w in ((a8[:, :k], w8[:k]), (a8, w8), (a8[:, k:], w8[k:])):
            torch._int_mm(a, w)

    def float64() -> None:
        torch.mm(a64, w64)

    float64(), int8()                         # warm-up: first-call dispatch and allocation
    f64 = min(seconds(float64) for _ in range(3))
    best = float("inf")
    for _ in range(3):
        best = min(best, seconds(int8))
        if best > 2 * f64:                    # clearly slower: no need to look again
            break
    MEASURED.update(int8=best, float64=f64)
    return best < f64


# the seconds `int8_faster_than_float64` measured last in this process, by kernel
MEASURED: dict[str, float] = {}


def other_kernel_slowdown() -> float | None:
    """How many times slower than the chosen kernel the other one measured here (None where the
    choice was forced or int8 products are unavailable)."""
    if not MEASURED:
        return None
    int8, f64 = MEASURED["int8"], MEASURED["float64"]
    return f64 / int8 if int8_products() else int8 / f64


@dataclass
class Int8Weights:
    """A (Cout,Cin,T,T) integer kernel as int8 matrices (K, Cout) with K ordered (tap row, tap col,
    channel). 8-bit weights are one piece. 16-bit weights are two, W = sign * (2^8 * high + low)
    with low in [-128, 127], where each column's sign (+-1) keeps its high piece within int8
    (2^8 * high + low reaches -32896 .. 32639, so a column holding +32767 is negated); a column
    holding both extremes, which no sign fits, makes the layer use W = 2^8 * high + low + offset
    with offset 128 and low = (W & 255) - 128 instead, at the cost of a per-pixel term c * rowsum(A).
    The sign goes into the requantization (`IntLayer._int8_params`): the products give sign * A.W,
    and (sign * acc + sign * b) * (sign * m) is the layer's (acc + b) * m exactly."""

    pieces: tuple[torch.Tensor, ...]   # (K, Cout) int8 each: (high, low), or the weights alone
    offset: int
    signs: torch.Tensor       # (Cout,) int64, +-1
    col_offset: torch.Tensor  # (Cout,) int64: 128 * sum over K of sign * (W - offset)
    taps: int
    columns: torch.Tensor     # (K, pieces * Cout [+ 1]) int8: the pieces side by side [and ones, with offset]
    middle: torch.Tensor | None   # (2K, Cout) int8: low over high, the 2^8 term of [Ah | Al] products

    @classmethod
    def split(cls, w: np.ndarray) -> "Int8Weights":
        cout, _, taps, _ = w.shape
        mat = torch.from_numpy(np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(-1, cout))).to(torch.int64)
        signs = torch.ones(cout, dtype=torch.int64)
        offset = 0
        if int(mat.abs().max()) <= 127:
            pieces = [mat]
        else:
            assert int(mat.abs().max()) < 1 << 15
            fits_up, fits_down = mat.max(0).values <= 32639, mat.min(0).values >= -32639
            if bool((fits_up | fits_down).all()):
                signs = torch.where(fits_up, 1, -1)
                mat = mat * signs
                high = (mat + 128) >> 8
                pieces = [high, mat - 256 * high]
            else:
                offset = 128
                pieces = [mat >> 8, (mat & 255) - 128]
        pieces = [p.to(torch.int8).contiguous() for p in pieces]
        ones = [torch.ones(len(mat), 1, dtype=torch.int8)] if offset else []
        middle = torch.cat(pieces[::-1], 0).contiguous() if len(pieces) == 2 else None
        return cls(tuple(pieces), offset, signs, 128 * (mat - offset).sum(0), taps,
                   torch.cat(pieces + ones, 1).contiguous(), middle)

    def products(self, cols: torch.Tensor) -> torch.Tensor:
        """int64 (2^8 Ah + Al).(2^8 high + low) (pixels, Cout) from cols = [Ah | Al] (pixels, 2K),
        the two activation pieces' im2col side by side. The four products of pieces are grouped by
        power of 2^8: the middle group, Ah.low + Al.high, is one product over 2K (|sum| <= 2K * 2^14,
        exact in int32); the groups are summed in Horner form in int64. One weight piece W: the
        products Ah.W and Al.W."""
        k = len(self.columns)
        high, low = cols[:, :k], cols[:, k:]
        groups = ([(high, self.pieces[0])] if self.middle is None else
                  [(high, self.pieces[0]), (cols, self.middle)]) + [(low, self.pieces[-1])]
        acc = torch._int_mm(*groups[0]).to(torch.int64)
        for a, b in groups[1:]:
            torch.add(torch._int_mm(a, b), acc, alpha=256, out=acc)
        return acc

    def accumulate(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        """int64 A.W' + c * rowsum(A) (pixels, Cout) from the int32 products of the activation
        pieces Ah and Al with `columns`; A.W adds 128 * colsum(W') (`col_offset`, with the bias)."""
        cout = self.col_offset.numel()
        both = high.to(torch.int64)                      # 2^8 * (Ah products) + (Al products)
        torch.add(low, both, alpha=256, out=both)
        if len(self.pieces) == 1:
            return both
        acc = torch.add(both[:, cout:2 * cout], both[:, :cout], alpha=256)
        if not self.offset:
            return acc
        k = len(self.columns)   # rowsum(A) = rowsum(2^8 Ah + Al) + 128 K
        return acc.add_((both[:, -1:] + 128 * k) * self.offset)


def _int8_pieces(xc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Ah = x >> 8 and Al = (x & 255) - 128 of int16 x as int8 (the bytes of little-endian int16,
    the low one with its top bit flipped), with x's shape."""
    raw = xc.view(torch.int8).view(*xc.shape, 2)            # little-endian: (low, high)
    return raw[..., 1], raw[..., 0].bitwise_xor(-128)


def int8_conv(x: torch.Tensor, w: Int8Weights, stride: int, pad: tuple[int, int],
              finish: Callable[[torch.Tensor], torch.Tensor], rows: int = 1024, shuffle: int = 1) -> torch.Tensor:
    """Exact integer convolution of integer x (B,Cin,H,W), |x| < 2^15, zero-padded by pad (before,
    after; negative crops) on both axes, by int8 matrix products with int32 accumulators; `finish`
    maps each block of int64 accumulators (pixels, Cout) to the layer's 16-bit output. Returns int16
    (B,Cout,H',W') laid out channels-last, or with `shuffle` d the pixel shuffle of that,
    (B,Cout/d^2,d*H',d*W'), written directly (`_OutputBuffer`).

    With A = im2col(x) = 2^8*Ah + Al + 128 (Ah = x >> 8 and Al = (x & 255) - 128, both int8) and
    W = sign * (W' + c) (`Int8Weights`):  sign * A.W = (2^8*Ah + Al).W' + 128*colsum(W') + c*rowsum(A);
    `finish` adds the per-column constant 128*colsum(W') (`Int8Weights.col_offset`) with the bias.
    Each int8 product sums at most 2K terms of |.| <= 2^14: exact in int32 for any K < 2^16. The
    work runs in bands of about `rows` output pixels so that im2col and the int64 passes stay in
    cache."""
    # channels last, int16: its two bytes are the pieces
    xc = F.pad(x.permute(0, 2, 3, 1).to(torch.int16), (0, 0, pad[0], pad[1], pad[0], pad[1])).contiguous()
    b, h, wd, cin = xc.shape
    t, cout = w.taps, w.col_offset.numel()
    oh, ow = (h - t) // stride + 1, (wd - t) // stride + 1
    pieces = _int8_pieces(xc)
    out = _OutputBuffer(b, oh, ow, cout, shuffle)
    band = max(1, rows // ow)

    def windows(v: torch.Tensor, r0: int, r1: int) -> list[torch.Tensor]:  # each tap's (rows, ow, ...)
        return [v[r0 * stride + i:(r1 - 1) * stride + i + 1:stride, j:j + stride * (ow - 1) + 1:stride]
                for i in range(t) for j in range(t)]

    if w.offset:   # rowsum(A) for every output pixel: a box sum of the channel sums
        sum_type = torch.int32 if cin * t * t < 1 << 16 else torch.int64   # |rowsum| <= K * 2^15
        box = sum(windows(xc.sum(3, dtype=sum_type).movedim(0, -1), 0, oh))  # (oh, ow, b)
        row_sums = w.offset * box.movedim(-1, 0).reshape(b, oh * ow, 1).to(torch.int64)
    for n in range(b):
        for r0 in range(0, oh, band):
            r1 = min(oh, r0 + band)
            # im2col of both activation pieces side by side: (pixels, 2K), K = (ti, tj, c)
            cols = torch.stack(windows(pieces[0][n], r0, r1) + windows(pieces[1][n], r0, r1), 2)
            acc = w.products(cols.reshape((r1 - r0) * ow, -1))
            if w.offset:
                acc.add_(row_sums[n, r0 * ow:r1 * ow])
            out.put(n, r0, finish(acc).view(r1 - r0, ow, cout))
    return out.nchw()


class _OutputBuffer:
    """A convolution's int16 output, channels-last, filled band by band from (rows, W, Cout) blocks.
    With `shuffle` d, Cout holds (channel, phase row, phase column) and each phase goes straight to
    its pixel of the (d*H, d*W) output, as a pixel shuffle would put it: the copy of each block
    into int16 happens anyway, so the shuffle costs no pass of its own."""

    def __init__(self, b: int, h: int, w: int, cout: int, shuffle: int = 1, dtype: torch.dtype = torch.int16):
        self.d = shuffle
        self.data = torch.empty(b, h, shuffle, w, shuffle, cout // shuffle ** 2, dtype=dtype)

    def put(self, n: int, r0: int, block: torch.Tensor) -> None:
        d = self.d
        self.data[n, r0:r0 + block.shape[0]] = block.unflatten(-1, (-1, d, d)).permute(0, 3, 1, 4, 2)

    def put_phase(self, n: int, r0: int, phase: int, block: torch.Tensor) -> None:
        """One output phase (a-major index) of a (rows, W, Cout/d^2) block."""
        self.data[n, r0:r0 + block.shape[0], phase // self.d, :, phase % self.d] = block

    def nchw(self) -> torch.Tensor:
        b, h, d, w, _, c = self.data.shape
        return self.data.view(b, h * d, w * d, c).permute(0, 3, 1, 2)


NARROW_COLUMNS = 32   # output columns up to which a stride-1 layer runs tap by tap


def int8_conv_by_taps(x: torch.Tensor, w: Int8Weights, stride: int, pad: tuple[int, int],
                      finish: Callable[[torch.Tensor], torch.Tensor], rows: int = 8192,
                      shuffle: int = 1) -> torch.Tensor:
    """`int8_conv` for stride 1 and few output columns, with the same exact result: one int8
    product per tap and activation piece instead of im2col. On the zero-padded input flattened to
    (rows * padded width, Cin), tap (i, j) of every output pixel is the pixel `i * width + j`
    rows further on, so each tap's operand is a contiguous slice; outputs are computed for the
    padded width and the columns past the image dropped. With 12 output columns (the last layer
    of g_s) the im2col copy, K = 9 * Cin bytes per pixel and piece, cost more than the products.
    The work runs in bands of about `rows` positions, so that the int32 sums stay in cache
    (43 ms instead of 52 ms for the last layer at 768x512)."""
    assert stride == 1
    # one zero row more at the bottom, so that every band's last tap slice stays inside
    xc = F.pad(x.permute(0, 2, 3, 1).to(torch.int16), (0, 0, pad[0], pad[1], pad[0], pad[1] + 1)).contiguous()
    b, h, wd, cin = xc.shape
    t, cout = w.taps, w.col_offset.numel()
    oh, ow = h - t, wd - t + 1
    pieces = [p.reshape(b, h * wd, cin).contiguous() for p in _int8_pieces(xc)]
    offsets = [i * wd + j for i in range(t) for j in range(t)]
    columns = [w.columns[k * cin:(k + 1) * cin] for k in range(len(offsets))]
    out = _OutputBuffer(b, oh, ow, cout, shuffle)
    band = max(1, rows // wd)
    for m in range(b):
        for r0 in range(0, oh, band):
            r1 = min(oh, r0 + band)
            start, n = r0 * wd, (r1 - r0) * wd
            sums = []   # per activation piece, int32: each column sums K terms of |.| <= 2^14
            for piece in pieces:
                total = torch._int_mm(piece[m, start:start + n], columns[0])
                for off, cols in zip(offsets[1:], columns[1:]):
                    total.add_(torch._int_mm(piece[m, start + off:start + off + n], cols))
                sums.append(total)
            # finished for the padded width too (no copy to drop those columns first)
            out.put(m, r0, finish(w.accumulate(*sums)).view(r1 - r0, wd, cout)[:, :ow])
    return out.nchw()


@dataclass
class PhaseKernel:
    """A strided transposed convolution's kernel as float64 matrices per input tap, for
    `float64_conv_by_phases`. Output phase (a, b) of a transposed convolution with kernel k and
    stride d uses only about (k/d)^2 of the T x T input window of `subpixel_kernel`, which is zero
    elsewhere (k = 5, d = 2: 25 of 36 taps), so each tap multiplies into the output columns of the
    phases that use it, and of no other. The phases are laid out as column blocks in an `order`
    that makes each tap's phases one run of blocks, so a tap is one matrix product into a
    contiguous slice of columns (k = 5, d = 2: 9 products, the four taps every phase uses feeding all four
    phases)."""

    taps: int                  # T
    stride: int
    columns: int               # d^2 Cout
    order: tuple[int, ...]     # the phase (a-major index) of each column block
    # (tap row, tap col, output col0, col1, its matrix's first column in `stacked`)
    groups: list[tuple[int, int, int, int, int]]
    stacked: torch.Tensor      # (Cin, sum of the groups' widths): every group's matrix side by side

    @classmethod
    def split(cls, w: np.ndarray, stride: int, padding: int) -> "PhaseKernel":
        cin, cout, k, _ = w.shape
        phases = phase_taps(k, stride, padding)
        users: dict[tuple[int, int], list[tuple[int, int, int]]] = {}   # tap -> (phase, kernel row, col)
        for p, phase in enumerate(phases):
            for ti, tj, ki, kj in phase:
                users.setdefault((ti, tj), []).append((p, ki, kj))

        def runs(order: tuple[int, ...]) -> list[tuple[int, int, list[tuple[int, int, int]]]]:
            """(tap row, tap col, [(block, kernel row, kernel col)...]) per run of consecutive
            column blocks using the tap, with the phases in `order`."""
            place = {p: i for i, p in enumerate(order)}
            out = []
            for (ti, tj), used in users.items():
                blocks = sorted((place[p], ki, kj) for p, ki, kj in used)
                run = [blocks[0]]
                for blk in blocks[1:]:
                    if blk[0] != run[-1][0] + 1:
                        out.append((ti, tj, run))
                        run = []
                    run.append(blk)
                out.append((ti, tj, run))
            return out

        n = stride * stride
        orders = itertools.permutations(range(n)) if n <= 4 else [tuple(range(n))]
        order = min(orders, key=lambda o: len(runs(o)))
        groups, mats, k0 = [], [], 0
        for ti, tj, run in runs(order):
            mats += [w[:, :, ki, kj] for _, ki, kj in run]
            groups.append((ti, tj, run[0][0] * cout, (run[-1][0] + 1) * cout, k0))
            k0 += len(run) * cout
        dmax, dmin = phase_offsets(k, stride, padding)
        stacked = torch.from_numpy(np.concatenate(mats, 1).astype(np.float64))
        return cls(dmax - dmin + 1, stride, n * cout, tuple(order), groups, stacked)


def float64_conv_by_phases(x: torch.Tensor, kernel: PhaseKernel, pad: tuple[int, int],
                           finish: Callable[[torch.Tensor], torch.Tensor], out_type: torch.dtype,
                           rows: int | None = None) -> torch.Tensor:
    """A sub-pixel layer on the CPU in float64, exact as every partial sum is an integer below 2^53:
    the T x T stride-1 convolution of integer x (B,Cin,H,W), zero-padded by pad (before, after),
    computing every output phase, pixel-shuffled, as (B,Cout,d*H',d*W') in `out_type`, channels-last
    in memory. `finish` maps int64 accumulators (pixels, d^2 Cout) to the layer's output.

    Why not F.conv2d with `subpixel_kernel`: that multiplies the zero taps too (36 taps for 25 at
    k = 5, d = 2) and copies its im2col (K = 9 Cin per pixel) through memory; here each
    `PhaseKernel` group is one matrix product of a contiguous slice of the flattened input (the tap
    trick of `int8_conv_by_taps`), accumulated in place, in bands of about `rows` positions that
    stay in cache. On the 2-core AVX2 EPYC the wide g_s layers ran 1.4-1.8x faster (768x512:
    0.35 s instead of 0.61 s for the widest), the 3-channel output layer (`narrow` below) about
    1.8x faster than a float64 conv_transpose2d (0.08-0.09 s against 0.15-0.16 s)."""
    # one zero row more at the bottom, so that every band's last tap slice stays inside; kept in
    # x's integer type: each band converts its own rows to float64, so the layer never holds its
    # whole input in float64 (8 bytes a value: 3 GB for the widest layer of a 12-Mpixel image)
    xc = F.pad(x.permute(0, 2, 3, 1), (0, 0, pad[0], pad[1], pad[0], pad[1] + 1)).contiguous()
    b, h, wd, cin = xc.shape
    t, d = kernel.taps, kernel.stride
    oh, ow = h - t, wd - t + 1
    flat = xc.view(b, h * wd, cin)
    blocks = len(kernel.order)
    out = _OutputBuffer(b, oh, ow, kernel.columns, d, out_type)
    halo = (t - 1) * wd + t - 1     # the input past a band's last position that its taps reach
    # few output columns (the 3-channel output layer: 12): one product per tap would be a thin
    # matrix product each, slow, so all taps multiply at once (Cin x 75 there)
    narrow = kernel.columns <= NARROW_COLUMNS
    band = max(1, (rows or (8192 if narrow else 2048)) // wd)    # the fastest on the EPYC, 768x512
    for n in range(b):
        for r0 in range(0, oh, band):
            r1 = min(oh, r0 + band)
            start, m = r0 * wd, (r1 - r0) * wd
            chunk = flat[n, start:start + m + halo].to(torch.float64)
            if narrow:     # every tap's products at once, then summed at each tap's offset, with
                # positions along rows (the transpose, so each sum runs over contiguous memory)
                products = kernel.stacked.T @ chunk.T
                acc = torch.zeros(kernel.columns, m, dtype=torch.float64)
                for ti, tj, c0, c1, k0 in kernel.groups:
                    off = ti * wd + tj
                    acc[c0:c1] += products[k0:k0 + c1 - c0, off:off + m]
                acc = acc.T   # (positions, columns), as below; `finish` works on views
            else:
                acc = torch.zeros(m, kernel.columns, dtype=torch.float64)
                for ti, tj, c0, c1, k0 in kernel.groups:
                    off = ti * wd + tj
                    acc[:, c0:c1].addmm_(chunk[off:off + m], kernel.stacked[:, k0:k0 + c1 - c0])
            # finished for the padded width too (no copy to drop those columns first)
            res = finish(acc.to(torch.int64)).view(r1 - r0, wd, blocks, -1)[:, :ow]
            for i, phase in enumerate(kernel.order):
                out.put_phase(n, r0, phase, res[:, :, i])
    return out.nchw()


def quantize_layer(module: torch.nn.Module, relu: bool, s_in: float, s_out: np.ndarray, in_max: int,
                   weight_bits: int = 16, out_bits: int = ACT_BITS) -> IntLayer:
    """Fixed-point version of a Conv2d / ConvTranspose2d whose input has scale `s_in` (real = int*s_in)
    and whose output should have per-channel scales `s_out`."""
    transposed = isinstance(module, torch.nn.ConvTranspose2d)
    w = module.weight.detach().double().numpy()
    b = module.bias.detach().double().numpy()
    s_w = weight_steps(w, transposed, weight_bits)
    shape = (1, -1, 1, 1) if transposed else (-1, 1, 1, 1)
    w_int = np.round(w / s_w.reshape(shape)).astype(np.int64)
    acc_scale = s_in * s_w
    b_int = np.round(b / acc_scale).astype(np.int64)
    ratio = acc_scale / np.broadcast_to(s_out, acc_scale.shape)
    # pick the largest shift keeping multipliers below 2^24 (precision ~1e-7 relative)
    shift = int(np.clip(np.floor(24 - np.log2(ratio.max())), 1, 62))
    mult = np.round(ratio * 2.0 ** shift).astype(np.int64)
    lo = 0 if relu else -(1 << (out_bits - 1))
    layer = IntLayer(w_int, b_int, mult, shift, transposed, module.stride[0], module.padding[0],
                     module.output_padding[0] if transposed else 0, relu, int(in_max), lo,
                     (1 << (out_bits - 1)) - 1)
    for _ in range(40):  # shrink the shift until the int64 product bound holds
        try:
            layer.check_bounds()
            return layer
        except ValueError:
            if layer.accumulator_bound() >= ACC_LIMIT or layer.shift <= 1:
                raise
            layer.shift -= 1
            layer.mult = np.round(ratio * 2.0 ** layer.shift).astype(np.int64)
            layer.__post_init__()
    raise ValueError("cannot quantize layer within bounds")


def weight_steps(w: np.ndarray, transposed: bool, weight_bits: int) -> np.ndarray:
    """Per-output-channel step of a layer's integer weights: max |w| / (2^(bits-1) - 1), so each
    channel's largest weight lands on the end of the grid."""
    axes = (0, 2, 3) if transposed else (1, 2, 3)
    return np.maximum(np.abs(w).max(axis=axes), 1e-12) / ((1 << (weight_bits - 1)) - 1)


def phase_offsets(k: int, stride: int, padding: int) -> tuple[int, int]:
    """Largest and smallest input offset d (input row = output row // stride - d) any phase uses."""
    dmax = max((k - 1 - a - padding) // stride for a in range(stride))
    dmin = min(-((a + padding) // stride) for a in range(stride))
    return dmax, dmin


def subpixel_kernel(w: np.ndarray, stride: int, padding: int) -> np.ndarray:
    """Stride-1 convolution kernel (Cout*stride^2, Cin, T, T) computing every output phase of the
    transposed convolution with kernel w (Cin, Cout, k, k): output row stride*m + a takes input row
    m - d through tap k = stride*d + a + padding."""
    cin, cout, k, _ = w.shape
    dmax, dmin = phase_offsets(k, stride, padding)
    taps = dmax - dmin + 1
    out = np.zeros((cout, stride, stride, cin, taps, taps), dtype=w.dtype)
    for p, phase in enumerate(phase_taps(k, stride, padding)):
        for ti, tj, ki, kj in phase:
            out[:, p // stride, p % stride, :, ti, tj] = w[:, :, ki, kj].T
    return out.reshape(cout * stride * stride, cin, taps, taps)


def phase_taps(k: int, stride: int, padding: int) -> list[list[tuple[int, int, int, int]]]:
    """For each output phase (a, b), a-major: (tap row ti, tap column tj, kernel row, kernel column)
    of every tap it uses in the T x T input window of `phase_offsets`, tap row ti being offset
    d = dmax - ti and kernel row stride*d + a + padding."""
    dmax, dmin = phase_offsets(k, stride, padding)
    taps = dmax - dmin + 1
    phases = []
    for a in range(stride):
        for b in range(stride):
            phase = [(ti, tj, stride * (dmax - ti) + a + padding, stride * (dmax - tj) + b + padding)
                     for ti in range(taps) for tj in range(taps)]
            phases.append([t for t in phase if 0 <= t[2] < k and 0 <= t[3] < k])
    return phases


def pow2_scale(max_abs: float, bits: int = ACT_BITS, headroom: float = 1.5) -> float:
    """Power-of-two scale such that headroom * max_abs fits in a signed `bits` integer."""
    limit = (1 << (bits - 1)) - 1
    return 2.0 ** np.ceil(np.log2(max(max_abs * headroom, 1e-9) / limit))


def layer_to_dict(layer: IntLayer) -> dict:
    d = {k: getattr(layer, k) for k in ("weight", "bias", "mult")}
    d["weight"] = d["weight"].astype(np.int8 if np.abs(d["weight"]).max() < 128 else np.int16)
    d["meta"] = np.array([layer.shift, layer.transposed, layer.stride, layer.padding, layer.output_padding,
                          layer.relu, layer.in_max, layer.out_min, layer.out_max], dtype=np.int64)
    return d


def layers_to_dict(layers: list[IntLayer], prefix: str = "") -> dict[str, torch.Tensor]:
    """A list of layers as flat bundle entries "<prefix><i>.<field>" (torch tensors)."""
    return {f"{prefix}{i}.{k}": torch.from_numpy(np.asarray(v))
            for i, layer in enumerate(layers) for k, v in layer_to_dict(layer).items()}


def layers_from_dict(d: dict, prefix: str = "") -> list[IntLayer]:
    """Inverse of `layers_to_dict`: the layers stored under `prefix` in d (other keys ignored)."""
    n = sum(1 for k in d if k.startswith(prefix) and k.endswith(".meta") and k[len(prefix):].count(".") == 1)
    return [layer_from_dict({f: d[f"{prefix}{i}.{f}"] for f in ("weight", "bias", "mult", "meta")})
            for i in range(n)]


def layer_from_dict(d: dict) -> IntLayer:
    m = [int(v) for v in d["meta"]]
    return IntLayer(np.asarray(d["weight"], np.int64), np.asarray(d["bias"], np.int64),
                    np.asarray(d["mult"], np.int64), m[0], bool(m[1]), m[2], m[3], m[4], bool(m[5]),
                    m[6], m[7], m[8])
