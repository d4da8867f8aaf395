import numpy as np
import pytest

from codec.engine import latent_grid
from codec.errors import BitlensError
from codec.images import source_from_array
from codec.model.quality import QMAX
from codec.ratematch import FLOOR_PROBES, filter_layout, match_rate, rate_floor

from .conftest import sample_crop


@pytest.fixture(scope="module")
def src():
    # large enough that a 1% band at the low end holds a few 32-bit words of the range coder
    return source_from_array(sample_crop(256, 384))


@pytest.fixture(scope="module")
def reachable(codec, src):
    an = codec.analyze(src)
    n = src.width * src.height
    return [codec.estimate_bytes(an, q) * 8 / n for q in (0, QMAX)]


@pytest.mark.parametrize("method", ["fast", "bisection"])
@pytest.mark.parametrize("frac", [0.15, 0.5, 0.85])
def test_lands_within_tolerance_never_above(codec, src, reachable, method, frac):
    lo, hi = reachable
    target = float(np.exp(np.log(lo) + frac * (np.log(hi) - np.log(lo))))
    r = match_rate(codec, src, target, method=method)
    assert target * 0.99 <= r.bpp <= target, (r.bpp, target, r.trace)
    assert r.iterations == len(r.trace) >= 1
    assert len(r.encoded.data) * 8 / (src.width * src.height) == r.bpp


def test_fast_needs_far_fewer_trials_than_bisection(codec, src, reachable):
    target = (reachable[0] * reachable[1]) ** 0.5
    fast = match_rate(codec, src, target, "fast")
    slow = match_rate(codec, src, target, "bisection")
    assert fast.iterations < slow.iterations


def test_rematch_on_an_analysis_starts_from_its_earlier_estimates(codec, src, reachable):
    # the GUI's case: the engineer moves the target on an open image
    lo, hi = reachable
    an = codec.analyze(src)
    targets = [float(np.exp(np.log(lo) + f * (np.log(hi) - np.log(lo)))) for f in (0.4, 0.55, 0.45, 0.5)]
    first = match_rate(codec, src, targets[0], analysis=an)
    later = [match_rate(codec, src, t, analysis=an) for t in targets[1:]]
    for t, r in zip(targets, [first] + later):
        assert t * 0.99 <= r.bpp <= t, (r.bpp, t, r.trace)
    # 0.45 lies between two earlier matches: bracketed before its first trial, which falls between
    # their codes (regula falsi, not the prior's guess)
    assert first.encoded.q_code < later[1].trace[0][0] < later[0].encoded.q_code
    assert later[1].iterations <= 3
    fresh = [match_rate(codec, src, t) for t in targets[1:]]
    assert sum(r.iterations for r in later) < sum(r.iterations for r in fresh)
    # a target matched before is met by its remembered estimate: one trial, no new estimate
    known = codec.known_codes(an)
    again = match_rate(codec, src, targets[0], analysis=an)
    assert again.iterations == 1 and codec.known_codes(an) == known
    assert again.encoded.data == first.encoded.data



@pytest.mark.parametrize("known", [False, True], ids=["cold", "known-estimate"])
def test_a_coder_that_misses_its_estimate_is_corrected(codec, src, monkeypatch, known):
    # the real file may be a few bytes off the estimate: an accepted estimate whose encode lands
    # above the target must not end the search, even when it was remembered from an earlier estimate
    an = codec.analyze(src)
    n = src.width * src.height
    target = codec.estimate_bytes(an, QMAX // 2) * 8 / n     # met exactly by this code's estimate
    if not known:
        an = codec.analyze(src)
    real_encode = codec.encode

    def encode_missing(*args, **kwargs):
        enc = real_encode(*args, **kwargs)
        enc.data += bytes(6)   # six bytes more than estimated, for every quality
        return enc

    monkeypatch.setattr(codec, "encode", encode_missing)
    r = match_rate(codec, src, target, analysis=an)
    assert target * 0.99 <= r.bpp <= target, (r.bpp, target, r.trace)

def test_remembered_estimates_equal_fresh_ones_for_every_layout(codec, src):
    an = codec.analyze(src)
    for q in (QMAX // 3, 2 * QMAX // 3):
        for layout in (2, 0, 1):          # the first estimate of q is made for layout 2
            fresh = codec.estimate_bytes(codec.analyze(src), q, filter_layout=layout)
            assert codec.estimate_bytes(an, q, filter_layout=layout) == fresh
    assert codec.known_codes(an) == [QMAX // 3, 2 * QMAX // 3]


def test_closest_and_custom_tolerance(codec, src, reachable):
    target = (reachable[0] * reachable[1]) ** 0.5
    r = match_rate(codec, src, target, tolerance=0.002, closest=True)
    assert abs(r.bpp - target) <= 0.002 * target


def test_map_is_kept_while_quality_moves(codec, src, reachable):
    grid = latent_grid(src.height, src.width)
    kmap = np.zeros(grid, dtype=int)
    kmap[: grid[0] // 2] = -4
    target = (reachable[0] * reachable[1]) ** 0.5
    r = match_rate(codec, src, target, kmap=kmap)
    assert np.array_equal(r.encoded.kmap, kmap)
    assert target * 0.99 <= r.bpp <= target


@pytest.mark.parametrize("method", ["fast", "bisection"])
def test_unreachable_targets_name_the_range(codec, src, method):
    with pytest.raises(BitlensError, match=r"outside what the model reaches .* to .* bpp"):
        match_rate(codec, src, 0.0005, method=method)
    with pytest.raises(BitlensError, match="outside what the model reaches"):
        match_rate(codec, src, 40.0, method=method)


def test_rate_model_sum_equals_direct_sum_over_elements(codec):
    """predict_bits (histogram correlated with bits(u)) is the sum of bits(log2|y|/step) over
    every latent element, up to the histogram's bin width."""
    from codec.ratemodel import CODES, code_log2_steps, magnitude_histogram
    assert codec.rate_model is not None, "the default model ships a rate model"
    rng = np.random.default_rng(0)
    y = rng.laplace(scale=rng.uniform(0.2, 8, (192, 1, 1)), size=(192, 8, 12))
    kmap = rng.integers(-8, 9, (8, 12))
    steps = code_log2_steps(codec.log2_steps_q16)
    m = codec.rate_model
    hist = magnitude_histogram(y, kmap, m.width)
    got = m.predict_bits(hist, steps)
    for j in (0, 8, 16, 24, 32):
        u = np.log2(np.abs(y)) - kmap[None] / 4 - steps[j][:, None, None]
        direct = np.interp(u, m.centers(), m.bits).sum()
        assert got[j] == pytest.approx(direct, rel=0.01), CODES[j]


def test_rate_curve_predicts_this_image(codec, src):
    """The image's predicted curve is increasing and tracks the exact sizes in shape: after
    removing one offset (what the first trial measures), every code is within 10% in rate."""
    from codec.ratematch import rate_curve
    an = codec.analyze(src)
    codes, predicted = rate_curve(codec, an)
    assert np.all(np.diff(predicted) > 0)
    n = src.width * src.height
    sel = [4, 10, 16, 22, 28]
    exact = np.log([codec.estimate_bytes(an, int(codes[i])) * 8 / n for i in sel])
    err = exact - predicted[sel]
    assert np.abs(err - err.mean()).max() < 0.1, err


@pytest.fixture(scope="module")
def flat():
    """A flat grey image: below the trained levels its rate rises again as the steps coarsen (the
    context model extrapolates), so code 0 is not its lowest rate."""
    return source_from_array(np.full((256, 384, 3), 102, dtype=np.uint8))


@pytest.mark.parametrize("method", ["fast", "bisection"])
def test_targets_below_code_zeros_rate_are_met_above_the_rate_floor(codec, flat, method):
    an = codec.analyze(flat)
    npix = flat.width * flat.height
    floor, floor_bpp = rate_floor(codec, an, None, filter_layout(0.01, npix))
    at_zero = codec.estimate_bytes(an, 0) * 8 / npix
    assert floor > 0 and floor_bpp < 0.8 * at_zero       # the case this guards: code 0 is not the lowest
    target = floor_bpp * 1.02
    r = match_rate(codec, flat, target, method=method, tolerance=0.05)
    assert target * 0.95 <= r.bpp <= target < at_zero
    # the floor is known to the spacing of its probes (with model 16 the rate is flat around it:
    # code 4095 costs what the floor's 4096 does); codes on the rising side toward code 0 are not taken
    spacing = codec.trained_codes[0] / (FLOOR_PROBES - 1)
    assert r.encoded.q_code > floor - spacing
    with pytest.raises(BitlensError, match=rf"outside what the model reaches on this image \({floor_bpp:.4f} to"):
        match_rate(codec, flat, floor_bpp * 0.9, method=method)
