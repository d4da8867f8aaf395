import numpy as np
import pytest
import torch
from PIL import Image

from codec.engine import LearnedCodec, anchor_cells, decode_bitstream, latent_grid
from codec.errors import BitlensError
from codec.images import load_image, source_from_array
from codec.metrics import psnr
from codec.model.quality import QMAX

from .conftest import sample_crop


@pytest.mark.parametrize("h,w", [(72, 100), (37, 53), (1, 1), (65, 129)])
def test_round_trip_keeps_size(codec, h, w):
    src = source_from_array(sample_crop(h, w))
    an = codec.analyze(src)
    enc = codec.encode(an, QMAX // 2)
    dec = codec.decode(enc.data)
    assert dec.pixels.shape == (h, w, 3)
    # the decoder reproduces exactly what the encoder predicted
    assert np.array_equal(dec.ycbcr, codec.reconstruct(an, QMAX // 2))


def test_rate_and_quality_increase_with_quality_code(codec, small_rgb):
    src = source_from_array(small_rgb)
    an = codec.analyze(src)
    sizes, psnrs = [], []
    for q in (0, QMAX // 3, 2 * QMAX // 3, QMAX):
        enc = codec.encode(an, q)
        sizes.append(len(enc.data))
        psnrs.append(psnr(src.y10(), codec.decode(enc.data).y10))
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    assert psnrs[-1] > psnrs[0] + 3


def test_rdoq_takes_single_steps_toward_the_mean_that_save_bits(codec, small_rgb, monkeypatch):
    an = codec.analyze(source_from_array(small_rgb))
    q = QMAX // 2
    sy = codec.symbols(an, q)
    rounded = np.round((an.y - sy.mu) / sy.delta)   # against the mean each symbol was coded with
    changed = sy.s != rounded
    anchors = anchor_cells(an.grid)
    assert changed[:, anchors].any() and changed[:, ~anchors].any()   # both halves of the checkerboard
    assert np.array_equal(sy.s[changed], rounded[changed] - np.sign(rounded[changed]))  # one step nearer 0
    with_rdoq = codec.estimate_bytes(an, q)
    monkeypatch.setattr(codec, "rdoq", False)
    first = codec._groups(codec.slices)[0]   # later groups' means (with slices) follow the symbols before them
    assert np.array_equal(codec.symbols(an, q).s[first][:, anchors], rounded[first][:, anchors])
    assert with_rdoq < codec.estimate_bytes(an, q)



def test_rdoq_weighs_each_channel_by_its_own_kappa(codec):
    from codec.entropy.rdoq import rdo_round
    gen = np.random.default_rng(0)
    v = gen.normal(0, 2, (3, 400))
    rows = np.full(v.shape, 20)
    free, exact = rdo_round(v, rows, codec.y_table, 0.0), np.round(v).astype(np.int64)
    mixed = rdo_round(v, rows, codec.y_table, np.array([[0.0], [1e9], [32.0]]))
    assert np.array_equal(mixed[0], free[0]) and np.array_equal(mixed[1], exact[1])
    assert np.array_equal(mixed[2], rdo_round(v, rows, codec.y_table, 32.0)[2])
    assert (free != exact).any()


def test_default_model_rdoq_uses_its_measured_channel_weights_with_the_loop_filter(codec, small_rgb, monkeypatch):
    # training/channel_gains.py's weights spread over a factor of about 20 and change the symbols of
    # files with the loop filter; files without it keep one constant (the weights lost there)
    assert codec.rdoq_kappa.max() / codec.rdoq_kappa.min() > 10
    src = source_from_array(small_rgb)
    filtered, unfiltered = codec.analyze(src, loop_filter=True), codec.analyze(src, loop_filter=False)
    weighted, plain = codec.symbols(filtered, QMAX // 2).s, codec.symbols(unfiltered, QMAX // 2).s
    monkeypatch.setattr(codec, "rdoq_kappa", np.full_like(codec.rdoq_kappa, 32.0))
    filtered.last_symbols = unfiltered.last_symbols = None
    assert not np.array_equal(weighted, codec.symbols(filtered, QMAX // 2).s)
    monkeypatch.setattr(codec, "rdoq_kappa", np.zeros_like(codec.rdoq_kappa))
    unfiltered.last_symbols = None
    assert np.array_equal(plain, codec.symbols(unfiltered, QMAX // 2).s)

def test_context_model_codes_the_second_half_knowing_the_first(codec, small_rgb):
    assert codec.context is not None, "the default model has a checkerboard context model"
    an = codec.analyze(source_from_array(small_rgb))
    q = QMAX // 2
    sy = codec.symbols(an, q)
    hy = codec.hyper(an, q)
    _, hyper_rows, log2_ratio = codec._steps_and_rows(hy.log2_sigma, q, sy.kmap)
    anchors = anchor_cells(an.grid)
    # anchors (of the first channel group, with channel slices): the hyperprior's means and
    # scales; the other half: the context network's corrections
    first = codec._groups(codec.slices)[0]
    assert np.array_equal(sy.rows[first][:, anchors], hyper_rows[first][:, anchors])
    assert np.array_equal(sy.mu[first][:, anchors], hy.mu[first][:, anchors])
    assert (sy.rows[:, ~anchors] != hyper_rows[:, ~anchors]).mean() > 0.05
    assert (sy.mu[:, ~anchors] != hy.mu[:, ~anchors]).mean() > 0.05
    # and those corrections come from the anchors: change them and the rows move
    same = codec._code_y(given(sy, lambda cells, ch: 0), hy.mu, hyper_rows, log2_ratio, sy.delta)
    moved = codec._code_y(given(sy, lambda cells, ch: int(cells[0, 0])), hy.mu, hyper_rows, log2_ratio, sy.delta)
    assert np.array_equal(same[2], sy.rows) and np.array_equal(same[0], sy.s)
    assert np.array_equal(moved[2][first][:, anchors], hyper_rows[first][:, anchors])
    assert (moved[2][:, ~anchors] != sy.rows[:, ~anchors]).any()


def given(sy, plus):
    """A `code` function for `_code_y` that returns the symbols of `sy` plus `plus(cells, channels)`."""
    return lambda cells, ch, mu, rows: sy.s[ch][:, cells] + plus(cells, ch)


def test_channel_slices_code_each_anchor_group_knowing_the_groups_before(small_rgb):
    """Model 11: the anchors' channels in four groups; the first coded with the hyperprior's means
    and scales, each later one with its slice network's corrections, which follow the symbols of
    the groups before it. Encoder and decoder agree, and the size estimate is exact."""
    codec = LearnedCodec.load(11)
    src = source_from_array(small_rgb)
    an = codec.analyze(src)
    q = QMAX // 2
    kmap = np.zeros(an.grid, dtype=int)
    kmap[:, : an.grid[1] // 2] = -3
    sy, hy = codec.symbols(an, q, kmap), codec.hyper(an, q)
    _, hyper_rows, log2_ratio = codec._steps_and_rows(hy.log2_sigma, q, kmap)
    anchors = anchor_cells(an.grid)
    groups = codec._groups(codec.slices)
    assert len(groups) == 4
    assert np.array_equal(sy.mu[groups[0]][:, anchors], hy.mu[groups[0]][:, anchors])
    assert np.array_equal(sy.rows[groups[0]][:, anchors], hyper_rows[groups[0]][:, anchors])
    for ch in groups[1:]:
        assert (sy.mu[ch][:, anchors] != hy.mu[ch][:, anchors]).mean() > 0.5

    same = codec._code_y(given(sy, lambda cells, ch: 0), hy.mu, hyper_rows, log2_ratio, sy.delta)
    moved = codec._code_y(given(sy, lambda cells, ch: int(cells[0, 0] and ch == groups[0])),
                          hy.mu, hyper_rows, log2_ratio, sy.delta)
    assert np.array_equal(same[2], sy.rows) and np.array_equal(same[3], sy.log2_ratio)
    assert (moved[2][groups[1]][:, anchors] != sy.rows[groups[1]][:, anchors]).any()

    enc = codec.encode(an, q, kmap)
    assert len(enc.data) == codec.estimate_bytes(an, q, kmap)
    assert np.array_equal(decode_bitstream(enc.data).ycbcr, codec.reconstruct(an, q, kmap))


def test_non_anchor_slices_code_each_group_knowing_the_groups_before(small_rgb):
    """Model 12: after the checkerboard network's correction, the non-anchors' channels are coded
    in four groups too. The anchors and the first non-anchor group are coded as model 11 codes them;
    each later group's means and scales are corrected again from the symbols before it. Encoder and
    decoder agree, and the size estimate is exact."""
    v11, v12 = LearnedCodec.load(11), LearnedCodec.load(12)
    src = source_from_array(small_rgb)
    q = QMAX // 2
    an11, an = v11.analyze(src, loop_filter=False), v12.analyze(src, loop_filter=False)   # one RDOQ constant
    kmap = np.zeros(an.grid, dtype=int)
    kmap[:, : an.grid[1] // 2] = -3
    sy11, sy = v11.symbols(an11, q, kmap), v12.symbols(an, q, kmap)
    anchors = anchor_cells(an.grid)
    later = ~anchors
    groups = v12._groups(v12.rest_slices)
    assert len(groups) == 4
    assert np.array_equal(sy.s[:, anchors], sy11.s[:, anchors])
    first = groups[0]
    for a, b in ((sy.s, sy11.s), (sy.mu, sy11.mu), (sy.rows, sy11.rows)):
        assert np.array_equal(a[first][:, later], b[first][:, later])
    for ch in groups[1:]:
        assert (sy.mu[ch][:, later] != sy11.mu[ch][:, later]).mean() > 0.5

    hy = v12.hyper(an, q)
    _, hyper_rows, log2_ratio = v12._steps_and_rows(hy.log2_sigma, q, kmap)
    moved = v12._code_y(given(sy, lambda cells, ch: int(not cells[0, 0] and ch == first)),
                        hy.mu, hyper_rows, log2_ratio, sy.delta)
    assert np.array_equal(moved[2][:, anchors], sy.rows[:, anchors])
    assert (moved[2][groups[1]][:, later] != sy.rows[groups[1]][:, later]).any()

    enc = v12.encode(an, q, kmap)
    assert len(enc.data) == v12.estimate_bytes(an, q, kmap)
    assert np.array_equal(decode_bitstream(enc.data).ycbcr, v12.reconstruct(an, q, kmap))


def test_latent_residual_prediction_moves_the_reconstruction_not_the_file(small_rgb):
    """Model 13: model 12 plus latent residual prediction. The symbols, their coding and the size
    are model 12's; each latent is put back at mu + (s + p) * delta, p the integer network's
    prediction from every symbol and the scales they were coded with, on the encoder's side (the
    loop filter is fitted on it) and the decoder's alike."""
    v12, v13 = LearnedCodec.load(12), LearnedCodec.load(13)
    src = source_from_array(small_rgb)
    q = QMAX // 2
    an12, an = v12.analyze(src), v13.analyze(src)
    kmap = np.zeros(an.grid, dtype=int)
    kmap[:, : an.grid[1] // 2] = -3
    sy12, sy = v12.symbols(an12, q, kmap), v13.symbols(an, q, kmap)
    for a, b in ((sy.s, sy12.s), (sy.rows, sy12.rows), (sy.mu, sy12.mu)):
        assert np.array_equal(a, b)
    p = v13.residual.residual(sy.s, sy.log2_ratio)
    assert np.abs(p).max() > 0.05
    assert np.array_equal(v13.y_hat(sy), np.clip(sy.mu + (sy.s + p) * sy.delta, -1e4, 1e4))
    assert np.array_equal(v12.y_hat(sy12), np.clip(sy.mu + sy.s * sy.delta, -1e4, 1e4))
    assert v13.estimate_bytes(an, q, kmap) == v12.estimate_bytes(an12, q, kmap)
    enc = v13.encode(an, q, kmap)
    assert len(enc.data) == v13.estimate_bytes(an, q, kmap)
    assert np.array_equal(decode_bitstream(enc.data).ycbcr, v13.reconstruct(an, q, kmap))


def test_size_estimate_equals_real_size_across_qualities_and_maps(codec, small_rgb):
    src = source_from_array(small_rgb)
    an = codec.analyze(src)
    rng = np.random.default_rng(0)
    grid = latent_grid(src.height, src.width)
    maps = [None, np.full(grid, -3), rng.integers(-8, 9, grid)]
    for kmap in maps:
        for q in (0, 9000, 30000, 51000, QMAX):
            real = len(codec.encode(an, q, kmap).data)
            assert abs(codec.estimate_bytes(an, q, kmap) - real) <= 4, (q, real)


def test_map_round_trip_and_negative_offsets_spend_more_bits(codec, small_rgb):
    src = source_from_array(small_rgb)
    an = codec.analyze(src)
    grid = latent_grid(src.height, src.width)
    kmap = np.zeros(grid, dtype=int)
    kmap[:, : grid[1] // 2] = -4
    flat = codec.encode(an, QMAX // 2)
    mapped = codec.encode(an, QMAX // 2, kmap)
    assert len(mapped.data) > len(flat.data)
    dec = codec.decode(mapped.data)
    assert np.array_equal(dec.ycbcr, codec.reconstruct(an, QMAX // 2, kmap))
    with pytest.raises(BitlensError, match="latent grid"):
        codec.encode(an, 0, np.zeros((1, 1)))


def test_grayscale_decodes_as_grayscale(codec, tmp_path, small_rgb):
    p = tmp_path / "g.png"
    Image.fromarray(small_rgb[..., 1]).save(p)
    src = load_image(p)
    assert src.grayscale
    dec = codec.decode(codec.encode(codec.analyze(src), QMAX // 2).data)
    assert dec.pixels.shape == small_rgb.shape[:2] and dec.header.grayscale


def test_rgba_drops_alpha_with_warning(tmp_path, small_rgb):
    p = tmp_path / "a.png"
    Image.fromarray(np.dstack([small_rgb, np.full(small_rgb.shape[:2], 128, np.uint8)])).save(p)
    src = load_image(p)
    assert not src.grayscale and any("alpha" in w for w in src.warnings)
    assert np.allclose(src.rgb * 255, small_rgb)


def test_16bit_grayscale_is_read_at_full_precision(tmp_path):
    a = (np.arange(40 * 30, dtype=np.uint16).reshape(30, 40) * 50)
    p = tmp_path / "g16.png"
    Image.fromarray(a).save(p)
    src = load_image(p)
    assert src.grayscale and src.bit_depth == 16
    assert np.allclose(src.rgb[..., 0], a / 65535)


def test_bad_images_are_one_line_errors(tmp_path):
    t = tmp_path / "notes.png"
    t.write_text("hello, not an image")
    with pytest.raises(BitlensError, match="not a readable image"):
        load_image(t)
    with pytest.raises(BitlensError, match="no such file"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(BitlensError, match="directory"):
        load_image(tmp_path)


def test_luma_step_variant_is_its_base_with_coarser_chroma_steps(small_rgb):
    """Model 6 is stored as model 5's id plus the entries that differ: same weights, a per-channel
    step offset (never negative, large on a few chroma channels), the hyper-analysis still
    conditioned on the trained steps; its bitstreams carry id 6 and decode."""
    import torch

    from codec.model.quality import Q16
    from codec.model.zoo import load_bundle
    b5, b6 = load_bundle(5), load_bundle(6)
    assert b6["model_id"] == 6 and b6["base_model_id"] == 5
    assert torch.equal(b6["state_dict"]["g_s.0.weight"], b5["state_dict"]["g_s.0.weight"])
    assert torch.equal(b6["hyper_log2_steps_q16"], b5["log2_steps_q16"])
    offsets = b6["log2_steps_q16"] - b5["log2_steps_q16"]
    assert torch.equal(offsets, offsets[:1].expand_as(offsets))     # one offset per channel
    assert offsets.min() >= 0 and (offsets > Q16 // 2).sum() >= 2
    assert b6["rate_model"] != b5["rate_model"]      # each model its own matcher rate model
    src = source_from_array(small_rgb)
    codec = LearnedCodec.load(6)
    enc = codec.encode(codec.analyze(src), 30000)
    dec = decode_bitstream(enc.data)
    assert dec.header.model_id == 6 and dec.pixels.shape == small_rgb.shape
    assert psnr(src.y10(), dec.y10, 1023) > 25


def test_model_16_codes_the_hyper_latent_in_bins_of_1_25():
    """Model 16: model 15's networks with z coded as round(z / 1.25). The integer hyper-synthesis
    reads 5 x the symbol at scale 2^-2, which must be the float network's input z * 1.25 (a wrong
    factor moves the means by whole steps); the z stream is smaller than model 15's, the size
    estimate exact and the decoder's reconstruction the encoder's."""
    v15, v16 = LearnedCodec.load(15), LearnedCodec.load(16)
    assert (v15.z_step, v16.z_step, v16.integer.z_factor) == (1.0, 1.25, 5)
    src = source_from_array(sample_crop(192, 256))
    an15, an16 = v15.analyze(src), v16.analyze(src)
    q = 20000
    hy15, hy16 = v15.hyper(an15, q), v16.hyper(an16, q)
    assert (np.abs(hy16.z) <= np.abs(hy15.z)).all()
    assert len(hy16.z_data) < 0.7 * len(hy15.z_data)
    with torch.inference_mode():
        mu, log2_sigma = (t[0].double().numpy() for t in v16.net.entropy_parameters(torch.from_numpy(v16.z_hat(hy16.z))[None]))
    assert np.abs(hy16.mu - mu).max() < 0.05 and np.abs(hy16.log2_sigma - log2_sigma).max() < 0.05
    enc = v16.encode(an16, q)
    assert len(enc.data) == v16.estimate_bytes(an16, q)
    assert np.array_equal(decode_bitstream(enc.data).ycbcr, v16.reconstruct(an16, q))
