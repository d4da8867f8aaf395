"""One encode as users see it: rate-matched (or fixed-quality) encode, decode of the real bytes,
PSNR-Y and per-block maps. The CLI, the GUI and the benchmarks all report numbers from here."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .engine import Analysis, Decoded, Encoded, LearnedCodec
from .errors import BitlensError
from .images import SourceImage
from .metrics import block_psnr, psnr
from .model.quality import QMAX, quality_to_code
from .ratematch import match_rate


@dataclass
class EncodeReport:
    encoded: Encoded
    decoded: Decoded
    psnr_y: float
    encode_seconds: float
    target_bpp: float | None
    method: str | None
    trace: list[tuple[int, float]]
    match_seconds: float
    kmap: np.ndarray | None = None
    map_seconds: float = 0.0
    analysis: Analysis | None = None      # kept so per-cell bits need no second analysis

    @property
    def bpp(self) -> float:
        return self.encoded.bpp

    @property
    def quality(self) -> float:
        return 100 * self.encoded.q_code / QMAX

    def block_psnr(self, source: SourceImage, block: int = 16) -> np.ndarray:
        return block_psnr(source.y10(), self.decoded.y10, block)

    def as_dict(self) -> dict:
        return dict(bytes=len(self.encoded.data), bpp=self.bpp, target_bpp=self.target_bpp,
                    quality=self.quality, q_code=self.encoded.q_code, method=self.method,
                    iterations=len(self.trace), match_seconds=self.match_seconds,
                    encode_seconds=self.encode_seconds, decode_seconds=self.decoded.seconds,
                    trace=[[int(q), float(b)] for q, b in self.trace], psnr_y=self.psnr_y,
                    map_range=[int(self.encoded.kmap.min()), int(self.encoded.kmap.max())],
                    map_seconds=self.map_seconds)

    def cell_bits(self, codec: LearnedCodec, source: SourceImage) -> np.ndarray:
        """Bits spent per latent cell (16x16 pixels), from the exact size computation."""
        if self.analysis is None:
            self.analysis = codec.analyze(source)
        return codec.cell_bits(self.analysis, self.encoded.q_code, self.encoded.kmap)


def encode_image(codec: LearnedCodec, source: SourceImage, *, target_bpp: float | None = None,
                 quality: float | None = None, method: str = "fast", tolerance: float = 0.01,
                 closest: bool = False, kmap: np.ndarray | None = None, auto_map: str | None = None,
                 backend: str = "integer", loop_filter: bool | None = None,
                 analysis: Analysis | None = None) -> EncodeReport:
    """Encode at `target_bpp` through the rate matcher, or at a fixed `quality` (0..100), with an
    optional step-offset map (given, or computed by `auto_map`: rdo, vvc, variance), with the loop
    filter if `loop_filter` (default: the codec's default, on). `analysis`: this source's analysis
    by this codec from an earlier encode (`Analysis.fork`), reused by the fast matcher and the maps
    (the GUI moving the target on the open image); ignored if made with the other loop-filter
    choice."""
    if (target_bpp is None) == (quality is None):
        raise BitlensError("give exactly one of a target bpp or a quality")
    t0 = time.perf_counter()
    want_filter = codec.loop_filter if loop_filter is None else bool(loop_filter)
    an = (analysis if analysis is not None and analysis.source is source
          and analysis.loop_filter == want_filter else None)
    map_s = 0.0
    if auto_map is not None:
        from .bitalloc import auto_map as make_map
        if target_bpp is None and auto_map != "variance":
            raise BitlensError(f"--auto-map {auto_map} needs a target bpp")
        an = an or codec.analyze(source, loop_filter)
        kmap = make_map(auto_map, codec, source, target_bpp, an, tolerance)
        map_s = time.perf_counter() - t0
    if target_bpp is not None:
        m = match_rate(codec, source, target_bpp, method, tolerance, closest, kmap,
                       analysis=an if method == "fast" else None, loop_filter=loop_filter)
        enc, trace, match_s, an = m.encoded, m.trace, m.seconds, m.analysis or an
    else:
        try:
            q = quality_to_code(quality)
        except ValueError as exc:
            raise BitlensError(str(exc)) from None
        an = an or codec.analyze(source, loop_filter)
        enc, trace, match_s = codec.encode(an, q, kmap), [], 0.0
    enc_s = time.perf_counter() - t0
    dec = codec.decode(enc.data, backend)
    return EncodeReport(enc, dec, psnr(source.y10(), dec.y10), enc_s, target_bpp,
                        method if target_bpp is not None else None, trace, match_s, enc.kmap, map_s, an)
