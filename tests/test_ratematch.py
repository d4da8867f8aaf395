import numpy as np
import pytest

from codec.engine import latent_grid
from codec.errors import BitlensError
from codec.images import source_from_array
from codec.model.quality import QMAX
from codec.ratematch import match_rate

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
