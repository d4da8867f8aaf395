"""Network building blocks: GDN for the analysis side and the factorized prior for the hyper-latent.

GDN appears only in the encoder (analysis transform); the decoder side uses layers with an exact
integer form, so nothing here is needed to decode except the factorized prior's CDF tables, which
are exported once at training time and stored with the weights.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn


class GDN(nn.Module):
    """Generalized divisive normalization (Ballé 2016), simplified form y = x / sqrt(beta + gamma x^2)."""

    def __init__(self, channels: int):
        super().__init__()
        self.beta = nn.Parameter(torch.ones(channels))
        self.gamma = nn.Parameter(0.1 * torch.eye(channels).view(channels, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta = self.beta.abs() + 1e-6
        gamma = self.gamma.abs()
        return x * torch.rsqrt(F.conv2d(x * x, gamma, beta))


class InferenceGDN(nn.Module):
    """A trained GDN frozen for inference on channels-last tensors: the normalization of all pixels
    as one matrix product (pixels x channels), finished in place. On the analysis' widest layer it
    takes 39 ms instead of 83 ms at 768x512 (2 cores); same values up to float rounding."""

    def __init__(self, gdn: GDN):
        super().__init__()
        self.register_buffer("beta", gdn.beta.detach().abs() + 1e-6)
        self.register_buffer("gamma_t", gdn.gamma.detach().abs()[:, :, 0, 0].t().contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        pixels = x.permute(0, 2, 3, 1).reshape(-1, c)   # a view when x is channels-last
        out = torch.addmm(self.beta, pixels * pixels, self.gamma_t)
        out.rsqrt_().mul_(pixels)
        return out.view(b, h, w, c).permute(0, 3, 1, 2)


def inference_analysis(g_a: nn.Sequential) -> nn.Sequential:
    """A copy of a trained analysis transform for encoding: channels-last convolutions and
    `InferenceGDN`, about 1.6x faster on the CPU (0.15 s instead of 0.24 s at 768x512); feed it
    channels-last input. The encoder's analysis needs no exact arithmetic, only the decoder does."""
    layers = [InferenceGDN(m) if isinstance(m, GDN) else copy.deepcopy(m) for m in g_a]
    return nn.Sequential(*layers).to(memory_format=torch.channels_last).eval()


class FactorizedPrior(nn.Module):
    """Ballé's non-parametric per-channel density for the hyper-latent z (factorized prior).

    `likelihood(z)` gives the probability mass of each integer-quantized value, used during training.
    `cdf_at(points)` evaluates the cumulative at arbitrary points, used once to build integer tables.
    """

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0):
        super().__init__()
        self.channels = channels
        dims = (1, *filters, 1)
        scale = init_scale ** (1 / (len(filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(filters) + 1):
            init = math.log(math.expm1(1 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[i + 1], 1) - 0.5))
            if i < len(filters):
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))

    def _logits_cumulative(self, x: torch.Tensor) -> torch.Tensor:
        # x: (C, 1, N)
        for i, (m, b) in enumerate(zip(self.matrices, self.biases)):
            x = torch.matmul(F.softplus(m), x) + b
            if i < len(self.factors):
                x = x + torch.tanh(self.factors[i]) * torch.tanh(x)
        return x

    def cdf_at(self, points: torch.Tensor) -> torch.Tensor:
        """CDF of each channel at `points` (shape (C, N)); returns (C, N)."""
        return torch.sigmoid(self._logits_cumulative(points.unsqueeze(1))).squeeze(1)

    def likelihood(self, z: torch.Tensor, step: float = 1.0) -> torch.Tensor:
        """Mass of [z - step/2, z + step/2] per element of z (B, C, H, W): the bin of a symbol
        round(z / step) (model 16 codes z in bins of 1.25)."""
        b, c, h, w = z.shape
        x = z.permute(1, 0, 2, 3).reshape(c, 1, -1)
        lower = self._logits_cumulative(x - step / 2)
        upper = self._logits_cumulative(x + step / 2)
        sign = -torch.sign(lower + upper).detach()
        mass = (torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower)).abs()
        return mass.reshape(c, b, h, w).permute(1, 0, 2, 3)
