"""Integer hyper-synthesis (means and log2 scales), integer synthesis and post-filter of the learned codec.

Built once at export from the float network and activation ranges calibrated on training photos,
stored in the model bundle as integers, and run with `IntLayer` (exact on every backend).

Scales: the hyper-latent z enters as integers, its coded symbols times `z_factor` (at scale 1, or
at a finer power of two where z's quantization step is not a whole number); means come out at scale
`s_mu`, log2 scales at `s_ls` (both powers of two, so converting to float64 is exact); the synthesis
takes y_hat at scale `s_y` and produces Y'CbCr at scale 2^-14.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..model.context import LR_BITS, SYMBOL_CLIP
from ..model.postfilter import GAIN, IN_BITS, PostFilter, from_blocks, to_blocks
from .fixedpoint import ACT_BITS, FLOAT32_LIMIT, IntLayer, layers_from_dict, layers_to_dict, pow2_scale, quantize_layer
from .rounding import round_transposed_conv

OUT_SCALE = 2.0 ** -14
IN_MAX = (1 << (ACT_BITS - 1)) - 1


def run_layers(layers: list[IntLayer], x: torch.Tensor, previous: IntLayer | None = None) -> torch.Tensor:
    """x through `layers` in turn; a layer's input clamp is skipped where the layer before
    (`previous` for the first) cannot leave its range."""
    for layer in layers:
        x = layer.forward(x, in_range=previous is not None and layer.accepts(previous))
        previous = layer
    return x


def conv_layers(seq: nn.Sequential) -> list[tuple[nn.Module, bool]]:
    """(conv module, followed by ReLU) for every convolution of a Sequential."""
    mods = list(seq)
    return [(m, i + 1 < len(mods) and isinstance(mods[i + 1], nn.ReLU))
            for i, m in enumerate(mods) if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


def calibrate(seq: nn.Sequential, inputs: list[torch.Tensor]) -> list[np.ndarray]:
    """Per-channel max |output| (after ReLU) of every convolution of `seq` over `inputs`."""
    layers = conv_layers(seq)
    maxima: list[np.ndarray | None] = [None] * len(layers)
    with torch.no_grad():
        for x in inputs:
            for i, (m, relu) in enumerate(layers):
                pos = list(seq).index(m)
                x = m(x)
                a = (x.clamp_min(0) if relu else x).abs().amax(dim=(0, 2, 3)).double().numpy()
                maxima[i] = a if maxima[i] is None else np.maximum(maxima[i], a)
                if relu:
                    x = list(seq)[pos + 1](x)
    return maxima


def quantize_sequence(seq: nn.Sequential, maxima: list[np.ndarray], s_in: float, in_max: int,
                      last_scales: np.ndarray, weight_bits: int) -> tuple[list[IntLayer], list[float]]:
    """Fixed-point layers for `seq` with per-tensor power-of-two activation scales."""
    layers, scales = [], []
    convs = conv_layers(seq)
    for i, (m, relu) in enumerate(convs):
        last = i == len(convs) - 1
        s_out = last_scales if last else np.full(m.out_channels, pow2_scale(float(maxima[i].max())))
        layers.append(quantize_layer(m, relu, s_in, s_out, in_max, weight_bits))
        s_in, in_max = float(s_out[0]), IN_MAX
        scales.append(s_in)
    return layers, scales


@dataclass
class IntegerDecoderNets:
    """Integer h_s and g_s with their input/output scales."""

    h_s: list[IntLayer]
    g_s: list[IntLayer]
    s_mu: float
    s_ls: float
    s_y: float
    weight_bits: int
    z_factor: int = 1   # the hyper-synthesis' integer input per unit of a coded z symbol

    @torch.inference_mode()
    def entropy_parameters(self, z: np.ndarray, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
        """Means and log2 scales (float64, exact dyadic values) from the coded z symbols (Nz,hz,wz)."""
        x = np.clip(np.asarray(z, dtype=np.int64) * self.z_factor, -IN_MAX, IN_MAX)
        x = torch.from_numpy(x)[None].to(device)
        x = run_layers(self.h_s, x)
        out = x[0].cpu().numpy().astype(np.float64)
        m = out.shape[0] // 2
        return out[:m] * self.s_mu, out[m:] * self.s_ls

    @torch.inference_mode()
    def synthesize(self, y_hat: np.ndarray, device: str = "cpu") -> np.ndarray:
        """Y'CbCr float64 (3,H,W) at scale 2^-14 from y_hat (float64, rounded to the input grid)."""
        x = torch.from_numpy(np.clip(np.round(y_hat / self.s_y), -IN_MAX, IN_MAX).astype(np.int64))[None]
        x = x.to(device)
        x = run_layers(self.g_s, x)
        return x[0].cpu().numpy().astype(np.float64) * OUT_SCALE

    def layers(self) -> list[IntLayer]:
        return self.h_s + self.g_s

    def to_dict(self) -> dict:
        return {"scales": torch.tensor([self.s_mu, self.s_ls, self.s_y], dtype=torch.float64),
                "weight_bits": torch.tensor(self.weight_bits),
                **layers_to_dict(self.h_s, "h_s."), **layers_to_dict(self.g_s, "g_s.")}

    @classmethod
    def from_dict(cls, d: dict, hyper: dict | None = None) -> "IntegerDecoderNets":
        """From `to_dict`'s entries; `hyper` (a variant's `z_factor` and `h_s.` layers, as
        training/z_step.py writes them) replaces the hyper-synthesis."""
        s_mu, s_ls, s_y = (float(v) for v in d["scales"])
        h = hyper if hyper is not None else d
        return cls(layers_from_dict(h, "h_s."), layers_from_dict(d, "g_s."), s_mu, s_ls, s_y, int(d["weight_bits"]),
                   int(h.get("z_factor", 1)))


def build_integer_nets(net, z_samples: list[torch.Tensor], y_hat_samples: list[torch.Tensor],
                       weight_bits: int = 16) -> IntegerDecoderNets:
    """Quantize `net.h_s` and `net.g_s` from calibration inputs (quantized z and y_hat tensors)."""
    h_layers, s_mu, s_ls = build_integer_hyper(net, z_samples, 1.0, weight_bits)

    g_max = calibrate(net.g_s, y_hat_samples)
    s_y = pow2_scale(max(float(y.abs().max()) for y in y_hat_samples))
    # short weights: rounded for least output error first; the activation scales stay those of the
    # float network, so every bit width shares them
    g_s = net.g_s if weight_bits >= 16 else snap_weights(net.g_s, weight_bits, y_hat_samples)
    g_layers, _ = quantize_sequence(g_s, g_max, s_y, IN_MAX, np.full(3, OUT_SCALE), weight_bits)
    return IntegerDecoderNets(h_layers, g_layers, s_mu, s_ls, s_y, weight_bits)


def build_integer_hyper(net, z_samples: list[torch.Tensor], s_z: float, weight_bits: int = 16,
                        out_scales: tuple[float, float] | None = None) -> tuple[list[IntLayer], float, float]:
    """Integer `net.h_s` taking z (the dequantized hyper-latent, as in `z_samples`) at input scale
    `s_z`; the means and log2 scales at `out_scales` (default: powers of two from the calibration)."""
    h_max = calibrate(net.h_s, z_samples)
    M = net.M
    s_mu, s_ls = out_scales or (pow2_scale(float(h_max[-1][:M].max())), pow2_scale(float(h_max[-1][M:].max())))
    last_h = np.concatenate([np.full(M, s_mu), np.full(M, s_ls)])
    h_layers, _ = quantize_sequence(net.h_s, h_max, s_z, IN_MAX, last_h, weight_bits)
    return h_layers, s_mu, s_ls


def snap_weights(seq: nn.Sequential, weight_bits: int, samples: list[torch.Tensor]) -> nn.Sequential:
    """A copy of `seq` whose transposed convolutions hold weights already on the grid
    `quantize_layer` will use, rounded layer by layer by GPTQ (`rounding.py`) on the inputs that
    the layers before, already rounded, give the calibration samples. With 8-bit weights (model 10,
    last 12 training photos, BD-rate against the 16-bit decoder) the synthesis lost +4.99% rounded
    to nearest and +3.65% with each bias corrected for the mean shift, both with the output layer
    kept at 16 bits, which alone caused 40% of the loss; GPTQ in every layer +0.33%."""
    snapped = copy.deepcopy(seq)
    inputs = samples
    with torch.no_grad():
        for m in snapped:
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                m.weight.data = round_transposed_conv(m, inputs, weight_bits)
            inputs = [m(x) for x in inputs]
    return snapped


@dataclass
class IntegerContextNet:
    """Integer checkerboard context network (codec/model/context.py): anchor symbols and
    log2(sigma / delta) in, at scale 2^-LR_BITS; mean shift (steps) and log2-scale shift out, at
    scales `s_dmu` and `s_dlr` (powers of two). Also the latent residual prediction's network
    (`LatentResidual`, `residual`): one output, at scale `s_dmu`."""

    layers: list[IntLayer]
    s_dmu: float
    s_dlr: float

    @torch.inference_mode()
    def shifts(self, s_anchor: np.ndarray, log2_ratio: np.ndarray, device: str = "cpu",
               at_anchors: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Mean shift in steps and log2-scale shift (float64, exact dyadic) of every non-anchor
        element (zero at the anchors; the reverse `at_anchors`, for channel slices) from anchor
        symbols (zero elsewhere) and log2(sigma / delta), each (channels, h, w)."""
        x = self.inputs(s_anchor, log2_ratio).to(device)
        # only half the cells need an answer: two quarter grids through the first layer, and the
        # 1x1 layers after it on those alone (half the work; the other half gets 0)
        out = np.zeros((self.layers[-1].out_channels,) + s_anchor.shape[1:])
        for r0, c0 in ((0, 0), (1, 1)) if at_anchors else ((0, 1), (1, 0)):
            v = self.layers[0].forward_every_other(x, r0, c0)
            v = run_layers(self.layers[1:], v, self.layers[0])
            out[:, r0::2, c0::2] = v[0].cpu().numpy()
        m = out.shape[0] // 2
        return out[:m] * self.s_dmu, out[m:] * self.s_dlr

    @torch.inference_mode()
    def residual(self, symbols: np.ndarray, log2_ratio: np.ndarray, device: str = "cpu") -> np.ndarray:
        """The predicted residual in steps (float64, exact dyadic) of every element from all
        symbols and log2(sigma / delta), each (channels, h, w)."""
        x = run_layers(self.layers, self.inputs(symbols, log2_ratio).to(device))
        return x[0].cpu().numpy().astype(np.float64) * self.s_dmu

    @staticmethod
    def inputs(s_anchor: np.ndarray, log2_ratio: np.ndarray) -> torch.Tensor:
        """The integer input (1, 2M, h, w): the float model's `CheckerboardContext.inputs` x 2^LR_BITS."""
        one = 1 << LR_BITS
        s = np.round(np.clip(s_anchor, -SYMBOL_CLIP, SYMBOL_CLIP) * one)
        lr = np.clip(np.round(log2_ratio * one), -IN_MAX, IN_MAX)
        return torch.from_numpy(np.concatenate([s, lr]).astype(np.int64))[None]

    def __post_init__(self):
        assert all(layer.weight.shape[-1] == 1 for layer in self.layers[1:]), "1x1 layers after the first"

    def to_dict(self) -> dict:
        return {"scales": torch.tensor([self.s_dmu, self.s_dlr], dtype=torch.float64), **layers_to_dict(self.layers)}

    @classmethod
    def from_dict(cls, d: dict) -> "IntegerContextNet":
        s_dmu, s_dlr = (float(v) for v in d["scales"])
        return cls(layers_from_dict(d), s_dmu, s_dlr)


def build_integer_context(seq: nn.Sequential, inputs: list[torch.Tensor], weight_bits: int = 16,
                          scale_shifts: bool = True) -> IntegerContextNet:
    """Quantize a context network (`CheckerboardContext.net`, or one of `ChannelSlices.nets`) from
    calibration inputs (`CheckerboardContext.inputs` tensors). Its output: mean shifts, then
    log2-scale shifts; without `scale_shifts` (`LatentResidual.net`) one output, residuals."""
    maxima = calibrate(seq, inputs)
    n_out = conv_layers(seq)[-1][0].out_channels
    half = n_out // 2 if scale_shifts else n_out
    s_dmu = pow2_scale(float(maxima[-1][:half].max()))
    s_dlr = pow2_scale(float(maxima[-1][half:].max())) if scale_shifts else s_dmu
    last = np.concatenate([np.full(half, s_dmu), np.full(n_out - half, s_dlr)])
    layers, _ = quantize_sequence(seq, maxima, 2.0 ** -LR_BITS, IN_MAX, last, weight_bits)
    return IntegerContextNet(layers, s_dmu, s_dlr)


@dataclass
class ShiftConv:
    """One integer convolution of the post-filter whose sums float32 holds exactly: integer inputs
    within +-in_max, integer weights, and a power-of-two requantization per output channel,
    out = clamp(floor((conv(x, w) + bias + half) / 2^shift), out_min, out_max), half = 2^(shift-1)
    (0 where shift <= 0). Every partial sum stays below 2^24 in magnitude (checked at build and
    load), so float32 convolutions give the same integers in any summation order on every device;
    at full resolution they run about ten times faster than float64 and need no int64 passes.

    With `low_bits` = b > 0 (model 20) the weights are wider than one float32 sum allows and run
    as two pieces, w = hi * 2^b + lo with lo centred on 0, and so the bias plus half, B = B_hi * 2^b
    + B_lo with 0 <= B_lo < 2^b: two convolutions give the exact float32 sums H = conv(x, hi) + B_hi
    and L = conv(x, lo) + B_lo, and for shift >= b out = floor((H + floor(L / 2^b)) / 2^(shift - b)),
    since floor((n + f) / m) = floor(n / m) for an integer n and 0 <= f < 1: still float32 only,
    for about twice the layer's time. One piece with one width per layer gave the 2x2-block
    networks 8-10-bit weights, which cost v20's high-code network 0.17 dB before the loop filter
    (mean over 12 held-out photos; 1.4 dB on a smooth one at 44 dB) and v18's 1.2% BD-rate through
    the codec; with 15-16 bits they follow the float networks within 0.01 dB. Model 21 takes one
    piece again, each output channel as wide as its own sums allow (`channel_weight_bits`), and a
    high-code network trained on that grid."""

    weight: np.ndarray    # (Cout, Cin, k, k) integers
    bias: np.ndarray      # (Cout,) integers, at the accumulator's scale
    shift: np.ndarray     # (Cout,) log2 of the power of two dividing the accumulator
    relu: bool
    in_max: int
    out_max: int
    low_bits: int = 0     # 0: one piece; else the low piece's width (see above)

    def __post_init__(self):
        if self.low_bits and self.low_bits > self.shift.min():
            raise ValueError(f"a shift below {self.low_bits} low bits")
        if self.sum_bound() >= FLOAT32_LIMIT:
            raise ValueError(f"post-filter sums reach {self.sum_bound()}: not exact in float32")
        # each piece's weights and bias pre-scaled by a power of two (exact: every partial sum is
        # the integer one times it), so that no pass rescales the sums: hi by 2^-(shift - b), whose
        # sums are then H / 2^(shift - b), lo by 2^-b
        step = 2.0 ** -(self.shift - self.low_bits)
        self._convs = [_scaled_conv(w, b, s) for (w, b), s in zip(self.pieces(), (step, np.full_like(step, 2.0 ** -self.low_bits)))]
        self._step = torch.from_numpy(step.astype(np.float32)).view(1, -1, 1, 1)

    def pieces(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(weights, bias plus rounding half) as run: one piece, or hi and lo (see above)."""
        biased = self.bias + _half(self.shift)
        if self.low_bits == 0:
            return [(self.weight, biased)]
        step = 1 << self.low_bits
        lo = (self.weight + step // 2) % step - step // 2
        return [((self.weight - lo) >> self.low_bits, biased >> self.low_bits), (lo, biased % step)]

    def sum_bound(self) -> int:
        """Largest |value| a float32 sum takes for inputs within +-in_max: the convolutions' (products,
        bias and half) and, with two pieces, H + floor(L / 2^b)."""
        if self.low_bits == 0:
            return int((_channel_sums(self.weight, self.bias, self.in_max) + _half(self.shift)).max())
        sums = [_channel_sums(w, b, self.in_max) for w, b in self.pieces()]
        return int(max(sums[0].max(), sums[1].max(), (sums[0] + sums[1] / (1 << self.low_bits) + 1).max()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """float32 integers (N, Cin, H, W) within +-in_max (10-bit planes, or the layer before's
        clamped output) -> float32 integers (N, Cout, H, W)."""
        dev = x.device
        # cuDNN may sum through TF32 or Winograd; without it CUDA runs an im2col product in cuBLAS,
        # exact unless a caller turned torch.backends.cuda.matmul.allow_tf32 on (off by default)
        with torch.backends.cudnn.flags(enabled=False):
            acc, *low = (F.conv2d(x, w.to(dev), b.to(dev), padding=self.weight.shape[-1] // 2) for w, b in self._convs)
        if low:   # H / 2^(shift - b) + floor(L / 2^b) / 2^(shift - b): exact, within the sum bound
            acc.addcmul_(low[0].floor_(), self._step.to(dev))
        return acc.floor_().clamp_(0 if self.relu else -self.out_max - 1, self.out_max)

    def to_dict(self, prefix: str) -> dict[str, torch.Tensor]:
        meta = np.array([self.relu, self.in_max, self.out_max] + ([self.low_bits] if self.low_bits else []), dtype=np.int64)
        return {f"{prefix}{k}": torch.from_numpy(np.asarray(v)) for k, v in
                (("weight", self.weight.astype(np.int16)), ("bias", self.bias.astype(np.int64)),
                 ("shift", self.shift.astype(np.int64)), ("meta", meta))}

    @classmethod
    def from_dict(cls, d: dict, prefix: str) -> "ShiftConv":
        relu, in_max, out_max, *low_bits = (int(v) for v in d[prefix + "meta"])
        return cls(d[prefix + "weight"].numpy().astype(np.int64), d[prefix + "bias"].numpy(),
                   d[prefix + "shift"].numpy(), bool(relu), in_max, out_max, *low_bits)


def _half(shift: np.ndarray) -> np.ndarray:
    """The rounding half added before each channel's shift (none where it does not divide)."""
    return np.where(shift > 0, np.left_shift(1, np.maximum(shift - 1, 0)), 0)


def _channel_sums(weight: np.ndarray, bias: np.ndarray, in_max: int) -> np.ndarray:
    """Per output channel, the largest |value| a convolution's float32 sums (products and bias) take
    for inputs within +-in_max."""
    return np.abs(weight).sum(axis=(1, 2, 3)) * in_max + np.abs(bias)


def _scaled_conv(w: np.ndarray, b: np.ndarray, scale: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 convolution weights (channels last, as oneDNN runs fastest) and bias of integer
    weights and bias times a power of two per output channel."""
    weight = torch.from_numpy((w * scale.reshape(-1, 1, 1, 1)).astype(np.float32))
    return weight.contiguous(memory_format=torch.channels_last), torch.from_numpy((b * scale).astype(np.float32))


def shift_conv(m: nn.Conv2d, relu: bool, s_in: float, s_out: float, in_max: int, out_max: int,
               weight_bits: int | np.ndarray, low_bits: int = 0) -> ShiftConv:
    """`m` with inputs at scale s_in, outputs at s_out (powers of two) and each output channel's
    weights on a power-of-two grid no finer than `weight_bits` (one width, or one per output
    channel) allow, so requantizing is a shift; run as two pieces with `low_bits`."""
    return ShiftConv(*_quantized(m, s_in, s_out, weight_bits), relu, in_max, out_max, low_bits)


def _quantized(m: nn.Conv2d, s_in: float, s_out: float, weight_bits: int | np.ndarray) -> tuple[np.ndarray, ...]:
    """`shift_conv`'s integer weights, bias and shifts."""
    w = m.weight.detach().double().numpy()
    b = m.bias.detach().double().numpy()
    limit = (np.left_shift(1, np.asarray(weight_bits) - 1) - 1).astype(np.float64)
    s_w = 2.0 ** np.ceil(np.log2(np.maximum(np.abs(w).max(axis=(1, 2, 3)), 1e-12) / limit))
    acc_scale = s_in * s_w
    shift = np.round(np.log2(s_out / acc_scale)).astype(np.int64)
    return np.round(w / s_w.reshape(-1, 1, 1, 1)).astype(np.int64), np.round(b / acc_scale).astype(np.int64), shift


def channel_weight_bits(m: nn.Conv2d, s_in: float, s_out: float, in_max: int) -> np.ndarray:
    """Per output channel, the widest weights (5 to 16 bits) whose one-piece sums float32 holds
    exactly: a layer's channels differ in how their weights' sum compares with their largest one
    (v20's: 8 to 15 bits), so one width per layer, its worst channel's, wastes 1-2 bits on most."""
    bits = np.zeros(m.out_channels, dtype=np.int64)
    for width in range(16, 4, -1):
        w, b, shift = _quantized(m, s_in, s_out, width)
        fits = _channel_sums(w, b, in_max) + _half(shift) < FLOAT32_LIMIT
        bits = np.where((bits == 0) & fits, width, bits)
    if not bits.all():
        raise ValueError("no weight width keeps the post-filter's sums exact in float32")
    return bits


@dataclass
class IntegerPostFilter:
    """Integer learned post-filter (codec/model/postfilter.py): the 10-bit planes and the quality
    code in at scale 2^-IN_BITS, 11-bit activations, the luma correction out at scale `s_out` (a
    power of two, so the corrected luma is exact before its rounding); `ShiftConv` layers."""

    layers: list[ShiftConv]
    s_out: float
    unshuffle: int = 1    # the float network's r x r blocks (v17), 1: full resolution

    @torch.inference_mode()
    def luma(self, planes10: np.ndarray, q_code: int, device: str = "cpu") -> np.ndarray:
        """Corrected 10-bit luma (H, W) from the decoded 10-bit planes (3, H, W)."""
        x = PostFilter.inputs(torch.from_numpy(planes10.astype(np.float32))[None], torch.tensor([q_code]))
        x = to_blocks(x.to(device), self.unshuffle).contiguous(memory_format=torch.channels_last)   # oneDNN: 3-5x faster than NCHW here
        for layer in self.layers:
            x = layer.forward(x)
        out = from_blocks(x, self.unshuffle, *planes10.shape[1:])[0, 0].cpu().numpy().astype(np.float64)
        return np.clip(np.round(planes10[0] + GAIN * self.s_out * out), 0, 1023).astype(np.uint16)

    def to_dict(self) -> dict:
        blocks = {"unshuffle": torch.tensor([self.unshuffle])} if self.unshuffle > 1 else {}
        return {"scales": torch.tensor([self.s_out], dtype=torch.float64), **blocks,
                **{k: v for i, layer in enumerate(self.layers) for k, v in layer.to_dict(f"{i}.").items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "IntegerPostFilter":
        n = len({k.split(".")[0] for k in d if k not in ("scales", "unshuffle")})
        return cls([ShiftConv.from_dict(d, f"{i}.") for i in range(n)], float(d["scales"][0]),
                   int(d["unshuffle"][0]) if "unshuffle" in d else 1)


def build_integer_postfilter(net: PostFilter, inputs: list[torch.Tensor], act_bits: int = 11,
                             two_pieces: Sequence[int] = (), per_channel: bool = False) -> IntegerPostFilter:
    """Quantize a post-filter from calibration inputs (`PostFilter.inputs` tensors, integers):
    `act_bits` activations (power-of-two scales from the calibrated ranges; 16 bits for the output)
    and, per layer, the widest weights (at most 16 bits) whose sums float32 holds exactly, in one
    piece or, in the layers numbered in `two_pieces` (model 20: all), in one or two (`ShiftConv`);
    with `per_channel`, the one-piece layers' widest weights per output channel."""
    maxima = calibrate(net.net, [to_blocks(x.float() * 2.0 ** -IN_BITS, net.unshuffle) for x in inputs])
    convs = conv_layers(net.net)
    s_in, in_max, layers = 2.0 ** -IN_BITS, (1 << IN_BITS) - 1, []
    for i, (m, relu) in enumerate(convs):
        out_bits = ACT_BITS if i == len(convs) - 1 else act_bits
        s_out, out_max = pow2_scale(float(maxima[i].max()), out_bits), (1 << (out_bits - 1)) - 1
        layers.append(_widest_layer(m, relu, s_in, s_out, in_max, out_max, i in two_pieces, per_channel))
        s_in, in_max = s_out, out_max
    return IntegerPostFilter(layers, s_in, net.unshuffle)


def _widest_layer(m: nn.Conv2d, relu: bool, s_in: float, s_out: float, in_max: int, out_max: int,
                  two_pieces: bool, per_channel: bool) -> ShiftConv:
    """`build_integer_postfilter`'s layer: the widest weights whose sums float32 holds exactly."""
    if per_channel and not two_pieces:
        return shift_conv(m, relu, s_in, s_out, in_max, out_max, channel_weight_bits(m, s_in, s_out, in_max))
    for weight_bits in range(16, 4, -1):
        for low_bits in range(weight_bits if two_pieces else 1):
            try:
                return shift_conv(m, relu, s_in, s_out, in_max, out_max, weight_bits, low_bits)
            except ValueError:   # sums too wide for float32: narrower weights (or a wider low piece)
                continue
    raise ValueError("no weight width keeps the post-filter's sums exact in float32")
