"""The training forward pass with the checkerboard context model (joint training of v5's backbone
and context network): it reduces to the hyperprior when the context network says nothing, the
trained context network lowers the rate proxy, and gradients reach both parts."""
import copy

import numpy as np
import pytest
import torch

from codec.model.hyperprior import VariableRateHyperprior
from codec.model.zoo import load_bundle

from .conftest import sample_crop


@pytest.fixture(scope="module")
def nets():
    b = load_bundle(5)
    state = {k: v.float() for k, v in b["state_dict"].items()}
    with_ctx = VariableRateHyperprior(**b["config"])
    with_ctx.load_state_dict(state)
    config = {k: v for k, v in b["config"].items() if k != "context"}
    without = VariableRateHyperprior(**config)
    without.load_state_dict({k: v for k, v in state.items() if not k.startswith("context.")})
    return with_ctx, without


@pytest.fixture(scope="module")
def x():
    from codec.color import rgb_to_ycbcr
    rgb = sample_crop(256, 256).astype(np.float64) / 255
    return torch.from_numpy(rgb_to_ycbcr(rgb).astype(np.float32)).permute(2, 0, 1)[None]


def run(net, x, q=1.0):
    torch.manual_seed(0)          # the same rate-proxy noise for every network
    return net(x, torch.tensor([q]))


def test_a_silent_context_network_is_the_hyperprior(nets, x):
    with_ctx, without = nets
    silent = copy.deepcopy(with_ctx)
    torch.nn.init.zeros_(silent.context.net[-1].weight)
    torch.nn.init.zeros_(silent.context.net[-1].bias)
    with torch.no_grad():
        a, b = run(silent, x), run(without, x)
    assert torch.allclose(a["bits_y"], b["bits_y"]) and torch.equal(a["x_hat"], b["x_hat"])


def test_trained_context_lowers_the_rate_and_both_parts_learn(nets, x):
    with_ctx, without = nets
    with torch.no_grad():
        hyper_only = run(without, x)["bits_y"]
    out = run(with_ctx, x)
    assert out["bits_y"] < 0.995 * hyper_only   # about -1% of the rate proxy on this crop
    with_ctx.zero_grad()
    (out["bits_y"] + 1e4 * ((out["x_hat"] - x) ** 2).mean()).backward()
    for p in (with_ctx.context.net[0].weight, with_ctx.g_a[0].weight, with_ctx.g_s[-1].weight):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_the_encoders_inference_analysis_computes_the_trained_analysis(nets, x):
    from codec.model.layers import inference_analysis
    g_a = nets[0].g_a
    fast = inference_analysis(g_a)
    with torch.inference_mode():
        want = g_a(x)
        got = fast(x.contiguous(memory_format=torch.channels_last))
    assert got.shape == want.shape
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))


@pytest.mark.parametrize("part", ["slices", "rest_slices"])
def test_silent_channel_slices_are_the_model_without_them_and_slices_learn(nets, x, part):
    """Channel slices (`ChannelSlices`) of the anchors (v11) or, on top of those, of the non-anchors
    (v12) start at zero: the model as it was; once they say something, the rate proxy moves and
    their gradients flow."""
    with_ctx = nets[0]
    before = with_ctx
    if part == "rest_slices":
        before = VariableRateHyperprior(**with_ctx.config, slices=dict(groups=4, hidden=16))
        before.load_state_dict(with_ctx.state_dict(), strict=False)
    sliced = VariableRateHyperprior(**{**before.config, part: dict(groups=4, hidden=16)})
    sliced.load_state_dict(before.state_dict(), strict=False)
    with torch.no_grad():
        a, b = run(sliced, x), run(before, x)
    assert torch.allclose(a["bits_y"], b["bits_y"]) and torch.equal(a["x_hat"], b["x_hat"])
    torch.manual_seed(1)
    for net in getattr(sliced, part).nets:
        torch.nn.init.normal_(net[-1].weight, std=0.05)
    out = run(sliced, x)
    assert not torch.allclose(out["bits_y"], b["bits_y"])
    out["bits_y"].backward()
    assert all(net[0].weight.grad.abs().sum() > 0 for net in getattr(sliced, part).nets)


def test_channel_slices_need_equal_groups_and_the_non_anchors_need_the_anchors_slices(nets):
    with pytest.raises(ValueError, match="equal groups"):
        VariableRateHyperprior(**nets[0].config, slices=dict(groups=5))
    with pytest.raises(ValueError, match="need those of the anchors"):
        VariableRateHyperprior(**nets[0].config, rest_slices=dict(groups=4))


def test_silent_latent_residual_is_the_model_without_it_and_it_learns_from_the_distortion(nets, x):
    """Latent residual prediction (`LatentResidual`, v13) starts at zero: the model as it was. Once
    it says something, the reconstruction moves, the rate does not, and the distortion's gradient
    reaches it."""
    before = nets[0]
    with_lrp = VariableRateHyperprior(**{**before.config, "residual": dict(hidden=16)})
    with_lrp.load_state_dict(before.state_dict(), strict=False)
    with torch.no_grad():
        a, b = run(with_lrp, x), run(before, x)
    assert torch.equal(a["bits_y"], b["bits_y"]) and torch.equal(a["x_hat"], b["x_hat"])
    torch.manual_seed(1)
    torch.nn.init.normal_(with_lrp.residual.net[-1].weight, std=0.05)
    out = run(with_lrp, x)
    assert torch.equal(out["bits_y"], b["bits_y"]) and not torch.allclose(out["x_hat"], b["x_hat"])
    ((out["x_hat"] - x) ** 2).mean().backward()
    assert with_lrp.residual.net[0].weight.grad.abs().sum() > 0


def test_training_codes_z_in_the_shipped_bins_and_counts_what_the_coder_writes(x):
    """Model 16 codes z as round(z / 1.25) (training/train.py's "z_step"): the training pass, given the
    step, counts z's bits as the factorized prior's mass over those bins, within a few percent of the
    z stream the codec writes for the same crop at the same quality."""
    from codec.engine import LearnedCodec
    from codec.images import SourceImage
    from codec.model.quality import QMAX
    bundle = load_bundle(16)
    net = VariableRateHyperprior(**bundle["config"])
    net.load_state_dict({k: v.float() for k, v in bundle["state_dict"].items()})
    net.eval()
    codec = LearnedCodec(bundle)
    lo, hi = (int(v) for v in bundle["trained_levels"])
    level = 2                                  # a trained level: the codec's hyper-analysis sees its step
    code = (lo + level) * QMAX // (len(bundle["log2_steps_q16"]) - 1)
    rgb = sample_crop(256, 256).astype(np.float64) / 255    # the pixels of `x`
    coded = 8 * len(codec.hyper(codec.analyze(SourceImage(rgb)), code).z_data)
    with torch.no_grad():
        bits = {}
        for step in (1.0, 1.25):
            net.z_step = step
            bits[step] = float(run(net, x, float(level))["bits_z"])
    assert bits[1.25] < 0.7 * bits[1.0]        # coarser bins: far fewer bits (0.008 against 0.019 bpp)
    assert abs(bits[1.25] - coded) < 0.05 * coded + 64


def test_training_can_count_ys_rate_at_real_rounding(nets, x):
    """`y_rate` "ste" (training/train.py's "y_rate"): y's bits at the rounded symbols, no noise, so the
    same for every seed and below the noise proxy's, with gradients reaching the analysis."""
    net = copy.deepcopy(nets[1])
    net.y_rate = "ste"
    torch.manual_seed(0)
    a = net(x, torch.tensor([1.0]))["bits_y"]
    torch.manual_seed(1)
    with torch.no_grad():
        b = net(x, torch.tensor([1.0]))["bits_y"]
        noise = run(nets[1], x)["bits_y"]
    assert torch.equal(a.detach(), b) and a < noise
    net.zero_grad()
    a.backward()
    assert net.g_a[0].weight.grad.abs().sum() > 0
