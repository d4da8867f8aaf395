import numpy as np
import pytest

from codec.bitalloc import auto_map, cell_average, load_map, map_from_painting, rdo_map, variance_map
from codec.engine import latent_grid
from codec.errors import BitlensError
from codec.images import source_from_array
from codec.metrics import psnr
from codec.model.quality import QMAX
from codec.ratematch import match_rate

from .conftest import sample_crop


@pytest.fixture(scope="module")
def src():
    return source_from_array(sample_crop(128, 192))


def test_painting_is_averaged_rounded_and_clamped():
    h, w = 40, 70
    painted = np.zeros((h, w))
    painted[:16, :16] = -3.4
    painted[16:32, 16:32] = 20      # clamped to +8
    k = map_from_painting(painted, h, w)
    assert k.shape == latent_grid(h, w)
    assert k[0, 0] == -3 and k[1, 1] == 8 and k[0, 1] == 0
    coarse = map_from_painting(painted, h, w, block=2)
    assert coarse[0, 0] == coarse[1, 1] == coarse[0, 1] == coarse[1, 0]


def test_load_map_checks_shape(tmp_path):
    p = tmp_path / "k.npy"
    np.save(p, np.ones((3, 3)))
    with pytest.raises(BitlensError, match="expected the image size"):
        load_map(str(p), 40, 70)
    np.save(p, np.full(latent_grid(40, 70), -2.0))
    assert (load_map(str(p), 40, 70) == -2).all()
    (tmp_path / "bad.npy").write_text("nope")
    with pytest.raises(BitlensError, match="not a .npy"):
        load_map(str(tmp_path / "bad.npy"), 40, 70)


def test_region_with_more_bits_gains_inside_and_loses_outside_at_equal_rate(codec, src):
    an = codec.analyze(src)
    n = src.width * src.height
    target = codec.estimate_bytes(an, QMAX // 2) * 8 / n
    grid = an.grid
    kmap = np.zeros(grid, dtype=int)
    kmap[:, : grid[1] // 2] = -4                   # left half: finer steps
    flat = match_rate(codec, src, target, analysis=an)
    mapped = match_rate(codec, src, target, kmap=kmap, analysis=an)
    assert 0.99 * target <= flat.bpp <= target and 0.99 * target <= mapped.bpp <= target
    ref = src.y10()
    rf = codec.decode(flat.encoded.data).y10
    rm = codec.decode(mapped.encoded.data).y10
    half = grid[1] // 2 * 16
    assert psnr(ref[:, :half], rm[:, :half]) > psnr(ref[:, :half], rf[:, :half]) + 0.1
    assert psnr(ref[:, half:], rm[:, half:]) < psnr(ref[:, half:], rf[:, half:])


def test_cell_bits_sum_to_the_y_stream(codec, src):
    an = codec.analyze(src)
    bits = codec.cell_bits(an, QMAX // 2)
    assert bits.shape == an.grid and (bits > 0).all()
    enc = codec.encode(an, QMAX // 2)
    from codec.entropy.bitstream import Bitstream
    y_bytes = len(Bitstream.unpack(enc.data).y_data)
    parts = len(codec._y_parts(codec.symbols(an, QMAX // 2)))   # five with channel slices
    assert abs(bits.sum() / 8 - y_bytes) <= 6 * parts   # each part: the coder's last word, a length


def test_automatic_maps_stay_in_range_and_keep_the_rate(codec, src):
    an = codec.analyze(src)
    target = codec.estimate_bytes(an, QMAX // 2) * 8 / (src.width * src.height)
    for k in (variance_map(src), auto_map("rdo", codec, src, target, an)):
        assert k.shape == an.grid and k.min() >= -8 and k.max() <= 8
        r = match_rate(codec, src, target, kmap=k, analysis=an)
        assert 0.99 * target <= r.bpp <= target
    with pytest.raises(BitlensError, match="unknown automatic map"):
        auto_map("magic", codec, src, target)


def test_rdo_map_is_not_flat_on_a_mixed_image(codec, src):
    an = codec.analyze(src)
    k = rdo_map(codec, an, QMAX // 2)
    assert k.min() < k.max()


def test_rdo_auto_map_never_loses_to_the_flat_map(codec, src):
    from codec.pipeline import encode_image
    an = codec.analyze(src)
    target = codec.estimate_bytes(an, QMAX // 3) * 8 / (src.width * src.height)
    flat = encode_image(codec, src, target_bpp=target)
    rdo = encode_image(codec, src, target_bpp=target, auto_map="rdo")
    assert 0.99 * target <= rdo.bpp <= target
    assert rdo.psnr_y >= flat.psnr_y - 1e-9


def test_cell_average():
    a = np.arange(32 * 32, dtype=float).reshape(32, 32)
    m = cell_average(a, (2, 2))
    assert m[0, 0] == a[:16, :16].mean()
