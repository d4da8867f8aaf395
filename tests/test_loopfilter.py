"""The adaptive loop filter: exact integer arithmetic, a fit that helps, and the bitstream block."""
import dataclasses
import zlib

import numpy as np
import pytest
import torch

from codec import loopfilter
from codec.entropy.bitstream import Bitstream, BitstreamError
from codec.images import source_from_array
from codec.metrics import psnr
from codec.model.quality import QMAX

from .conftest import sample_crop


def reference_filter(plane: np.ndarray, coeffs: np.ndarray, classes: np.ndarray | None = None,
                     clip: int = 0) -> np.ndarray:
    """The filter's formula written out with Python integers (floor shift), edges replicated, each
    pixel with its 4x4 block's class's coefficients, differences clipped to CLIPS[clip]."""
    k = loopfilter.CLIPS[clip] or 1023
    clipped = lambda d: min(max(d, -k), k)  # noqa: E731
    r = loopfilter.RADIUS
    pad = np.pad(plane.astype(object), r, mode="edge")
    h, w = plane.shape
    coeffs = np.asarray(coeffs).reshape(-1, loopfilter.TAPS)
    out = np.empty((h, w), dtype=np.int64)
    for i in range(h):
        for j in range(w):
            x = int(plane[i, j])
            c_ij = coeffs[0 if classes is None else classes[i // 4, j // 4]]
            acc = sum(int(c) * (clipped(pad[r + i + dy, r + j + dx] - x) + clipped(pad[r + i - dy, r + j - dx] - x))
                      for c, (dy, dx) in zip(c_ij, loopfilter.OFFSETS))
            out[i, j] = min(max(x + ((acc + (1 << (loopfilter.PREC - 1))) >> loopfilter.PREC), 0), 1023)
    return out


@pytest.mark.parametrize("clip", range(len(loopfilter.CLIPS)))
def test_filter_is_the_integer_formula_at_extremes_and_any_thread_count(clip):
    rng = np.random.default_rng(3)
    plane = rng.choice([0, 1, 20, 511, 1022, 1023], size=(13, 17)).astype(np.uint16)
    for coeffs in (np.full(loopfilter.TAPS, 127, np.int8), np.full(loopfilter.TAPS, -128, np.int8),
                   rng.integers(-128, 128, loopfilter.TAPS).astype(np.int8)):
        ref = reference_filter(plane, coeffs, clip=clip)
        for threads in (1, 2):
            torch.set_num_threads(threads)
            assert np.array_equal(loopfilter.apply(plane, coeffs, clip=clip), ref)
    assert loopfilter.apply(plane, np.zeros(loopfilter.TAPS, np.int8), clip=clip) is plane


@pytest.mark.parametrize("n,clip", [(4, 0), (12, 0), (12, 2)])
def test_classified_filter_is_the_integer_formula_per_block_class(n, clip):
    rng = np.random.default_rng(n)
    plane = rng.choice([0, 1, 20, 511, 1022, 1023], size=(13, 17)).astype(np.uint16)   # blocks cut by the edges
    classes = loopfilter.classify(plane, n)
    assert classes.shape == (4, 5) and classes.min() >= 0 and classes.max() < n
    coeffs = rng.integers(-128, 128, (n, loopfilter.TAPS)).astype(np.int8)
    assert np.array_equal(loopfilter.apply(plane, coeffs, classes, clip),
                          reference_filter(plane, coeffs, classes, clip))


def test_classes_rank_activity_and_tell_direction():
    x = np.arange(32)
    flat = np.full((32, 32), 500)
    stripes_v = np.broadcast_to(500 + 300 * (x % 2), (32, 32))     # columns alternate: horizontal differences
    stripes_h = stripes_v.T
    ramp = np.broadcast_to(400 + 200 * ((x // 2) % 2), (32, 32)).T  # weaker horizontal stripes
    plane = np.block([[flat, stripes_v], [stripes_h, ramp]]).astype(np.uint16)
    classes = loopfilter.classify(plane, 12)
    activity, direction = classes // 3, classes % 3
    inner = (slice(1, 7), slice(1, 7))      # blocks away from the quadrants' borders
    assert (activity[:8, :8][inner] == 0).all() and (direction[:8, :8][inner] == 0).all()
    assert (direction[:8, 8:][inner] == 1).all() and (direction[8:, :8][inner] == 2).all()
    # activity ranks: flat < the weaker stripes < the strong stripes (the top quartile)
    assert activity[8:, 8:][inner].min() > 0 and activity[8:, 8:][inner].max() < 3
    assert (activity[:8, 8:][inner] == 3).all() and (activity[8:, :8][inner] == 3).all()
    assert np.array_equal(loopfilter.classify(plane, 4), activity)
    assert loopfilter.classify(plane, 1) is None


def test_more_filters_only_in_larger_files():
    chosen = [loopfilter.choose_layout(b) for b in (100, 2599, 2600, 8999, 9000, 10**6)]
    assert chosen == [0, 0, 1, 1, 2, 2]
    assert [loopfilter.layout(3, i) for i in (0, 1, 2)] == [[1, 0, 0], [4, 0, 0], [12, 1, 1]]
    assert loopfilter.layout(3, None) == [1, 1, 1] and loopfilter.layout(1, 2) == [12]   # None: version 2
    assert loopfilter.block_bytes(3, 2) == 1 + 12 * (12 + 2) and loopfilter.block_bytes(3, 0) == 1 + 12
    coeffs = [np.full((n, loopfilter.TAPS), i + 1, np.int8) for i, n in enumerate(loopfilter.layout(3, 2))]
    block = loopfilter.pack(coeffs, 2, [1, 3, 2])
    got, clips = loopfilter.unpack(block, 3)
    assert all(np.array_equal(a, b) for a, b in zip(coeffs, got)) and clips == [1, 3, 2]
    assert block[0] == 2 | 1 << 2 | 3 << 4 | 2 << 6
    with pytest.raises(BitstreamError, match="unknown loop-filter layout 3"):
        loopfilter.unpack(b"\x03" + block[1:], 3)
    with pytest.raises(BitstreamError, match="loop-filter block of 168 bytes, expected 169"):
        loopfilter.unpack(block[:-1], 3)
    # a version-3 block's first byte is the layout alone: no clips
    v3 = bytes([2]) + block[1:]
    assert loopfilter.unpack(v3, 3, version=3)[1] == [0, 0, 0]
    with pytest.raises(BitstreamError, match="unknown loop-filter layout"):
        loopfilter.unpack(block, 3, version=3)
    # a clip for a plane that has no filters in this layout, or for a plane that does not exist
    one = loopfilter.pack(loopfilter.identity(3, 0), 0)
    with pytest.raises(BitstreamError, match="clips .* do not fit layout 0 with 3 planes"):
        loopfilter.unpack(bytes([one[0] | 1 << 4]) + one[1:], 3)
    with pytest.raises(BitstreamError, match="do not fit layout 0 with 1 plane"):
        loopfilter.unpack(bytes([1 << 4]) + one[1:13], 1)


def test_fit_sharpens_a_blurred_texture_and_keeps_an_exact_plane():
    rng = np.random.default_rng(0)
    ref = np.clip(512 + 200 * np.sin(np.arange(96)[:, None] * 1.3 + np.arange(128) * 0.9)
                  + rng.normal(0, 20, (96, 128)), 0, 1023).round().astype(np.uint16)
    blurred = ((ref[:-2, 1:-1].astype(int) + ref[2:, 1:-1] + ref[1:-1, :-2] + ref[1:-1, 2:] + 4 * ref[1:-1, 1:-1])
               // 8).astype(np.uint16)
    target = ref[1:-1, 1:-1]
    coeffs, clip = loopfilter.fit(blurred, target)
    assert psnr(target, loopfilter.apply(blurred, coeffs, clip=clip)) > psnr(target, blurred) + 1.0
    assert loopfilter.fit(target, target)[0].sum() == 0 and loopfilter.fit(target, target)[1] == 0   # identity


def test_fit_clips_where_edges_would_smear():
    # hard edges kept sharp next to blurred fine texture (as a decoder leaves them): the linear
    # filter that restores the texture would ring at the edges; clipping the differences lets it
    # sharpen the one and leave the other, so the fit picks a clip, and it beats no clipping
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:130, :130]
    texture = 40 * np.sin(xx * 1.9) * np.sin(yy * 1.7) + rng.normal(0, 4, (130, 130))
    soft = (texture[:-2, 1:-1] + texture[2:, 1:-1] + texture[1:-1, :-2] + texture[1:-1, 2:]
            + 4 * texture[1:-1, 1:-1]) / 8
    edges = np.where((xx // 16 + yy // 16) % 2 == 1, 700, 200)[1:-1, 1:-1]
    target = np.clip(edges + texture[1:-1, 1:-1], 0, 1023).round().astype(np.uint16)
    rec = np.clip(edges + soft, 0, 1023).round().astype(np.uint16)
    coeffs, clip = loopfilter.fit(rec, target)
    assert clip > 0
    clipped = psnr(target, loopfilter.apply(rec, coeffs, clip=clip))
    assert clipped > psnr(target, rec) + 1.0
    # the best the linear filter can do, fitted the same way, is worse
    pad = torch.from_numpy(loopfilter._padded(rec, rec.shape))
    feats = torch.stack([(loopfilter._pair_sum(pad, o, rec.shape) - 2 * pad[3:-3, 3:-3]).reshape(-1)
                         for o in loopfilter.OFFSETS]).double()
    t = torch.from_numpy(target.astype(np.int64) - rec).reshape(-1).double()
    coef = torch.linalg.lstsq(feats @ feats.T, (feats @ t)[:, None]).solution[:, 0]
    linear = np.clip(np.round(coef.numpy() * 128), -128, 127).astype(np.int8)
    assert clipped > psnr(target, loopfilter.apply(rec, linear)) + 0.3


@pytest.fixture(scope="module")
def textured(codec):
    src = source_from_array(sample_crop(96, 128, 120, 200))
    return src, codec.analyze(src)


def test_encoder_sends_the_filter_and_the_decoder_applies_it(codec, textured):
    src, an = textured
    q = QMAX // 2
    assert Bitstream.unpack(codec.encode(codec.analyze(src, loop_filter=False), q).data).filter_data is None
    assert codec.loop_filter and an.loop_filter                                # on by default
    data = codec.encode(an, q).data
    assert abs(codec.estimate_bytes(an, q) - len(data)) <= 8
    recon = codec.reconstruct(an, q)
    bs = Bitstream.unpack(data)
    filter_bytes = loopfilter.block_bytes(3, bs.filter_data[0] & 3)
    assert bs.version == 4 and len(bs.filter_data) == filter_bytes
    dec = codec.decode(data)
    assert np.array_equal(np.round(recon * 1023), np.round(dec.ycbcr * 1023))
    # the same symbols without the filter block: the filter is what makes the difference, and helps
    plain = dataclasses.replace(bs, filter_data=None).pack()
    assert len(plain) == len(data) - 1 - filter_bytes
    assert psnr(src.y10(), dec.y10) > psnr(src.y10(), codec.decode(plain).y10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bf16"])
def test_the_fit_synthesis_works_in_either_precision(codec, textured, dtype, monkeypatch):
    # bf16 where oneDNN runs bf16 convolutions (this machine may or may not), float32 elsewhere
    import copy
    src, _ = textured
    monkeypatch.setattr(codec, "fit_dtype", dtype)
    monkeypatch.setattr(codec, "g_s_fit", copy.deepcopy(codec.net.g_s).to(dtype, memory_format=torch.channels_last))
    an = codec.analyze(src)
    dec = codec.decode(codec.encode(an, QMAX // 2).data)
    plain = codec.decode(codec.encode(codec.analyze(src, loop_filter=False), QMAX // 2).data)
    assert psnr(src.y10(), dec.y10) > psnr(src.y10(), plain.y10)


def test_streams_without_a_filter_are_version_1_and_it_has_no_filter_flag(codec, textured):
    src, _ = textured
    v1 = codec.encode(codec.analyze(src, loop_filter=False), QMAX // 3).data
    assert v1[4] == 1
    body = v1[:4] + b"\x02" + v1[5:-4]                 # the same content labelled version 2 decodes alike
    v2 = body + zlib.crc32(body).to_bytes(4, "little")
    assert np.array_equal(codec.decode(v1).pixels, codec.decode(v2).pixels)
    bad = v1[:5] + bytes([v1[5] | 4]) + v1[6:]       # the filter flag does not exist in version 1
    with pytest.raises(BitstreamError, match="unknown header flags"):
        Bitstream.unpack(bad)


def test_a_filter_block_of_the_wrong_size_is_a_clear_error(codec, textured):
    _, an = textured
    bs = Bitstream.unpack(codec.encode(an, QMAX // 2).data)
    short = dataclasses.replace(bs, filter_data=bs.filter_data[:-1]).pack()
    n = len(bs.filter_data)
    with pytest.raises(BitstreamError, match=f"loop-filter block of {n - 1} bytes, expected {n}"):
        codec.decode(short)


def test_version_2_streams_decode_with_one_filter_per_plane(codec, textured):
    """Version 2 (one filter for each of Y, Cb, Cr) is still read; a version-4 block relabelled
    version 2 has the wrong size."""
    src, an = textured
    bs = Bitstream.unpack(codec.encode(codec.analyze(src, loop_filter=False), QMAX // 2).data)
    plain = codec.decode(bs.pack())
    coeffs = [np.array([[6, -2, 1, 0, 0, 3, -1, 0, 0, 0, 2, 0]], np.int8) * (i + 1) for i in range(3)]
    v2 = Bitstream.unpack(dataclasses.replace(bs, filter_data=loopfilter.pack(coeffs, 0)[1:], version=2).pack())
    assert v2.version == 2
    dec = codec.decode(v2.pack())
    for i in range(3):
        want = loopfilter.apply(np.round(plain.ycbcr[..., i] * 1023).astype(np.uint16), coeffs[i])
        assert np.array_equal(np.round(dec.ycbcr[..., i] * 1023), want)
    v4 = Bitstream.unpack(codec.encode(an, QMAX // 2).data)
    n = len(v4.filter_data)
    with pytest.raises(BitstreamError, match=f"loop-filter block of {n} bytes, expected 36"):   # no layout byte
        codec.decode(dataclasses.replace(v4, version=2).pack())


@pytest.mark.parametrize("method", ["fast", "bisection"])
def test_both_matchers_land_in_tolerance_with_the_filter(codec, textured, method):
    from codec.ratematch import match_rate
    src, _ = textured
    m = match_rate(codec, src, 0.5, method)
    bs = Bitstream.unpack(m.encoded.data)
    assert 0.495 <= m.encoded.bpp <= 0.5 and bs.filter_data is not None
    assert len(bs.filter_data) == loopfilter.block_bytes(3, bs.filter_data[0] & 3)
    off = match_rate(codec, src, 0.5, method, loop_filter=False)     # per call: the codec's default stays
    assert 0.495 <= off.encoded.bpp <= 0.5 and Bitstream.unpack(off.encoded.data).filter_data is None
    assert codec.loop_filter


def test_options_set_the_default_for_analyses_made_in_the_block(codec, textured):
    src, _ = textured
    with codec.options(loop_filter=False):
        assert not codec.analyze(src).loop_filter
        assert codec.analyze(src, loop_filter=True).loop_filter
    assert codec.loop_filter and codec.analyze(src).loop_filter


@pytest.mark.parametrize("method", ["fast", "bisection"])
def test_targets_where_the_layout_changes_are_reached(codec, method):
    """Where a fixed-quality encode switches from one luma filter to four, its file grows by 36
    bytes, more than 1% of it: the matchers keep the target's layout, so a target inside that jump
    is still met within 1% below."""
    from codec.ratematch import match_rate
    src = source_from_array(sample_crop(256, 384, 20, 40))
    an = codec.analyze(src)
    npix = src.width * src.height
    streams = lambda q: len(codec.hyper(an, q).z_data) + len(codec._y_data(codec.symbols(an, q)))  # noqa: E731
    lo, hi = 0, QMAX                 # the last code whose file has one luma filter
    assert streams(lo) < loopfilter.LAYOUT_FROM[0] <= streams(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if streams(mid) < loopfilter.LAYOUT_FROM[0] else (lo, mid)
    below, above = len(codec.encode(an, lo).data), len(codec.encode(an, hi).data)
    assert above - below >= 36 > 0.01 * above + 1
    target = (above - 1) * 8 / npix                      # fixed-quality files miss its 1% band
    m = match_rate(codec, src, target, method)
    assert target * 0.99 <= m.bpp <= target
