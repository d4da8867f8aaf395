import numpy as np
import pytest

from codec.entropy import coder, offsetmap
from codec.entropy.tables import PREC_BITS, FreqTable, gaussian_row, gaussian_scales, quantize_pmf


@pytest.fixture(scope="module")
def table():
    return FreqTable.from_rows([gaussian_row(s) for s in gaussian_scales()])


def test_quantized_pmf_is_exact_and_positive():
    f = quantize_pmf(np.array([0.5, 0.5 - 1e-12, 1e-12, 0.0]))
    assert f.sum() == 1 << PREC_BITS and f.min() >= 1


def test_range_coder_round_trip_with_escapes(table):
    rng = np.random.default_rng(1)
    rows = rng.integers(0, table.rows, 20000)
    vals = np.round(rng.normal(size=rows.size) * gaussian_scales()[rows]).astype(np.int64)
    vals[[0, 5, 17]] = [10**6, -(10**9), 3000]   # far outside every row: escape path
    data = coder.encode(vals, rows, table)
    assert np.array_equal(coder.decode(data, rows, table), vals)


def test_size_estimate_matches_real_coder(table):
    rng = np.random.default_rng(2)
    for n in (1, 50, 5000, 100000):
        rows = rng.integers(0, table.rows, n)
        vals = np.round(rng.laplace(size=n) * gaussian_scales()[rows]).astype(np.int64)
        real = len(coder.encode(vals, rows, table))
        est = coder.estimate_bytes(coder.coded_bits(vals, rows, table))
        assert abs(real - est) <= 8, (n, real, est)


def test_garbage_stream_raises_corrupt_or_decodes(table):
    rows = np.zeros(100, dtype=np.int64)
    with pytest.raises(coder.CorruptStream):
        coder.decode(b"\x01\x02\x03", rows, table)


def test_offset_map_round_trip_and_flat_map_is_free():
    assert offsetmap.encode_map(np.zeros((4, 6), dtype=int)) is None
    k = np.clip(np.round(np.random.default_rng(3).normal(size=(8, 12)) * 4), -8, 8).astype(int)
    data = offsetmap.encode_map(k)
    assert np.array_equal(offsetmap.decode_map(data, k.shape), k)
    with pytest.raises(ValueError):
        offsetmap.encode_map(np.full((2, 2), 9))
