import functools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from codec.devices import compare_backends, pixel_sha256
from codec.engine import LearnedCodec, anchor_cells
from codec.images import source_from_array
from codec.integer import fixedpoint
from codec.integer.networks import run_layers
from codec.integer.fixedpoint import ACC_LIMIT, PRODUCT_LIMIT
from codec.model.quality import QMAX

from .conftest import ROOT, sample_crop


def all_layers(codec):
    context = [net for net in [codec.context, *codec.slices, *codec.rest_slices, codec.residual] if net is not None]
    return [("h_s/g_s 16-bit", layer) for layer in codec.integer.layers()] + \
           [("g_s 8-bit", layer) for layer in codec.g_s8] + \
           [("context networks", layer) for net in context for layer in net.layers]


def test_every_layer_has_a_proven_bound(codec):
    for name, layer in all_layers(codec):
        acc = layer.accumulator_bound()
        assert acc < ACC_LIMIT, name
        assert acc * int(np.abs(layer.mult).max()) + (1 << layer.shift) < PRODUCT_LIMIT, name


@pytest.mark.parametrize("int8_products", [True, False], ids=["int8", "float64"])
def test_kernels_equal_int64_reference_at_extreme_inputs(codec, monkeypatch, int8_products):
    # the CPU runs the int8-product kernels; other devices the float64 ones: both must be exact
    monkeypatch.setattr(fixedpoint, "INT8_MATMUL", int8_products)
    gen = torch.Generator().manual_seed(0)
    for name, layer in all_layers(codec):
        cin = layer.weight.shape[0] if layer.transposed else layer.weight.shape[1]
        # worst-case inputs: every value at +-in_max, plus random ones
        x = torch.randint(0, 2, (1, cin, 6, 7), generator=gen) * 2 - 1
        x = x * layer.in_max
        x[..., :3, :] = torch.randint(-layer.in_max, layer.in_max + 1, (1, cin, 3, 7), generator=gen)
        out = layer.forward(x.clone())
        assert torch.equal(out.to(torch.int64), layer.reference_forward(x.clone())), name


@pytest.mark.parametrize("rows", [1, 40, 10_000])
def test_narrow_layer_is_exact_in_any_band_size(codec, monkeypatch, rows):
    # the 3-channel output layer runs tap by tap in bands of rows: band edges must not matter
    layer = codec.integer.g_s[-1]
    assert layer._int8_params()[0].col_offset.numel() <= fixedpoint.NARROW_COLUMNS
    monkeypatch.setattr(fixedpoint, "int8_conv_by_taps",
                        functools.partial(fixedpoint.int8_conv_by_taps, rows=rows))
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(-layer.in_max, layer.in_max + 1, (1, layer.weight.shape[0], 13, 11), generator=gen)
    assert torch.equal(layer.forward(x.clone()).to(torch.int64), layer.reference_forward(x.clone()))


@pytest.mark.parametrize("cout", [16, 3], ids=["wide", "narrow"])
@pytest.mark.parametrize("k,stride,rows", [(5, 2, 1), (5, 2, 40), (5, 2, 10_000), (4, 2, 40), (3, 2, 40),
                                            (6, 3, 40), (7, 3, 1)])
def test_float64_phase_products_equal_the_int64_reference(monkeypatch, k, stride, rows, cout):
    # any transposed geometry, band size and width (narrow layers multiply every tap at once):
    # each tap multiplies into exactly the phases using it
    monkeypatch.setattr(fixedpoint, "INT8_MATMUL", False)
    monkeypatch.setattr(fixedpoint, "float64_conv_by_phases",
                        functools.partial(fixedpoint.float64_conv_by_phases, rows=rows))
    gen = torch.Generator().manual_seed(k * 10 + stride)
    cin = 5
    layer = fixedpoint.IntLayer(
        weight=torch.randint(-2 ** 15 + 1, 2 ** 15, (cin, cout, k, k), generator=gen).numpy(),
        bias=torch.randint(-2 ** 20, 2 ** 20, (cout,), generator=gen).numpy(),
        mult=torch.randint(0, 2 ** 12, (cout,), generator=gen).numpy(), shift=30, transposed=True,
        stride=stride, padding=k // 2, output_padding=stride - 1, relu=True, in_max=2 ** 15 - 1,
        out_min=0, out_max=2 ** 15 - 1)
    assert layer._strided and (fixedpoint.PhaseKernel.split(layer.weight, stride, k // 2).columns
                               <= fixedpoint.NARROW_COLUMNS) == (cout == 3)
    x = torch.randint(-layer.in_max, layer.in_max + 1, (2, cin, 9, 7), generator=gen)
    expected = layer.reference_forward(x.clone())
    with fixedpoint.forced_phase_products(True):
        out = layer.forward(x.clone())
    assert out.shape == expected.shape and torch.equal(out.to(torch.int64), expected)
    with fixedpoint.forced_phase_products(False):
        assert torch.equal(layer.forward(x.clone()).to(torch.int64), expected)


@pytest.mark.parametrize("both_extremes", [False, True], ids=["signed-columns", "offset"])
@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "transposed"])
def test_int8_weight_splits_are_exact(both_extremes, transposed):
    # 16-bit weights split into int8 pieces with a sign per column, or, where a column holds both
    # +-32767 (no sign fits), with an offset: both must give the int64 reference exactly
    gen = torch.Generator().manual_seed(2)
    cin, cout, k = 5, 40, 3 if not transposed else 5
    shape = (cin, cout, k, k) if transposed else (cout, cin, k, k)
    w = torch.randint(-30000, 30001, shape, generator=gen).numpy()
    out_axis = 1 if transposed else 0
    np.moveaxis(w, out_axis, 0)[::2, 0, 0, 0] = 32767       # negated columns
    np.moveaxis(w, out_axis, 0)[1::2, 0, 0, 0] = -32767     # columns kept as they are
    if both_extremes:
        np.moveaxis(w, out_axis, 0)[3, 1, 0, 0] = 32767
    layer = fixedpoint.IntLayer(w.astype(np.int64), np.arange(cout) * 1000 - 20000, np.full(cout, 3000 + np.arange(cout)),
                                20, transposed, 2 if transposed else 1, 2 if transposed else 1,
                                1 if transposed else 0, True, 32767, 0, 32767)
    weights = layer._int8_params()[0]
    assert weights.offset == (128 if both_extremes else 0)
    assert bool((weights.signs < 0).any()) != both_extremes
    x = torch.randint(0, 2, (1, cin, 6, 7), generator=gen) * 2 - 1
    x = x * layer.in_max
    x[..., :3, :] = torch.randint(-layer.in_max, layer.in_max + 1, (1, cin, 3, 7), generator=gen)
    assert torch.equal(layer.forward(x.clone()).to(torch.int64), layer.reference_forward(x.clone()))


def half_grid_equals_whole_grid(net, s: np.ndarray, log2_ratio: np.ndarray, at_anchors: bool) -> None:
    """A context network run on the half of the grid that needs it gives the int64 reference's
    values there (computed on the whole grid) and zero elsewhere."""
    cells = anchor_cells(s.shape[1:]) if at_anchors else ~anchor_cells(s.shape[1:])
    d_mu, d_lr = net.shifts(s, log2_ratio, at_anchors=at_anchors)
    x = net.inputs(s, log2_ratio)
    for layer in net.layers:
        x = layer.reference_forward(x)
    whole = x[0].numpy()
    m = whole.shape[0] // 2
    assert np.array_equal(d_mu[:, cells], whole[:m, cells] * net.s_dmu)
    assert np.array_equal(d_lr[:, cells], whole[m:, cells] * net.s_dlr)
    assert not d_mu[:, ~cells].any() and np.abs(whole[:m, cells]).max() > 0


@pytest.mark.parametrize("int8_products", [True, False], ids=["int8", "float64"])
def test_context_network_on_the_non_anchors_alone_equals_the_whole_grid(codec, monkeypatch, int8_products):
    monkeypatch.setattr(fixedpoint, "INT8_MATMUL", int8_products)
    rng = np.random.default_rng(0)
    grid = (9, 12)
    s = rng.integers(-40, 41, (codec.net.M,) + grid) * anchor_cells(grid)
    half_grid_equals_whole_grid(codec.context, s, rng.normal(2, 3, (codec.net.M,) + grid), at_anchors=False)


@pytest.mark.parametrize("int8_products", [True, False], ids=["int8", "float64"])
@pytest.mark.parametrize("model_id, at_anchors", [(11, True), (12, False)], ids=["anchors", "non-anchors"])
def test_channel_slices_on_their_half_alone_equal_the_whole_grid(monkeypatch, int8_products, model_id, at_anchors):
    """The anchors' slices (model 11) see the anchors of the groups before; the non-anchors'
    (model 12) see both halves of those groups."""
    monkeypatch.setattr(fixedpoint, "INT8_MATMUL", int8_products)
    codec = LearnedCodec.load(model_id)
    nets = codec.slices if at_anchors else codec.rest_slices
    rng = np.random.default_rng(1)
    grid = (9, 12)
    c = codec.net.M // (len(nets) + 1)
    for g, net in enumerate(nets, start=1):
        s = rng.integers(-40, 41, (g * c,) + grid) * (anchor_cells(grid) if at_anchors else 1)
        half_grid_equals_whole_grid(net, s, rng.normal(2, 3, (c,) + grid), at_anchors=at_anchors)


@pytest.mark.parametrize("int8_products", [True, False], ids=["int8", "float64"])
def test_latent_residual_network_equals_its_int64_reference(monkeypatch, int8_products):
    """Model 13's latent residual prediction runs on every cell: the int64 reference's values."""
    monkeypatch.setattr(fixedpoint, "INT8_MATMUL", int8_products)
    codec = LearnedCodec.load(13)
    net = codec.residual
    rng = np.random.default_rng(2)
    grid = (9, 12)
    s, log2_ratio = rng.integers(-40, 41, (codec.net.M,) + grid), rng.normal(2, 3, (codec.net.M,) + grid)
    x = net.inputs(s, log2_ratio)
    for layer in net.layers:
        x = layer.reference_forward(x)
    got = net.residual(s, log2_ratio)
    assert np.array_equal(got, x[0].numpy() * net.s_dmu) and np.abs(got).max() > 0


@pytest.mark.parametrize("int8", [True, False], ids=["int8", "float64"])
def test_every_other_output_equals_the_full_convolution_subsampled(codec, int8):
    # the context networks' first layer computes only the checkerboard half it needs, as a stride-2
    # convolution: the same integers as the full layer at those cells, on even and odd grids
    layer = codec.context.layers[0]
    gen = torch.Generator().manual_seed(1)
    with fixedpoint.forced_products(int8):
        for h, w in ((6, 8), (7, 5)):
            x = torch.randint(-layer.in_max, layer.in_max + 1, (1, layer.weight.shape[1], h, w), generator=gen)
            full = layer.forward(x.clone()).to(torch.int64)
            for r0, c0 in ((0, 0), (0, 1), (1, 0), (1, 1)):
                part = layer.forward_every_other(x.clone(), r0, c0).to(torch.int64)
                assert torch.equal(part, full[..., r0::2, c0::2]), (h, w, r0, c0)


def test_int8_and_float64_kernels_decode_the_same_pixels(tmp_path, codec):
    data = _encode_small(tmp_path, codec).read_bytes()
    with fixedpoint.forced_products(True):
        int8 = pixel_sha256(codec.decode(data).pixels)
    with fixedpoint.forced_products(False):
        assert pixel_sha256(codec.decode(data).pixels) == int8


def test_the_cpu_kernel_is_the_faster_one_unless_forced(monkeypatch):
    # both kernels are exact; which runs is measured once per process (an AVX2-only CPU ran int8
    # products 12x slower than float64), or forced by BITLENS_INT8_PRODUCTS
    def not_chosen_yet():
        monkeypatch.setattr(fixedpoint, "INT8_MATMUL", None if fixedpoint.INT8_AVAILABLE else False)

    assert isinstance(fixedpoint.int8_faster_than_float64(), bool)
    for forced, expected in (("0", False), ("1", fixedpoint.INT8_AVAILABLE)):
        not_chosen_yet()
        monkeypatch.setenv("BITLENS_INT8_PRODUCTS", forced)
        assert fixedpoint.int8_products() is expected
    not_chosen_yet()
    monkeypatch.delenv("BITLENS_INT8_PRODUCTS")
    monkeypatch.setattr(fixedpoint, "int8_faster_than_float64", lambda: False)
    assert fixedpoint.int8_products() is False


def test_integer_decoder_matches_float_closely(codec):
    src = source_from_array(sample_crop(64, 96))
    an = codec.analyze(src)
    f = codec.reconstruct(an, QMAX // 2, backend="float")
    i = codec.reconstruct(an, QMAX // 2, backend="integer")
    diff = np.abs(f - i) * 1023
    # 16-bit weights/activations in the synthesis, 11-bit activations in the post-filters on 2x2 blocks
    # (which the loop filter then spreads), their weights 8-10 bits up to model 19, 15-16 (two pieces)
    # in model 20, 8-16 per output channel in model 21: within a few 10-bit steps, a fraction of one
    # on average (model 16: 4 and 0.17; model 17: 5 and 0.25, +0.13% BD-rate over Kodak; model 19, a
    # layer deeper: 6 and 0.31, +0.24%; model 20: 3 and 0.19, +0.08%; model 21: 4 and 0.24, +0.12%;
    # model 22: 4 and 0.26, +0.14%, docs/integer_decoder_v22.md; the goal is 0.3%)
    assert diff.max() <= 8 and diff.mean() < 0.4
    assert not np.array_equal(f, i)              # and it is a different (fixed-point) computation


def _encode_small(tmp_path, codec):
    p = tmp_path / "s.bln"
    src = source_from_array(sample_crop(64, 96))
    p.write_bytes(codec.encode(codec.analyze(src), QMAX // 2).data)
    return p


def test_one_hash_across_threads_and_instruction_sets(tmp_path, codec):
    p = _encode_small(tmp_path, codec)
    report = compare_backends(str(p), threads=2, subprocesses=True, other_kernel=True)
    ints = [r for r in report.rows if r.decoder == "integer"]
    # 1 and 2 threads, the other CPU kernel (int8 or float64 products), float64 in the im2col form
    # used off the CPU, three instruction sets
    assert len(ints) == 7 and len({r.sha256 for r in ints}) == 1
    other = "float64" if report.machine["integer_products"] == "int8" else "int8"
    assert [r.config for r in ints].count(f"cpu 2 threads, {other} products") == 1
    assert [r.config for r in ints].count("cpu 2 threads, im2col form") == 1
    assert all(r.mismatches == 0 and r.max_diff == 0 for r in ints)
    floats = [r for r in report.rows if r.decoder == "float"]
    assert all(r.scale_index_mismatches is not None for r in floats)


@pytest.mark.skipif(not fixedpoint.INT8_AVAILABLE, reason="no int8 kernel in this torch")
def test_the_other_kernel_runs_by_default_only_where_not_far_slower(tmp_path, codec, monkeypatch):
    p = str(_encode_small(tmp_path, codec))
    configs = lambda report: [r.config for r in report.rows if "products" in r.config]  # noqa: E731
    for slowdown, rows in ((2.0, 1), (12.0, 0), (None, 1)):
        monkeypatch.setattr(fixedpoint, "other_kernel_slowdown", lambda: slowdown)
        notes = []
        report = compare_backends(p, threads=2, subprocesses=False, progress=notes.append)
        assert len(configs(report)) == rows
        assert any("12x slower here" in m for m in notes) == (rows == 0)
    assert len(configs(compare_backends(p, threads=2, subprocesses=False, other_kernel=True))) == 1


def test_the_other_kernel_can_be_left_out_when_the_choice_was_forced(tmp_path, codec, monkeypatch):
    # BITLENS_INT8_PRODUCTS forces the kernel, so nothing was measured: --no-other-kernel still works
    monkeypatch.setattr(fixedpoint, "other_kernel_slowdown", lambda: None)
    report = compare_backends(str(_encode_small(tmp_path, codec)), threads=2, subprocesses=False, other_kernel=False)
    assert not [r for r in report.rows if "products" in r.config]


def test_accelerator_rows_run_both_decoders_on_the_device(tmp_path, codec, monkeypatch):
    # no GPU in CI: a CPU device stands in for one, exercising the device path of every decoder
    import codec.devices as devices
    monkeypatch.setattr(devices, "accelerators", lambda: [("cpu", "stand-in accelerator")])
    report = compare_backends(str(_encode_small(tmp_path, codec)), threads=2, subprocesses=False)
    rows = [r for r in report.rows if r.config == "stand-in accelerator"]
    assert sorted(r.decoder for r in rows) == ["float", "integer"]
    assert len(report.integer_hashes()) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_integer_decoder_on_cuda_equals_cpu(tmp_path, codec):
    data = _encode_small(tmp_path, codec).read_bytes()
    assert pixel_sha256(codec.decode(data, "integer", "cuda").pixels) == pixel_sha256(codec.decode(data).pixels)


ENCODE_IN_SUBPROCESS = """
import sys, hashlib, numpy as np, torch
sys.path.insert(0, {root!r})
from codec.engine import LearnedCodec
from codec.images import source_from_array
from codec.model.quality import QMAX
from tests.conftest import sample_crop
torch.set_num_threads(1)
c = LearnedCodec.load()
data = c.encode(c.analyze(source_from_array(sample_crop(64, 96))), QMAX // 3).data
open({out!r}, "wb").write(data)
print(hashlib.sha256(np.ascontiguousarray(c.decode(data).pixels).tobytes()).hexdigest())
"""


def test_bitstream_from_another_configuration_decodes_exactly(tmp_path, codec):
    out = tmp_path / "other.bln"
    env = dict(os.environ, ATEN_CPU_CAPABILITY="default")
    r = subprocess.run([sys.executable, "-c", ENCODE_IN_SUBPROCESS.format(root=str(ROOT), out=str(out))],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    their_hash = r.stdout.strip().splitlines()[-1]
    torch.set_num_threads(2)
    assert pixel_sha256(codec.decode(out.read_bytes()).pixels) == their_hash


def test_devices_cli_writes_and_compares_reports(tmp_path, codec, capsys):
    from codec.cli import main
    p = _encode_small(tmp_path, codec)
    rep = tmp_path / "r.json"
    assert main(["devices", str(p), "--no-subprocess", "--json", str(rep)]) == 0
    d = json.loads(rep.read_text())
    assert {"platform", "cpu", "torch"} <= set(d["machine"]) and d["model_id"] == codec.model_id
    capsys.readouterr()
    assert main(["devices", str(p), "--no-subprocess", "--compare", str(rep)]) == 0
    assert "integer decoder identical" in capsys.readouterr().out


def test_input_clamp_is_skipped_only_after_a_layer_that_stays_in_range(codec):
    relu, last = codec.integer.g_s[0], codec.integer.g_s[-1]
    assert relu.out_min == 0 and last.out_min == -(1 << 15)
    assert codec.integer.g_s[1].accepts(relu)
    assert not codec.integer.g_s[1].accepts(last)     # -32768 is outside +-32767
    # a chain whose inputs need the clamp gives the reference chain's values
    gen = torch.Generator().manual_seed(2)
    x = torch.randint(-40000, 40000, (1, codec.integer.h_s[0].weight.shape[1], 5, 6), generator=gen)
    ref = x
    for layer in codec.integer.h_s:
        ref = layer.reference_forward(ref)
    assert torch.equal(run_layers(codec.integer.h_s, x).to(torch.int64), ref)


def test_input_hessian_phases_give_the_transposed_convolution_output_energy():
    from codec.integer.rounding import input_hessian, phase_entries
    torch.manual_seed(1)
    x, d = torch.randn(2, 4, 5, 6), torch.randn(4, 3, 5, 5, dtype=torch.float64)
    h = input_hessian([x[:1], x[1:]], 5, 2, 2)
    energy = sum(float(torch.trace(d[ci, :, ki, kj].T @ h[rows][:, rows] @ d[ci, :, ki, kj]))
                 for rows, ci, ki, kj in phase_entries(4, 5, 2, 2))
    out = F.conv_transpose2d(x.double(), d, stride=2, padding=2, output_padding=1)
    assert energy == pytest.approx(float((out ** 2).sum()), rel=1e-5)


def test_short_weights_sit_on_the_layer_grid_with_less_output_error_than_rounding():
    from codec.integer.fixedpoint import quantize_layer
    from codec.integer.networks import conv_layers, snap_weights
    torch.manual_seed(0)
    seq = torch.nn.Sequential(*[torch.nn.ConvTranspose2d(8, 6, 5, 2, 2, 1), torch.nn.ReLU(),
                                torch.nn.ConvTranspose2d(6, 6, 5, 2, 2, 1), torch.nn.ReLU(),
                                torch.nn.ConvTranspose2d(6, 3, 5, 2, 2, 1)])
    samples = [torch.rand(1, 8, 6, 7) for _ in range(4)]   # non-negative, as after a ReLU: correlated taps
    snapped = snap_weights(seq, 4, samples)
    for (m, relu), (original, _) in zip(conv_layers(snapped), conv_layers(seq)):
        layer = quantize_layer(m, relu, 1.0, np.ones(m.out_channels), 127, weight_bits=4)
        step = np.abs(m.weight.detach().double().numpy()).max(axis=(0, 2, 3)) / 7
        assert np.abs(layer.weight).max() <= 7
        np.testing.assert_allclose(layer.weight * step.reshape(1, -1, 1, 1), m.weight.detach().double().numpy(),
                                   atol=1e-6)
        assert torch.equal(m.bias, original.bias)
    w = seq[0].weight.detach()
    step = w.abs().amax(dim=(0, 2, 3), keepdim=True) / 7
    nearest = (w / step).round() * step
    with torch.no_grad():
        err_gptq = sum(float(((snapped[0](x) - seq[0](x)) ** 2).sum()) for x in samples)
        err_nearest = sum(float((F.conv_transpose2d(x, nearest - seq[0].weight, stride=2, padding=2,
                                                    output_padding=1) ** 2).sum()) for x in samples)
    assert err_gptq < 0.6 * err_nearest        # 0.34 when written; rounding to nearest is 1


def test_integer8_has_8_bit_weights_everywhere_in_v10_and_a_16_bit_output_layer_in_older_models():
    from codec.engine import LearnedCodec
    gptq, nearest = LearnedCodec.load(10), LearnedCodec.load(8)
    assert all(np.abs(layer.weight).max() <= 127 for layer in gptq.g_s8)
    assert all(np.abs(layer.weight).max() <= 127 for layer in nearest.g_s8[:-1])
    assert nearest.g_s8[-1] is nearest.integer.g_s[-1] and np.abs(nearest.g_s8[-1].weight).max() > 127
