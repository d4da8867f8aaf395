import math

import numpy as np
import pytest

from codec.errors import BitlensError
from codec.color import rgb_to_ycbcr, ycbcr_to_rgb
from codec.metrics import bd_rate, block_psnr, mean_2x2, plane_psnrs, psnr

RATES = [0.06, 0.12, 0.25, 0.5, 0.75]
PSNRS = [27.5, 29.65, 32.52, 35.93, 38.33]


def test_psnr_hand_computed():
    a = np.zeros((4, 4), dtype=np.uint16)
    b = a.copy()
    b[0, 0] = 4          # MSE = 16 / 16 = 1
    assert psnr(a, b) == pytest.approx(20 * math.log10(1023))
    assert psnr(a, a) == math.inf


def test_block_psnr_locates_error():
    a = np.full((32, 48), 500, dtype=np.uint16)
    b = a.copy()
    b[16:, 32:] += 10
    m = block_psnr(a, b, 16)
    assert m.shape == (2, 3) and m[1, 2] == pytest.approx(20 * math.log10(102.3)) and m[0, 0] == 100.0


def test_chroma_detail_finer_than_420_counts_only_at_full_resolution():
    # a +-d checkerboard on Cb has zero 2x2 means: full-resolution PSNR-Cb sees it, 4:2:0 does not
    assert np.array_equal(mean_2x2(np.arange(20.0).reshape(4, 5)), [[3.0, 5.0], [13.0, 15.0]])
    ycc = np.full((8, 8, 3), 0.5)
    ycc[..., 0] = 0.4
    rec = ycc.copy()
    rec[..., 1] += np.where(np.indices((8, 8)).sum(0) % 2, 8 / 255, -8 / 255)
    y, cb, cr, cb420, cr420 = plane_psnrs(ycc, np.round(ycbcr_to_rgb(rec) * 255).astype(np.uint8))
    assert np.isfinite(cb) and cb < 35 and cb420 > cb + 10 and cr420 > 40 and y > 40
    assert rgb_to_ycbcr(ycbcr_to_rgb(rec))[0, 0, 1] == pytest.approx(rec[0, 0, 1])


def test_bd_rate_of_scaled_rates_is_the_scale():
    # same PSNR at 10% fewer bits everywhere: BD-rate is exactly -10% (log-rate shift is constant)
    assert bd_rate(RATES, PSNRS, [r * 0.9 for r in RATES], PSNRS) == pytest.approx(-10.0, abs=1e-6)
    assert bd_rate(RATES, PSNRS, [r * 1.25 for r in RATES], PSNRS) == pytest.approx(25.0, abs=1e-6)


def test_bd_rate_rejects_bad_curves():
    with pytest.raises(BitlensError, match="at least 4"):
        bd_rate(RATES[:3], PSNRS[:3], RATES[:3], PSNRS[:3])
    with pytest.raises(BitlensError, match="monotonic"):
        bd_rate(RATES, PSNRS, RATES, [27, 30, 29, 35, 38])
