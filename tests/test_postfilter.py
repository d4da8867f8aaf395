"""The learned post-filter (models 14, 15 and 17 to 19): an integer network whose float32 sums are exact, applied to
the decoded luma before the loop filter, on the encoder's side (the loop filter is fitted after it)
and the decoder's alike."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from codec.engine import LearnedCodec, decode_bitstream
from codec.entropy.bitstream import Bitstream
from codec.images import source_from_array
from codec.integer.fixedpoint import FLOAT32_LIMIT
from codec.integer.networks import (IntegerPostFilter, ShiftConv, build_integer_postfilter, channel_weight_bits,
                                    shift_conv)
from codec.model.postfilter import GAIN, PostFilter, from_blocks, to_blocks
from codec.model.quality import QMAX


def random_postfilter(seed: int = 0, std: float = 0.1, unshuffle: int = 1, **shape) -> PostFilter:
    torch.manual_seed(seed)
    net = PostFilter(unshuffle=unshuffle, **shape)
    for m in net.convs():
        torch.nn.init.normal_(m.weight, std=std)
    return net


def random_planes(rng, h: int = 40, w: int = 56) -> np.ndarray:
    return rng.integers(0, 1024, (3, h, w)).astype(np.uint16)


def calibration(rng) -> list[torch.Tensor]:
    return [PostFilter.inputs(torch.from_numpy(random_planes(rng).astype(np.float32))[None], torch.tensor([q]))
            for q in (0, QMAX // 2, QMAX)]


def float64_reference(pf: IntegerPostFilter, planes10: np.ndarray, q_code: int) -> np.ndarray:
    """The integer network's definition, summed in float64 (exact for these magnitudes)."""
    x = PostFilter.inputs(torch.from_numpy(planes10.astype(np.float64))[None], torch.tensor([q_code]))
    x = to_blocks(x, pf.unshuffle)
    for layer in pf.layers:
        half = np.where(layer.shift > 0, 2.0 ** (layer.shift - 1), 0.0)
        acc = F.conv2d(x, torch.from_numpy(layer.weight.astype(np.float64)), torch.from_numpy(layer.bias + half),
                       padding=1)
        x = torch.floor(acc * torch.from_numpy(2.0 ** -layer.shift.astype(np.float64)).view(1, -1, 1, 1))
        x = x.clamp(0 if layer.relu else -layer.out_max - 1, layer.out_max)
    x = from_blocks(x, pf.unshuffle, *planes10.shape[1:])
    return np.clip(np.round(planes10[0] + GAIN * pf.s_out * x[0, 0].numpy()), 0, 1023).astype(np.uint16)


@pytest.mark.parametrize("unshuffle,two_pieces,per_channel", [(1, (), False), (2, (), False), (2, (0, 2), False),
                                                              (2, (), True), (2, (1,), True)])
@pytest.mark.parametrize("q_code", [0, 20000, QMAX])
def test_integer_post_filter_equals_its_float64_definition_at_extreme_inputs(q_code, unshuffle, two_pieces, per_channel):
    """Full resolution (models 14, 15), on 2x2 blocks (model 17), with two-piece weights (model
    20) and with each channel's widest weights (model 21), odd sizes included."""
    rng = np.random.default_rng(1)
    pf = build_integer_postfilter(random_postfilter(unshuffle=unshuffle), calibration(rng), two_pieces=two_pieces,
                                  per_channel=per_channel)
    assert all(layer.sum_bound() < FLOAT32_LIMIT for layer in pf.layers)
    assert [i for i, layer in enumerate(pf.layers) if layer.low_bits] == list(two_pieces)
    for planes in (random_planes(rng), np.full((3, 9, 7), 1023, np.uint16), np.zeros((3, 5, 6), np.uint16),
                   np.where(rng.random((3, 17, 13)) < 0.5, 0, 1023).astype(np.uint16)):
        got = pf.luma(planes, q_code)
        assert np.array_equal(got, float64_reference(pf, planes, q_code))
    assert not np.array_equal(pf.luma(planes, q_code), planes[0])     # it does change the picture


@pytest.mark.parametrize("unshuffle", [1, 2])
def test_integer_post_filter_follows_the_float_one_within_a_level(unshuffle):
    rng = np.random.default_rng(2)
    net = random_postfilter(std=0.05, unshuffle=unshuffle)
    pf = build_integer_postfilter(net, calibration(rng))
    planes = random_planes(rng, 41, 57)
    with torch.no_grad():
        ref = net(torch.from_numpy(planes.astype(np.float32))[None], torch.tensor([30000]))[0, 0].numpy()
    diff = pf.luma(planes, 30000).astype(np.int64) - np.clip(np.round(ref), 0, 1023)
    assert np.abs(diff).max() <= 1 and (diff != 0).mean() < 0.05


def block_errors(net: PostFilter, planes: np.ndarray, integer_forms) -> list[float]:
    """Mean |error| of each integer form's 2x2-block output against the float network's, at code 30000."""
    x = to_blocks(PostFilter.inputs(torch.from_numpy(planes.astype(np.float32))[None], torch.tensor([30000])), 2)
    with torch.no_grad():
        ref = net.net(x * 2.0 ** -10)
    errors = []
    for pf in integer_forms:
        y = x.clone()
        for layer in pf.layers:
            y = layer.forward(y)
        errors.append(float((y * pf.s_out - ref).abs().mean()))
    return errors


def test_two_piece_weights_are_wider_and_follow_the_float_network_closer():
    """Model 20's form: 2x2 blocks, 32 channels, where one float32 sum allows 8-9-bit weights."""
    rng = np.random.default_rng(5)
    net = random_postfilter(std=0.05, unshuffle=2, channels=32, layers=5)
    one, two = (build_integer_postfilter(net, calibration(rng), two_pieces=t) for t in ((), range(5)))
    widest = [np.abs(layer.weight).max() for layer in one.layers]
    assert all(np.abs(b.weight).max() > 16 * a for a, b in zip(widest, two.layers))
    planes = random_planes(rng, 41, 57)
    errors = block_errors(net, planes, (one, two))
    assert errors[1] < errors[0] / 2     # 3x smaller here; with a trained network's weights, 1.4 dB at 44 dB
    again = IntegerPostFilter.from_dict(two.to_dict())
    assert [layer.low_bits for layer in again.layers] == [layer.low_bits for layer in two.layers]
    assert np.array_equal(again.luma(planes, 777), two.luma(planes, 777))


def test_per_channel_widths_are_each_channels_widest_and_follow_the_float_network_closer():
    """Model 21's form: each output channel's weights as wide as its own one-piece sums allow.
    Channels whose weights are spread over many taps (a large sum for their largest weight) set
    one width per layer; here half the channels of each layer have one dominant tap."""
    rng = np.random.default_rng(6)
    net = random_postfilter(std=0.05, unshuffle=2, channels=32, layers=5)
    with torch.no_grad():
        for m in net.convs():
            m.weight[::2] *= 0.05
            m.weight[::2, 0, 1, 1] += 0.2
    m = net.convs()[1]                   # each channel's width is the widest whose sums fit
    bits = channel_weight_bits(m, 2.0 ** -7, 2.0 ** -6, 1023)
    assert bits[::2].mean() >= bits[1::2].mean() + 2       # the dominant-tap channels widen
    shift_conv(m, True, 2.0 ** -7, 2.0 ** -6, 1023, 1023, bits)
    for c in np.flatnonzero(bits < 16):
        with pytest.raises(ValueError, match="not exact in float32"):
            shift_conv(m, True, 2.0 ** -7, 2.0 ** -6, 1023, 1023, bits + (np.arange(len(bits)) == c))
    cal = calibration(rng)
    layer_wide, channel_wide, two = (build_integer_postfilter(net, cal, **kw) for kw in
                                     ({}, dict(per_channel=True), dict(two_pieces=range(5))))
    for a, b in zip(layer_wide.layers, channel_wide.layers):
        assert b.low_bits == 0 and b.sum_bound() < FLOAT32_LIMIT
        assert (np.abs(b.weight).max(axis=(1, 2, 3)) >= np.abs(a.weight).max(axis=(1, 2, 3))).all()
    planes = random_planes(rng, 41, 57)
    errors = block_errors(net, planes, (layer_wide, channel_wide, two))
    assert errors[1] < 0.8 * errors[0] and errors[2] < errors[1]    # 0.65x and 0.3x here
    again = IntegerPostFilter.from_dict(channel_wide.to_dict())
    assert np.array_equal(again.luma(planes, 777), channel_wide.luma(planes, 777))


@pytest.mark.parametrize("shift", [7, 9])
def test_two_piece_layer_is_exact_where_its_sums_need_more_than_float32_holds(shift):
    """The full sum w * x here needs 31 bits and hi's alone 23: exact only if lo's sum enters
    floored (`ShiftConv`), not as a fraction float32 would round."""
    w = (8000 << 7) + 37
    layer = ShiftConv(np.array([[[[w]]]]), np.array([5]), np.array([shift]), False, 1023, 1 << 24, low_bits=7)
    x = torch.tensor([[[[1023.0, 1021.0, -1023.0, 3.0]]]])
    exact = np.floor_divide(w * np.array([1023, 1021, -1023, 3]) + 5 + (1 << (shift - 1)), 1 << shift)
    assert np.array_equal(layer.forward(x)[0, 0, 0].numpy().astype(np.int64), exact)
    with pytest.raises(ValueError, match="shift below"):
        ShiftConv(np.array([[[[w]]]]), np.array([5]), np.array([6]), False, 1023, 1 << 24, low_bits=7)


def test_layers_too_wide_for_float32_are_refused_and_the_builder_narrows_the_weights():
    net = random_postfilter(std=3.0)       # large weights: 16-bit ones would overflow 2^24
    first = net.net[0]
    with pytest.raises(ValueError, match="not exact in float32"):
        shift_conv(first, True, 2.0 ** -10, 2.0 ** -4, 1023, 1023, 16)
    pf = build_integer_postfilter(net, calibration(np.random.default_rng(3)))
    assert np.abs(pf.layers[0].weight).max() < 1 << 14
    assert all(layer.sum_bound() < FLOAT32_LIMIT for layer in pf.layers)


@pytest.mark.parametrize("unshuffle", [1, 2])
def test_untrained_post_filter_changes_nothing_and_round_trips_through_its_dict(unshuffle):
    rng = np.random.default_rng(4)
    planes = random_planes(rng)
    zero = build_integer_postfilter(PostFilter(unshuffle=unshuffle), calibration(rng))
    assert np.array_equal(zero.luma(planes, 1234), planes[0])
    pf = build_integer_postfilter(random_postfilter(unshuffle=unshuffle), calibration(rng))
    again = IntegerPostFilter.from_dict(pf.to_dict())
    assert isinstance(again.layers[0], ShiftConv) and again.s_out == pf.s_out
    assert again.unshuffle == unshuffle and len(again.layers) == len(pf.layers)
    assert np.array_equal(again.luma(planes, 777), pf.luma(planes, 777))


@pytest.fixture(scope="module")
def v14():
    return LearnedCodec.load(14)


@pytest.fixture(scope="module", params=[14, 15])
def with_postfilter(request):
    """Model 14 (post-filter trained at codes up to 44000, run up to 50000) and model 15 (trained
    at every rate, on more and half-size photos, run at every code)."""
    return LearnedCodec.load(request.param)


def test_post_filter_models_are_model_13_plus_the_post_filter(with_postfilter, small_rgb):
    """The symbols, their coding and the file size are model 13's; the decoded luma passes the
    post-filter before the loop filter, which the encoder fits on the post-filtered picture."""
    pf, v13 = with_postfilter, LearnedCodec.load(13)
    src = source_from_array(small_rgb)
    q = QMAX // 3
    an13, an = v13.analyze(src, loop_filter=False), pf.analyze(src, loop_filter=False)
    assert np.array_equal(pf.symbols(an, q).s, v13.symbols(an13, q).s)
    enc13, enc = v13.encode(an13, q), pf.encode(an, q)
    assert len(enc.data) == len(enc13.data)
    plain, filtered = decode_bitstream(enc13.data).ycbcr, decode_bitstream(enc.data).ycbcr
    planes10 = np.stack([np.clip(np.round(p * 1023), 0, 1023) for p in plain.transpose(2, 0, 1)]).astype(np.uint16)
    assert np.array_equal(np.round(filtered[..., 0] * 1023), pf.postfilter_for(q)[1].luma(planes10, q))
    assert np.array_equal(filtered[..., 1:], plain[..., 1:])
    # with the loop filter: the decoder's picture is the encoder's
    an = pf.analyze(src)
    enc = pf.encode(an, q)
    assert np.array_equal(decode_bitstream(enc.data).ycbcr, pf.reconstruct(an, q))


def test_post_filter_models_decode_closer_to_the_source_than_model_13(with_postfilter):
    """On a crop of the bundled sample (not a training photo), the post-filter lowers the luma error
    of the loop-filtered decode at a low and a middle quality (and model 15 at the highest too)."""
    from tests.conftest import sample_crop
    v13 = LearnedCodec.load(13)
    src = source_from_array(sample_crop(128, 192))
    for q in (QMAX // 8, QMAX // 2) + ((QMAX,) if with_postfilter.postfilter_max_code == QMAX else ()):
        errors = []
        for codec in (v13, with_postfilter):
            an = codec.analyze(src)
            y = decode_bitstream(codec.encode(an, q).data).y10.astype(np.float64)
            errors.append(((y - an.source10[0]) ** 2).mean())
        assert errors[1] < errors[0], (q, errors)


def test_model_14_above_its_highest_post_filter_code_decodes_as_model_13(v14, small_rgb):
    """Above the codes it was trained at the post-filter lowered PSNR-Y on held-out training photos,
    so it runs up to the code the bundle names (50000): beyond, model 14's pixels are model 13's."""
    v13 = LearnedCodec.load(13)
    assert v14.postfilter_max_code == 50000 and v13.postfilter_max_code < 0
    src = source_from_array(small_rgb)
    for q, same in ((v14.postfilter_max_code + 1, True), (v14.postfilter_max_code, False)):
        pixels = [decode_bitstream(c.encode(c.analyze(src), q).data).pixels for c in (v13, v14)]
        assert np.array_equal(*pixels) == same, q


def test_model_15_runs_model_14s_post_filter_up_to_32000_and_its_own_above(v14, small_rgb):
    """Model 15 keeps model 14's post-filter where it is the better one on the held-out photos
    (codes up to 32000) and runs one trained at every rate above, up to the highest code."""
    v15 = LearnedCodec.load(15)
    assert [m for m, _, _ in v15.postfilters] == [32000, QMAX]
    src = source_from_array(small_rgb)
    for q, same in ((32000, True), (32001, False), (QMAX, False)):
        pixels = [decode_bitstream(c.encode(c.analyze(src), q).data).pixels for c in (v14, v15)]
        assert np.array_equal(*pixels) == same, q


def test_a_post_filter_grown_by_identity_layers_starts_as_the_one_it_grew_from():
    """training/postfilter.py --init (model 19: model 17's network and a fifth layer): the grown
    network gives the saved one's output exactly, and refuses a network it cannot contain."""
    from training.postfilter import grow_from
    old = random_postfilter(seed=3, unshuffle=2)
    torch.nn.init.normal_(old.net[-1].weight, std=0.1)    # a last layer that does something
    grown = PostFilter(channels=16, layers=5, unshuffle=2)
    grow_from(grown, old)
    x = torch.from_numpy(random_planes(np.random.default_rng(0), 41, 57).astype(np.float32))[None]
    q = torch.tensor([20000.0])
    with torch.no_grad():
        assert not torch.equal(old(x, q), x[:, :1])
        assert torch.equal(grown(x, q), old(x, q))
    with pytest.raises(SystemExit, match="other channels"):
        grow_from(PostFilter(channels=32, layers=5, unshuffle=2), old)


def test_on_grid_training_rounds_to_the_per_channel_integer_weights_and_passes_gradients_through():
    """training/postfilter.py --on-grid (model 21's high-code network): the weights it trains on are
    exactly the integer weights `build_integer_postfilter(per_channel=True)` exports times their
    steps, and each weight's gradient is the rounded weight's (straight through)."""
    from training.postfilter import on_grid, weight_grid
    rng = np.random.default_rng(7)
    net = random_postfilter(seed=4, std=0.05, unshuffle=2, channels=32, layers=4)
    cal = calibration(rng)
    steps = weight_grid(net, cal)
    with torch.no_grad():
        for name, w in on_grid(net, steps).items():
            assert not torch.equal(w, net.get_parameter(name))
            net.get_parameter(name).copy_(w)
    integer = build_integer_postfilter(net, cal, per_channel=True)
    for m, layer, step in zip(net.convs(), integer.layers, steps.values()):
        assert torch.equal(torch.from_numpy(layer.weight).float() * step, m.weight.detach())
    x = torch.from_numpy(random_planes(rng, 24, 32).astype(np.float32))[None]
    q = torch.tensor([30000.0])
    torch.func.functional_call(net, on_grid(net, steps), (x, q)).square().mean().backward()
    through = [m.weight.grad.clone() for m in net.convs()]
    net.zero_grad()
    net(x, q).square().mean().backward()
    assert all(torch.equal(a, m.weight.grad) for a, m in zip(through, net.convs()))


def same_files_other_pixels(old_id: int, new_id: int, codes) -> tuple[dict, dict]:
    """Encode a crop of the bundled sample with two models that send the same latents (checked,
    byte for byte) at each code: {code: [luma squared error of old, of new]}, {code: same pixels}."""
    from tests.conftest import sample_crop
    old, new = LearnedCodec.load(old_id), LearnedCodec.load(new_id)
    src = source_from_array(sample_crop(128, 192))
    source_luma = old.analyze(src).source10[0]
    errors, same = {}, {}
    for q in codes:
        encs = [c.encode(c.analyze(src), q) for c in (old, new)]
        streams = [Bitstream.unpack(e.data) for e in encs]
        assert [(b.z_data, b.y_data) for b in streams] == [(streams[0].z_data, streams[0].y_data)] * 2
        ys = [decode_bitstream(e.data).y10.astype(np.float64) for e in encs]
        errors[q] = [((y - source_luma) ** 2).mean() for y in ys]
        same[q] = np.array_equal(*ys)
    return errors, same


def test_model_17_is_model_16_with_a_2x2_block_post_filter_up_to_36000():
    """Model 17 sends model 16's latents byte for byte; up to code 36000 a post-filter on 2x2 pixel
    blocks replaces models 14's and 15's (lower luma error on a crop of the bundled sample at low
    and middle codes; at 36000 it is about even with model 15's on the held-out photos), above it
    both run model 15's, so the pixels are model 16's."""
    assert [(m, i.unshuffle) for m, _, i in LearnedCodec.load(17).postfilters] == [(36000, 2), (QMAX, 1)]
    errors, same = same_files_other_pixels(16, 17, (8000, 20000, 28000, 36000, 36001))
    assert same == {8000: False, 20000: False, 28000: False, 36000: False, 36001: True}
    assert all(errors[q][1] < errors[q][0] for q in (8000, 20000, 28000)), errors


def test_model_18_is_model_17_with_a_2x2_block_post_filter_above_36000_too():
    """Model 18 sends model 17's files and decodes them to model 17's pixels up to code 36000;
    above it a post-filter on 2x2 blocks trained at codes 36000-65535 replaces model 15's and
    lowers the luma error on a crop of the bundled sample."""
    assert [(m, i.unshuffle) for m, _, i in LearnedCodec.load(18).postfilters] == [(36000, 2), (QMAX, 2)]
    errors, same = same_files_other_pixels(17, 18, (36000, 36001, 48000, 60000))
    assert same == {36000: True, 36001: False, 48000: False, 60000: False}
    assert all(errors[q][1] < errors[q][0] for q in (48000, 60000)), errors


def test_model_19_is_model_18_with_a_5_layer_post_filter_up_to_36000():
    """Model 19 sends model 18's files; up to code 36000 a 5-layer post-filter on 2x2 blocks
    (model 17's grown by one layer and trained on) lowers the luma error on a crop of the bundled
    sample, above it the pixels are model 18's."""
    assert ([(m, i.unshuffle, len(i.layers)) for m, _, i in LearnedCodec.load(19).postfilters]
            == [(36000, 2, 5), (QMAX, 2, 4)])
    errors, same = same_files_other_pixels(18, 19, (8000, 20000, 28000, 36001))
    assert same == {8000: False, 20000: False, 28000: False, 36001: True}
    assert all(errors[q][1] < errors[q][0] for q in (8000, 20000, 28000)), errors


def test_model_20_is_model_19_with_a_5_layer_post_filter_above_36000_and_two_piece_weights():
    """Model 20 sends model 19's files; above code 36000 a 5-layer post-filter on 2x2 blocks (model
    18's grown by one layer and trained on) runs, and both post-filters' integer weights come in two
    pieces (`ShiftConv`), so its pixels differ at every code, with a lower luma error above 36000 on
    a crop of the bundled sample."""
    v19, v20 = LearnedCodec.load(19), LearnedCodec.load(20)
    assert ([(m, i.unshuffle, [layer.low_bits > 0 for layer in i.layers]) for m, _, i in v20.postfilters]
            == [(36000, 2, [True] * 5), (QMAX, 2, [True] * 5)])
    low19, low20 = v19.postfilters[0][1].state_dict(), v20.postfilters[0][1].state_dict()
    assert all(torch.equal(low19[k], low20[k]) for k in low19)      # model 19's float network below 36000
    errors, same = same_files_other_pixels(19, 20, (20000, 44000, 56000))
    assert same == {20000: False, 44000: False, 56000: False}
    assert all(errors[q][1] < errors[q][0] for q in (44000, 56000)), errors


def test_model_21_is_model_20_with_6_layer_post_filters_in_one_piece_as_wide_as_each_channel_allows():
    """Model 21 sends model 20's files; both post-filters have 6 layers (model 20's grown by one and
    trained on, the high-code one on the grid of its integer form), their integer weights in one
    piece again, each output channel's as wide as its own float32 sums allow, so a layer's channels
    differ in width; the pixels differ at every code, with a lower luma error on a crop of the
    bundled sample."""
    v21 = LearnedCodec.load(21)
    assert ([(m, i.unshuffle, len(i.layers), sum(layer.low_bits for layer in i.layers)) for m, _, i in v21.postfilters]
            == [(36000, 2, 6, 0), (QMAX, 2, 6, 0)])
    for _, _, integer in v21.postfilters:
        widths = [np.ceil(np.log2(np.abs(layer.weight).max(axis=(1, 2, 3)) + 1)) + 1 for layer in integer.layers]
        assert all(w.max() <= 16 for w in widths) and all(len(set(w)) > 1 for w in widths[:-1])
    errors, same = same_files_other_pixels(20, 21, (8000, 20000, 32000, 44000, 56000))
    assert not any(same.values())
    assert all(new < old for old, new in errors.values()), errors


def test_model_22_is_model_21_with_a_7_layer_post_filter_up_to_36000():
    """Model 22 sends model 21's files; up to code 36000 a 7-layer post-filter (model 21's grown by
    one layer and trained on its integer grid) lowers the luma error on a crop of the bundled
    sample, above it the pixels are model 21's."""
    assert ([(m, i.unshuffle, len(i.layers), sum(layer.low_bits for layer in i.layers))
             for m, _, i in LearnedCodec.load(22).postfilters] == [(36000, 2, 7, 0), (QMAX, 2, 6, 0)])
    errors, same = same_files_other_pixels(21, 22, (8000, 20000, 32000, 36001))
    assert same == {8000: False, 20000: False, 32000: False, 36001: True}
    assert all(errors[q][1] < errors[q][0] for q in (8000, 20000, 32000)), errors
