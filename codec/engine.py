"""The learned codec as an engine: analyse once, then quantize, measure, code and decode.

Splitting `analyze` (the expensive analysis transform) from `estimate_bytes` and
`encode` (cheap per quality) is what lets the fast rate matcher try many qualities for the price of
one analysis. All sizes returned are of the complete file (header, map, streams and checksum).
"""
from __future__ import annotations

import contextlib
import copy
import functools
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from .color import to_10bit, to_8bit, ycbcr_to_rgb
from .entropy import coder, offsetmap
from .entropy.bitstream import Bitstream, BitstreamError, join_streams, split_streams, varint
from .entropy.rdoq import KAPPA, rdo_round
from .entropy.tables import FreqTable, scale_rows
from . import loopfilter
from .errors import BitlensError
from .grid import CELL, STRIDE, latent_grid  # noqa: F401  (re-exported: callers know them from here)
from .images import SourceImage
from .integer.fixedpoint import layers_from_dict
from .integer.networks import IntegerContextNet, IntegerDecoderNets, IntegerPostFilter
from .model.context import anchor_mask
from .model.hyperprior import VariableRateHyperprior, pad_to_multiple
from .model.layers import inference_analysis
from .model.postfilter import PostFilter
from .model.quality import Q16, QMAX, log2_step_grid_q16, log2_step_q16, step_from_log2_q16
from .model.zoo import DEFAULT_MODEL_ID, load_bundle
from .ratemodel import RateModel

BACKENDS = ("integer", "integer8", "float")

HYPER_CACHE = 16  # qualities whose hyper-latent an Analysis keeps
ESTIMATE_MAPS = 8  # step-offset maps whose size estimates an Analysis keeps


@dataclass
class Hyper:
    """Coded hyper-latent and the entropy parameters the decoder derives from it."""

    z: np.ndarray            # (Nz, hz, wz) int64 coded hyper-latent symbols (`LearnedCodec.z_hat`)
    mu: np.ndarray           # (M, h, w) float32 means
    log2_sigma: np.ndarray   # (M, h, w) float64 log2 scales
    z_data: bytes            # the coded z stream


@dataclass
class Analysis:
    """Quality-independent part of an encode: the latent of one image, plus its hyper-latents.

    Models whose hyper-analysis sees the quality (`hyper_gain`) get one `Hyper` per quality code,
    computed on first use; older models share one for every quality."""

    source: SourceImage
    y: np.ndarray            # (M, h, w) float32 latent
    seconds: float
    hypers: dict = field(default_factory=dict)
    last_symbols: tuple | None = None   # (key, Symbols) of the last quality tried: the matcher's final
                                        # encode is usually at its last trial's quality
    loop_filter: bool = True            # encodes of this analysis fit and send the loop filter
    # sizes estimated so far, per (map, RDOQ) and quality code: (map stream, z bytes, y bytes); the
    # fast matcher starts a new target on this image from them (re-matching as the target moves)
    estimates: dict = field(default_factory=dict)

    @functools.cached_property
    def source10(self) -> list[np.ndarray]:
        """The source's 10-bit planes (Y, or Y, Cb, Cr), the loop filter's fitting target: made on
        the first fit, not in every analysis (bisection makes one per trial and fits once)."""
        ycc = self.source.ycbcr()
        return [to_10bit(ycc[..., i]) for i in range(self.source.planes)]

    @property
    def grid(self) -> tuple[int, int]:
        return self.y.shape[1], self.y.shape[2]

    def fork(self) -> "Analysis":
        """A copy for another encode (another thread): the same latent and hyper-latents, and the
        sizes estimated so far, in caches of its own. Each dict is copied by one C call, atomic
        under the GIL, so a thread still using this analysis cannot break the copy."""
        estimates = dict(self.estimates)
        copy = Analysis(self.source, self.y, 0.0, hypers=dict(self.hypers), loop_filter=self.loop_filter,
                        estimates={key: dict(sizes) for key, sizes in estimates.items()})
        if "source10" in self.__dict__:   # the fit's target planes, made once per image
            copy.source10 = self.source10
        return copy


@dataclass
class Symbols:
    """Quantized latent of one encode: symbols, the table row each is coded with, steps and means."""

    s: np.ndarray        # (M, h, w) int64
    rows: np.ndarray     # (M, h, w) scale index
    delta: np.ndarray    # (M, h, w) quantization step
    mu: np.ndarray       # (M, h, w) mean (the context model's, on its second half)
    kmap: np.ndarray     # (h, w) step offsets
    filters: dict = field(default_factory=dict)   # loop-filter (coefficients, clips) per plane, per layout fitted
    log2_ratio: np.ndarray | None = None   # (M, h, w) log2(sigma / delta) coded with (context models' corrections in)
    residual: np.ndarray | None = None     # (M, h, w) the latent residual prediction, in steps, once made


@dataclass
class Encoded:
    """A finished encode: the file bytes and what a user wants to know about it."""

    data: bytes
    q_code: int
    kmap: np.ndarray
    width: int
    height: int

    @property
    def bpp(self) -> float:
        return len(self.data) * 8 / (self.width * self.height)


@dataclass
class Decoded:
    """A reconstruction: display pixels plus the 10-bit luma plane used for PSNR-Y."""

    pixels: np.ndarray   # uint8 (H,W,3) or (H,W) for grayscale sources
    y10: np.ndarray      # uint16 (H,W)
    ycbcr: np.ndarray    # float (H,W,3)
    header: Bitstream
    seconds: float


def loop_filters(bs: Bitstream) -> tuple[list[np.ndarray], list[int]] | None:
    """The loop filters a bitstream carries (coefficients and clip index per plane); None: none."""
    return loopfilter.unpack(bs.filter_data, bs.planes, bs.version) if bs.filter_data is not None else None


POSTFILTER_KEYS = ("postfilters", "postfilter", "integer_postfilter")   # where a bundle keeps them


def postfilter_entries(bundle: dict) -> list[dict]:
    """A bundle's post-filters, by rising `max_code`: model 15's list ("postfilters", each with its
    integer form), or model 14's single one ("postfilter" and "integer_postfilter")."""
    if "postfilters" in bundle:
        return sorted(bundle["postfilters"], key=lambda e: int(e["max_code"]))
    if "postfilter" in bundle:
        return [dict(bundle["postfilter"], integer=bundle["integer_postfilter"])]
    return []


class LearnedCodec:
    """One shipped model ready to encode and decode."""

    def __init__(self, bundle: dict):
        self.model_id = int(bundle["model_id"])
        self.name = bundle["name"]
        self.net = VariableRateHyperprior(**bundle["config"])
        self.net.load_state_dict({k: v.float() for k, v in bundle["state_dict"].items()})
        self.net.eval()
        self.g_a = inference_analysis(self.net.g_a)   # the encoder's faster copy of the analysis
        # the float synthesis the encoder fits the loop filter on, channels-last: 0.12 s instead of
        # the integer decoder's 0.22 s at 768x512, its pixels within one 10-bit level of it, and the
        # fitted filters as good on the integer reconstruction (training photos: squared error
        # after filtering within 0.1% of the filters fitted on the integer reconstruction). In
        # bf16 where oneDNN runs bf16 convolutions (AVX-512 or AMX CPUs): 0.03 s, filters as good
        self.fit_dtype = torch.bfloat16 if _bf16_convolutions() else torch.float32
        self.g_s_fit = copy.deepcopy(self.net.g_s).to(self.fit_dtype, memory_format=torch.channels_last)
        for m in self.g_s_fit.modules():
            if isinstance(m, torch.nn.ReLU):
                m.inplace = True      # inference only: no copy of the widest activations
        self._nets = {"cpu": self.net}   # the float network per torch device
        self.log2_steps_q16 = bundle["log2_steps_q16"].numpy()
        # steps the hyper-analysis is conditioned on (an encoder-only input): the trained ones, also
        # in a variant whose coding steps were re-balanced after training (training/luma_steps.py)
        self.hyper_log2_steps_q16 = bundle.get("hyper_log2_steps_q16", bundle["log2_steps_q16"]).numpy()
        # rows of the step table that were trained (the others are extrapolated levels)
        self.trained_levels = tuple(int(v) for v in bundle.get("trained_levels", (1, len(self.log2_steps_q16) - 2)))
        self.pow2_hi, self.pow2_lo = bundle["pow2_hi"].numpy(), bundle["pow2_lo"].numpy()
        self.thresholds = bundle["y_log2_thresholds"].numpy()
        self.y_table = FreqTable.from_dict({k: v.numpy() for k, v in bundle.items() if k.startswith("y_")}, "y")
        # (quality codes, mean log bpp) measured on training photos at export: the fast matcher's prior
        default_prior = np.array([[0, QMAX], [np.log(0.05), np.log(2.0)]])
        self.rate_prior = bundle["rate_prior"].numpy() if "rate_prior" in bundle else default_prior
        # bits as a function of log2(|y| / step), fitted on training photos: predicts each image's curve
        self.rate_model = RateModel.from_dict(bundle["rate_model"]) if "rate_model" in bundle else None
        # integer hyper-synthesis and synthesis (absent only in bundles made before calibration)
        self.integer = (IntegerDecoderNets.from_dict(bundle["integer"], bundle.get("integer_hyper"))
                        if "integer" in bundle else None)
        # quantization step of the hyper-latent (model 16 on: 1.25 instead of 1; its symbols are
        # round(z / step), the hyper-synthesis sees them times the step): the trained z spends 0.02
        # bpp at every rate, a third of a 0.06 bpp file, on detail the y prior barely uses
        # (training/z_step.py, docs/MODEL.md "Hyper-latent step")
        self.z_step = float(bundle.get("z_step", 1.0))
        if self.integer is not None and (self.z_step != 1.0) != (self.integer.z_factor != 1):
            raise BitlensError(f"model {self.model_id}: z step {self.z_step} without its integer hyper-synthesis")
        # 8-bit synthesis weights (`integer8`), at the 16-bit synthesis' activation scales. Rounded by
        # GPTQ (bundles since v10's) in every layer; rounded to nearest (older bundles) in every layer
        # but the 3-channel output layer, which then keeps its 16-bit weights (0.7% of the weights,
        # 40% of the rounding's loss on training photos)
        self.g_s8 = None
        if "g_s8" in bundle and self.integer is not None:
            g_s8 = layers_from_dict(bundle["g_s8"])
            self.g_s8 = g_s8 if bundle.get("g_s8_rounding") == "gptq" else g_s8[:-1] + self.integer.g_s[-1:]
        # checkerboard context model (codec/model/context.py), integer form; None: hyperprior only
        self.context = (IntegerContextNet.from_dict(bundle["integer_context"])
                        if "integer_context" in bundle else None)
        # channel slices of the anchors (codec/model/context.py `ChannelSlices`), integer form: one
        # network per channel group after the first; empty: the anchors use the hyperprior alone
        self.slices = [IntegerContextNet.from_dict(d) for d in bundle.get("integer_slices", [])]
        # channel slices of the non-anchors after the checkerboard's correction, integer form; empty:
        # the non-anchors are coded in one group
        self.rest_slices = [IntegerContextNet.from_dict(d) for d in bundle.get("integer_rest_slices", [])]
        # latent residual prediction (codec/model/context.py `LatentResidual`), integer form; None:
        # every latent decoded at the centre of its bin
        self.residual = (IntegerContextNet.from_dict(bundle["integer_residual"])
                         if "integer_residual" in bundle else None)
        # learned post-filters (codec/model/postfilter.py, v14 and v15) by quality range: float form
        # for the float decoder and the encoder's loop-filter fit, integer form for the integer
        # decoders. Each runs at quality codes above the previous one's `max_code` up to its own
        # (one network does not serve every rate best: model 15 runs model 14's up to a code and one
        # trained at every rate above it); above the last, none (model 14's lowers PSNR-Y there)
        self.postfilters = [(int(e.get("max_code", QMAX)), PostFilter.from_state(e), IntegerPostFilter.from_dict(e["integer"]))
                            for e in postfilter_entries(bundle)]
        self.z_table = FreqTable.from_dict({k: v.numpy() for k, v in bundle.items() if k.startswith("z_")}, "z")
        # the integer layers' int8 weights packed at load (about 0.1 s), not in the first decode
        for layer in ((self.integer.layers() if self.integer else []) + (self.context.layers if self.context else [])
                      + [layer for net in self.slices + self.rest_slices + [self.residual] if net for layer in net.layers]):
            layer.prepare()
        # encoder-only: rate-distortion optimized rounding of y (codec/entropy/rdoq.py); off = rounding
        self.rdoq = True
        # RDOQ's bits-per-squared-step trade-off per channel in files with the loop filter: KAPPA
        # times the picture error a step of that channel makes relative to the others
        # (training/channel_gains.py: spread over a factor of 20). On the last 12 training photos
        # -0.28% BD-rate with the filter, but +0.43% without it, so files without the filter keep
        # the constant, as do models without measured weights
        weights = bundle.get("rdoq_channel_weights")
        m = self.net.M
        if weights is not None and len(weights) != m:
            raise BitlensError(f"model {self.model_id}: {len(weights)} RDOQ channel weights for {m} channels")
        self.rdoq_kappa = KAPPA * (np.ones(m) if weights is None else np.asarray(weights, dtype=np.float64))
        # encoder-only: fit and send the adaptive loop filter (codec/loopfilter.py) in the encodes of
        # analyses made without saying (`analyze(..., loop_filter=)`): a few % less rate for a
        # synthesis and a least-squares fit in the encoder (about 0.1 s at 768x512 with bf16)
        self.loop_filter = True

    @classmethod
    def load(cls, model_id: int = DEFAULT_MODEL_ID) -> "LearnedCodec":
        return _cached_codec(model_id)

    @contextlib.contextmanager
    def options(self, **encoder_options):
        """Encoder switches (`rdoq`, and `loop_filter` for analyses made in the block) set for a block
        and restored after it: loaded codecs are shared within a process. Not for threads that encode
        with the same codec at once (the GUI's workers do: they pass `loop_filter` per analysis)."""
        old = {k: getattr(self, k) for k in encoder_options if k in ("rdoq", "loop_filter")}
        if len(old) != len(encoder_options):
            raise TypeError(f"unknown encoder options: {sorted(set(encoder_options) - set(old))}")
        for k, v in encoder_options.items():
            setattr(self, k, v)
        try:
            yield self
        finally:
            for k, v in old.items():
                setattr(self, k, v)

    # ---- encoder side ------------------------------------------------------------------------
    @torch.inference_mode()
    def analyze(self, source: SourceImage, loop_filter: bool | None = None) -> Analysis:
        """Analysis transform: once per image (the expensive part of an encode). `loop_filter`
        (default: the codec's `loop_filter`) says whether its encodes carry the loop filter: a
        choice per analysis, so threads sharing one codec can choose differently."""
        t0 = time.perf_counter()
        x = torch.from_numpy(source.ycbcr().astype(np.float32)).permute(2, 0, 1)[None]
        x = pad_to_multiple(x, STRIDE).contiguous(memory_format=torch.channels_last)
        an = Analysis(source, self.g_a(x)[0].contiguous().numpy(), 0.0,
                      loop_filter=self.loop_filter if loop_filter is None else bool(loop_filter))
        if not self.net.hyper_gain:
            self.hyper(an, 0)
        an.seconds = time.perf_counter() - t0
        return an

    @torch.inference_mode()
    def hyper(self, an: Analysis, q_code: int) -> Hyper:
        """Hyper-latent, its coded stream and the entropy parameters at this quality (cached)."""
        code = self._trained_code(int(q_code))
        key = code if self.net.hyper_gain else None
        if key not in an.hypers:
            if len(an.hypers) >= HYPER_CACHE:   # a slider session tries many qualities: drop the oldest
                del an.hypers[next(iter(an.hypers))]
            log2_step = log2_step_q16(self.hyper_log2_steps_q16, code) / Q16
            y = torch.from_numpy(an.y)[None]
            z = self.net.hyper_analysis(y, torch.from_numpy(log2_step).float()[None])
            z = torch.round(z / self.z_step)[0].numpy().astype(np.int64)
            mu, log2_sigma = self._entropy_parameters(z)
            an.hypers[key] = Hyper(z, mu, log2_sigma, coder.encode(z, self._z_rows(z.shape), self.z_table))
        return an.hypers[key]

    def symbols(self, an: Analysis, q_code: int, kmap: np.ndarray | None = None) -> Symbols:
        """Quantized symbols, their table rows, steps and means for a quality code and offset map.
        With a context model, the anchors are quantized first (channel group by group with slices)
        and the rest with the means and scales the context model derives from them, as the decoder
        will."""
        kmap = self._check_map(kmap, an.grid)
        key = (int(q_code), kmap.tobytes(), self.rdoq)
        if an.last_symbols is not None and an.last_symbols[0] == key:
            return an.last_symbols[1]
        hy = self.hyper(an, q_code)
        delta, rows, log2_ratio = self._steps_and_rows(hy.log2_sigma, q_code, kmap)
        mu = hy.mu
        # RDOQ's per-channel weights in files with the loop filter, where they were measured to
        # help; one constant in files without it
        kappa = self.rdoq_kappa if an.loop_filter else KAPPA
        if self.context is None:
            s = self._quantize((an.y - mu) / delta, rows, kappa)
        else:
            def quantize(cells: np.ndarray, ch: slice, mu_c: np.ndarray, rows_c: np.ndarray) -> np.ndarray:
                return self._quantize((an.y[ch][:, cells] - mu_c) / delta[ch][:, cells], rows_c,
                                      kappa[ch] if np.ndim(kappa) else kappa)

            s, mu, rows, log2_ratio = self._code_y(quantize, mu, rows, log2_ratio, delta)
        an.last_symbols = (key, Symbols(s, rows, delta, mu, kmap, log2_ratio=log2_ratio))
        return an.last_symbols[1]

    def _quantize(self, v: np.ndarray, rows: np.ndarray, kappa: float | np.ndarray) -> np.ndarray:
        """Symbols of v (channels first, in steps): RDOQ with `kappa` (one, or one per channel), or
        rounding."""
        if not self.rdoq:
            return np.round(v).astype(np.int64)
        per_channel = np.ndim(kappa) > 0
        return rdo_round(v, rows, self.y_table, np.reshape(kappa, (-1,) + (1,) * (v.ndim - 1)) if per_channel else kappa)

    def estimate_bytes(self, an: Analysis, q_code: int, kmap: np.ndarray | None = None,
                       filter_layout: int | None = None) -> int:
        """Exact size of the file `encode` would write (with the same `filter_layout`), from the
        stored tables, without coding. Remembered in the analysis (`known_codes`)."""
        kmap = self._check_map(kmap, an.grid)
        sizes = self._estimates(an, kmap)
        if int(q_code) not in sizes:
            sy = self.symbols(an, q_code, kmap)
            parts = [coder.estimate_bytes(coder.coded_bits(s, r, self.y_table)) for s, r in self._y_parts(sy)]
            sizes[int(q_code)] = (offsetmap.encode_map(sy.kmap), len(self.hyper(an, q_code).z_data),
                                  sum(parts) + sum(len(varint(n)) for n in parts[:-1]))
        map_data, z_bytes, y_bytes = sizes[int(q_code)]
        filter_bytes = None
        if an.loop_filter:
            filter_bytes = loopfilter.block_bytes(an.source.planes, _layout(filter_layout, z_bytes + y_bytes))
        return self._container_bytes(an.source, map_data, filter_bytes, z_bytes, y_bytes)

    def known_codes(self, an: Analysis, kmap: np.ndarray | None = None) -> list[int]:
        """Quality codes whose size `estimate_bytes` already knows for this analysis and map."""
        return sorted(self._estimates(an, self._check_map(kmap, an.grid)))

    def _estimates(self, an: Analysis, kmap: np.ndarray) -> dict:
        """The analysis' remembered sizes for this map (and RDOQ setting): code -> sizes."""
        key = (kmap.tobytes(), kmap.shape, self.rdoq)
        if key not in an.estimates and len(an.estimates) >= ESTIMATE_MAPS:   # painting makes many maps
            del an.estimates[next(iter(an.estimates))]
        return an.estimates.setdefault(key, {})

    def cell_bits(self, an: Analysis, q_code: int, kmap: np.ndarray | None = None) -> np.ndarray:
        """Ideal y bits spent in each latent cell (h, w): the bits heatmap."""
        sy = self.symbols(an, q_code, kmap)
        return coder.symbol_bits(sy.s, sy.rows, self.y_table).sum(axis=0)

    def encode(self, an: Analysis, q_code: int, kmap: np.ndarray | None = None,
               fit_filter: bool = True, filter_layout: int | None = None) -> Encoded:
        """Range-code the image at this quality and map into a complete bitstream. The loop filter
        (if the analysis has it on) has the `filter_layout` given (the rate matcher's, chosen from
        its target) or else the one `loopfilter.choose_layout` picks for this file; with
        `fit_filter` False it holds the identity (same size: for trials that only need the rate)."""
        if not 0 <= q_code <= QMAX:
            raise BitlensError(f"quality code {q_code} outside 0..{QMAX}")
        sy = self.symbols(an, q_code, kmap)
        y_data = self._y_data(sy)
        z_data = self.hyper(an, q_code).z_data
        filter_data = None
        if an.loop_filter:
            index = _layout(filter_layout, len(z_data) + len(y_data))
            coeffs, clips = (self._fit_filter(an, sy, q_code, index) if fit_filter
                             else (loopfilter.identity(an.source.planes, index), None))
            filter_data = loopfilter.pack(coeffs, index, clips)
        bs = Bitstream(an.source.width, an.source.height, self.model_id, int(q_code), an.source.grayscale,
                       offsetmap.encode_map(sy.kmap), z_data, y_data, filter_data)
        return Encoded(bs.pack(), int(q_code), sy.kmap, an.source.width, an.source.height)

    @torch.inference_mode()
    def reconstruct(self, an: Analysis, q_code: int, kmap: np.ndarray | None = None,
                    backend: str = "integer", filtered: bool = True, filter_layout: int | None = None) -> np.ndarray:
        """Y'CbCr reconstruction the decoder will produce from `encode` with the same arguments,
        without going through the decoder; with `filtered` False, before the loop filter (a cheaper
        probe)."""
        sy = self.symbols(an, q_code, kmap)
        filters = None
        if filtered and an.loop_filter:
            if filter_layout is None:   # the file's own layout: its real stream sizes, as `encode` has them
                filter_layout = _layout(None, len(self.hyper(an, q_code).z_data) + len(self._y_data(sy)))
            filters = self._fit_filter(an, sy, q_code, filter_layout)
        return self._synthesize(self.y_hat(sy), an.source.height, an.source.width, q_code, backend, filters=filters)

    def _y_data(self, sy: Symbols) -> bytes:
        """The coded y stream (with a context model in parts, each but the last after its length)."""
        return join_streams([coder.encode(s, r, self.y_table) for s, r in self._y_parts(sy)])

    @torch.inference_mode()
    def _fit_filter(self, an: Analysis, sy: Symbols, q_code: int, index: int) -> tuple[list[np.ndarray], list[int]]:
        """Loop-filter coefficients and clip index per plane in layout `index`, fitted on the float synthesis of
        these symbols (as good as fitting on the integer decoder's, in half the time: `g_s_fit`) after
        the float post-filter (models with one). Cached with the symbols."""
        if index not in sy.filters:
            y_hat = torch.from_numpy(self.y_hat(sy).astype(np.float32))[None]
            rec = self.g_s_fit(y_hat.to(self.fit_dtype).contiguous(memory_format=torch.channels_last))[0]
            rec = rec[:, :an.source.height, :an.source.width].float().nan_to_num(0.5).clamp(0, 1).numpy()
            luma = self._post_filter(rec, q_code, "float")
            coeffs, clips = loopfilter.identity(an.source.planes, index), [0] * an.source.planes
            for i, ref in enumerate(an.source10):
                n = len(coeffs[i])
                if n:
                    plane = luma if i == 0 and luma is not None else to_10bit(rec[i])
                    coeffs[i], clips[i] = loopfilter.fit(plane, ref, loopfilter.classify(plane, n), n)
            sy.filters[index] = coeffs, clips
        return sy.filters[index]

    @property
    def trained_codes(self) -> tuple[int, int]:
        """The quality codes of the lowest and highest trained levels; outside them the steps are
        extrapolated."""
        n = len(self.log2_steps_q16) - 1
        lo, hi = self.trained_levels
        return -(-lo * QMAX // n), hi * QMAX // n

    def _trained_code(self, q_code: int) -> int:
        """The quality code clamped to the trained levels: beyond them the y steps keep changing
        (extrapolated levels reach lower and higher rates) but the hyper-analysis, an encoder-only
        choice, sees the step of the nearest trained level instead of inputs it never saw."""
        lo, hi = self.trained_codes
        return min(max(q_code, lo), hi)

    # ---- decoder side ------------------------------------------------------------------------
    @torch.inference_mode()
    def decode(self, data: bytes, backend: str = "integer", device: str = "cpu") -> Decoded:
        """Bitstream bytes -> reconstruction with the `integer` (bit-exact everywhere; `integer8`: 8-bit
        weights) or `float` synthesis, its networks run on the torch `device`. Raises BitlensError for
        anything undecodable."""
        _check_device(device, backend)
        t0 = time.perf_counter()
        bs = Bitstream.unpack(data)
        if bs.model_id != self.model_id:
            raise BitlensError(f"bitstream is for model {bs.model_id}, this decoder holds model {self.model_id}")
        if bs.q_code > QMAX:
            raise BitstreamError("quality code out of range: corrupted bitstream")
        sy = self.entropy_decode(bs, device)
        ycc = self._synthesize(self.y_hat(sy), bs.height, bs.width, bs.q_code, backend, device, loop_filters(bs))
        return self._finish(ycc, bs, time.perf_counter() - t0)

    def entropy_decode(self, bs: Bitstream, device: str = "cpu") -> Symbols:
        """Symbols, table rows, steps and means of y from a parsed bitstream (the entropy networks
        run on the torch `device`). Raises BitstreamError for undecodable streams."""
        try:
            kmap, z = self._map_and_z(bs)
            mu, log2_sigma = self._entropy_parameters(z, device)
            delta, rows, log2_ratio = self._steps_and_rows(log2_sigma, bs.q_code, kmap)
            if self.context is None:
                return Symbols(coder.decode(bs.y_data, rows, self.y_table), rows, delta, mu, kmap)
            streams = iter(split_streams(bs.y_data, len(self._y_groups())))

            def decode(cells: np.ndarray, ch: slice, mu_c: np.ndarray, rows_c: np.ndarray) -> np.ndarray:
                return coder.decode(next(streams), rows_c, self.y_table)

            s, mu, rows, log2_ratio = self._code_y(decode, mu, rows, log2_ratio, delta, device)
            return Symbols(s, rows, delta, mu, kmap, log2_ratio=log2_ratio)
        except coder.CorruptStream as exc:
            raise BitstreamError(f"corrupted bitstream: {exc}") from None

    def y_hat(self, sy: Symbols) -> np.ndarray:
        """The decoded latent: each symbol at the centre of its bin, mu + s * delta, or with latent
        residual prediction mu + (s + p) * delta (encoder and decoder alike; clipped so that a
        corrupted stream cannot overflow the synthesis)."""
        if self.residual is None:
            return np.clip(sy.mu + sy.s * sy.delta, -1e4, 1e4)
        if sy.residual is None:
            sy.residual = self.residual.residual(sy.s, sy.log2_ratio)
        return np.clip(sy.mu + (sy.s + sy.residual) * sy.delta, -1e4, 1e4)

    def decode_latents(self, data: bytes) -> tuple[Bitstream, np.ndarray, np.ndarray, np.ndarray]:
        """Header, z, map and the hyperprior's scale rows (the float entropy networks' diagnostic)."""
        bs = Bitstream.unpack(data)
        kmap, z = self._map_and_z(bs)
        return bs, z, kmap, self._steps_and_rows(self._entropy_parameters(z)[1], bs.q_code, kmap)[1]

    @torch.inference_mode()
    def float_scale_rows(self, z: np.ndarray, q_code: int, kmap: np.ndarray, device: str = "cpu") -> np.ndarray:
        """Scale indices a float hyper-synthesis would derive (what a non-integer decoder would use)."""
        z_t = torch.from_numpy(self.z_hat(z))[None].to(device)
        _, log2_sigma = self._net_on(device).entropy_parameters(z_t)
        return self._steps_and_rows(log2_sigma[0].cpu().numpy().astype(np.float64), q_code, kmap)[1]

    # ---- shared pieces -----------------------------------------------------------------------
    def _map_and_z(self, bs: Bitstream) -> tuple[np.ndarray, np.ndarray]:
        """The step-offset map and the hyper-latent z decoded from a parsed bitstream."""
        h, w = latent_grid(bs.height, bs.width)
        z_shape = (self.net.config["Nz"], h // 4, w // 4)
        return offsetmap.decode_map(bs.map_data, (h, w)), coder.decode(bs.z_data, self._z_rows(z_shape), self.z_table)

    def _net_on(self, device: str) -> VariableRateHyperprior:
        """The float network on a torch device (copied there once)."""
        key = str(torch.device(device))
        if key not in self._nets:
            self._nets[key] = copy.deepcopy(self.net).to(device)
        return self._nets[key]

    def _entropy_parameters(self, z: np.ndarray, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
        """Means and log2 scales from the z symbols: the integer hyper-synthesis, so every machine
        agrees."""
        if self.integer is not None:
            return self.integer.entropy_parameters(z, device)
        mu, log2_sigma = self.net.entropy_parameters(torch.from_numpy(self.z_hat(z))[None])
        return mu[0].numpy(), log2_sigma[0].numpy().astype(np.float64)

    def z_hat(self, z: np.ndarray) -> np.ndarray:
        """The hyper-synthesis' float input from the coded z symbols (float32)."""
        return (z * self.z_step).astype(np.float32)

    def _steps_and_rows(self, log2_sigma: np.ndarray, q_code: int, kmap: np.ndarray):
        """Quantization step of every latent element, the CDF row (scale index) it is coded with,
        and log2(sigma / delta), the scale in steps (what the context network sees)."""
        log2_delta = log2_step_grid_q16(self.log2_steps_q16, q_code, kmap)
        delta = step_from_log2_q16(log2_delta, self.pow2_hi, self.pow2_lo)
        log2_ratio = log2_sigma - log2_delta / Q16
        return delta, scale_rows(self.thresholds, log2_ratio), log2_ratio

    def _groups(self, nets: list[IntegerContextNet]) -> list[slice]:
        """Channel groups in coding order of one half of the checkerboard with these slice networks:
        all channels at once, or one group per network and one before them."""
        n = len(nets) + 1
        c = self.net.M // n
        return [slice(g * c, (g + 1) * c) for g in range(n)]

    def _y_groups(self) -> list[tuple[bool, slice]]:
        """(anchors?, channels) of each part of y a context model codes, in order: one y stream each."""
        return ([(True, ch) for ch in self._groups(self.slices)]
                + [(False, ch) for ch in self._groups(self.rest_slices)])

    def _code_y(self, code: Callable[[np.ndarray, slice, np.ndarray, np.ndarray], np.ndarray], mu: np.ndarray,
                rows: np.ndarray, log2_ratio: np.ndarray, delta: np.ndarray, device: str = "cpu"
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Symbols, means, table rows and log2(sigma / delta) of y once a context model has coded it:
        the anchors channel group by group (`_code_groups` with the anchors' slices), then the
        non-anchors with the means and scales the checkerboard network derives from the anchors'
        values in steps from the hyperprior's mean (symbols plus the slices' mean shifts), group by
        group again if the model has slices for them. `code(cells, channels, means, rows)`
        quantizes (encoder) or decodes (decoder) one group on one half."""
        anchors = anchor_cells(mu.shape[1:])
        later = ~anchors
        s = np.zeros(mu.shape, dtype=np.int64)
        mu, rows, lr = mu.copy(), rows.copy(), log2_ratio.copy()
        shift = self._code_groups(True, self.slices, code, s, mu, rows, lr, delta, device)
        d_mu, d_lr = self.context.shifts(np.where(later, 0, s + shift), log2_ratio, device)
        mu[:, later] += d_mu[:, later] * delta[:, later]
        lr[:, later] += d_lr[:, later]
        rows[:, later] = scale_rows(self.thresholds, lr[:, later])
        self._code_groups(False, self.rest_slices, code, s, mu, rows, lr, delta, device)
        return s, mu, rows, lr

    def _code_groups(self, at_anchors: bool, nets: list[IntegerContextNet], code, s: np.ndarray, mu: np.ndarray,
                     rows: np.ndarray, lr: np.ndarray, delta: np.ndarray, device: str) -> np.ndarray:
        """Code one half of the checkerboard (the anchors, or the rest) channel group by group, in
        place in `s`, `mu`, `rows` and `lr`: each group after the first gets its means and scales
        corrected by its slice network from the symbols of the groups before it (all of them coded
        so far, on both halves) and its own log2(sigma / delta). Returns the mean shifts (steps)."""
        cells = anchor_cells(mu.shape[1:]) if at_anchors else ~anchor_cells(mu.shape[1:])
        shift = np.zeros(mu.shape)
        for g, ch in enumerate(self._groups(nets)):
            if g:
                d_mu, d_lr = nets[g - 1].shifts(s[:ch.start], lr[ch], device, at_anchors=at_anchors)
                shift[ch] = d_mu
                mu[ch][:, cells] += d_mu[:, cells] * delta[ch][:, cells]
                lr[ch][:, cells] += d_lr[:, cells]
                rows[ch][:, cells] = scale_rows(self.thresholds, lr[ch][:, cells])
            s[ch][:, cells] = code(cells, ch, mu[ch][:, cells], rows[ch][:, cells])
        return shift

    def _y_parts(self, sy: Symbols) -> list[tuple[np.ndarray, np.ndarray]]:
        """(symbols, rows) of each y stream: one, or with a context model the anchors (one stream
        per channel group) and then the other half: the decoder needs each group's symbols before
        it knows the next one's rows."""
        if self.context is None:
            return [(sy.s, sy.rows)]
        anchors = anchor_cells(sy.kmap.shape)
        return [(sy.s[ch][:, cells], sy.rows[ch][:, cells])
                for cells, ch in ((anchors if a else ~anchors, ch) for a, ch in self._y_groups())]

    def _synthesize(self, y_hat: np.ndarray, height: int, width: int, q_code: int, backend: str = "integer",
                    device: str = "cpu", filters: tuple[list[np.ndarray], list[int]] | None = None) -> np.ndarray:
        """The (H, W, 3) Y'CbCr reconstruction in [0, 1] of `y_hat` by the `backend`'s synthesis on
        `device`, then `_in_loop`."""
        if backend not in BACKENDS:
            raise BitlensError(f"unknown decoder backend {backend!r} (choose from {', '.join(BACKENDS)})")
        if backend == "float" or self.integer is None:
            y_t = torch.from_numpy(y_hat.astype(np.float32))[None].to(device)
            x = self._net_on(device).g_s(y_t)[0].nan_to_num(0.5).cpu().numpy()
        else:
            nets = self.integer
            if backend == "integer8":
                if self.g_s8 is None:
                    raise BitlensError("this model has no 8-bit synthesis")
                nets = IntegerDecoderNets(nets.h_s, self.g_s8, nets.s_mu, nets.s_ls, nets.s_y, 8)
            x = nets.synthesize(y_hat, device)
        return self._in_loop(x[:, :height, :width], q_code, backend, device, filters)

    def _in_loop(self, x: np.ndarray, q_code: int, backend: str = "integer", device: str = "cpu",
                 filters: tuple[list[np.ndarray], list[int]] | None = None) -> np.ndarray:
        """The (H, W, 3) Y'CbCr reconstruction in [0, 1] from the synthesis output `x` (3, H, W):
        luma corrected by the learned post-filter (models with one, up to its highest quality code), then each
        plane with its loop `filters` (coefficients and clip index per plane) applied on its 10-bit
        values (luma's per class of its 4x4 blocks) while the planes are still contiguous."""
        planes = np.clip(x, 0, 1).astype(np.float64, copy=False)
        luma = self._post_filter(planes, q_code, backend, device)
        if luma is not None:
            planes[0] = luma / 1023.0
        for i, (c, clip) in enumerate(zip(*filters) if filters else []):
            if np.any(c):
                plane = to_10bit(planes[i])
                planes[i] = loopfilter.apply(plane, c, loopfilter.classify(plane, len(c)), clip) / 1023.0
        return planes.transpose(1, 2, 0).astype(np.float64)

    @property
    def postfilter_max_code(self) -> int:
        """The highest quality code a post-filter runs at; -1: none."""
        return self.postfilters[-1][0] if self.postfilters else -1

    def postfilter_for(self, q_code: int) -> tuple[PostFilter, IntegerPostFilter] | None:
        """The post-filter (float and integer form) that runs at this quality code; None: none."""
        for max_code, net, integer in self.postfilters:
            if q_code <= max_code:
                return net, integer
        return None

    def _post_filter(self, planes: np.ndarray, q_code: int, backend: str, device: str = "cpu") -> np.ndarray | None:
        """10-bit luma (H, W) of the planes (3, H, W) in [0, 1] corrected by the quality code's
        post-filter: its integer form for the integer decoders (exact everywhere), its float form for
        the float decoder and the encoder's loop-filter fit. None where no post-filter runs."""
        chosen = self.postfilter_for(q_code)
        if chosen is None:
            return None
        net, integer = chosen
        planes10 = np.stack([to_10bit(p) for p in planes])
        if backend != "float":
            return integer.luma(planes10, q_code, device)
        with torch.inference_mode():
            x = torch.from_numpy(planes10.astype(np.float32))[None]
            out = net(x, torch.tensor([q_code]))[0, 0].numpy()
        return np.clip(np.round(out), 0, 1023).astype(np.uint16)

    def _finish(self, ycc: np.ndarray, bs: Bitstream, seconds: float) -> Decoded:
        if bs.grayscale:
            pixels = to_8bit(ycc[..., 0])
        else:
            pixels = to_8bit(ycbcr_to_rgb(ycc))
        return Decoded(pixels, to_10bit(ycc[..., 0]), ycc, bs, seconds)

    def _z_rows(self, shape) -> np.ndarray:
        return np.broadcast_to(np.arange(shape[0])[:, None, None], shape)

    def _check_map(self, kmap, grid) -> np.ndarray:
        if kmap is None:
            return np.zeros(grid, dtype=np.int64)
        kmap = np.asarray(kmap)
        if kmap.shape != grid:
            raise BitlensError(f"step-offset map has shape {kmap.shape}, the image's latent grid is {grid}")
        return kmap.astype(np.int64)

    def _container_bytes(self, src: SourceImage, map_data: bytes | None, filter_bytes: int | None,
                         z_bytes: int, y_bytes: int) -> int:
        n = 4 + 3 + 2 + len(varint(src.width)) + len(varint(src.height)) + 4
        if map_data is not None:
            n += len(varint(len(map_data))) + len(map_data)
        if filter_bytes is not None:
            n += len(varint(filter_bytes)) + filter_bytes
        return n + len(varint(z_bytes)) + z_bytes + len(varint(y_bytes)) + y_bytes


@functools.lru_cache(maxsize=8)
def anchor_cells(grid: tuple[int, int]) -> np.ndarray:
    """(h, w) bool, read-only: the checkerboard's anchors, coded first ((row + column) even).
    Made once per grid size: every trial and decode asks for it several times."""
    cells = anchor_mask(*grid).numpy()
    cells.setflags(write=False)
    return cells


def _layout(given: int | None, stream_bytes: int) -> int:
    """The loop-filter layout of an encode: the one given (the rate matcher's, from its target), or
    the one `loopfilter.choose_layout` picks for z and y streams of this size."""
    return loopfilter.choose_layout(stream_bytes) if given is None else given


def _bf16_convolutions() -> bool:
    """Whether this CPU runs oneDNN's bf16 convolutions (natively with AMX or AVX512-BF16, or
    through AVX-512), where a bf16 synthesis is several times faster than float32; elsewhere bf16
    would be emulated slowly."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):    # a private operator: absent in some builds
        return False


def decode_bitstream(data: bytes, backend: str = "integer", device: str = "cpu") -> Decoded:
    """Decode with whichever shipped model the bitstream names."""
    return LearnedCodec.load(Bitstream.unpack(data).model_id).decode(data, backend, device)


def available_devices() -> list[str]:
    """Torch devices the decoders can run on here: cpu, plus cuda and mps when present."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found


def runs_integer(device: str) -> bool:
    """The integer decoders need exact float64 convolutions, which MPS lacks."""
    return device != "mps"


def _check_device(device: str, backend: str) -> None:
    if device not in available_devices():
        raise BitlensError(f"device {device!r} is not available here")
    if backend != "float" and not runs_integer(device):
        raise BitlensError(f"the integer decoders need float64, which {device} lacks: use --backend float")


_codecs: dict[int, LearnedCodec] = {}


def _cached_codec(model_id: int) -> LearnedCodec:
    if model_id not in _codecs:
        _codecs[model_id] = LearnedCodec(load_bundle(model_id))
    return _codecs[model_id]
