"""Variable-rate mean-scale hyperprior (Ballé 2018, Minnen 2018) with gain-unit quality steps.

Quality: a real `q` in [0, levels-1] selects per-channel quantization steps by interpolating, in the
log2 domain, between learned step vectors (Cui et al. 2021). A per-latent-cell offset map `k`
multiplies the step by 2^(k/4). Symbols are s = round((y - mu) / delta); y_hat = mu + s * delta.

The hyper-synthesis outputs the mean and log2 of the scale, so the decoder can derive the scale
index by comparing against a table of log2 thresholds: no exp/log at decode time.
The synthesis and hyper-synthesis use only convolutions, transposed convolutions and ReLU.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..entropy.rdoq import KAPPA
from .context import ChannelSlices, CheckerboardContext, LatentResidual, anchor_mask
from .layers import GDN, FactorizedPrior

SCALE_MIN = 0.11  # smallest scale of the CDF table (in units of the quantization step)


def conv(cin: int, cout: int, k: int = 5, s: int = 2) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=s, padding=k // 2)


def deconv(cin: int, cout: int, k: int = 5, s: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, k, stride=s, padding=k // 2, output_padding=s - 1)


class VariableRateHyperprior(nn.Module):
    """The Bitlens learned codec network. `config` is stored with the weights."""

    def __init__(self, N: int = 128, M: int = 192, Nz: int = 128, levels: int = 6,
                 lambdas: tuple[float, ...] = (0.0006, 0.0018, 0.0054, 0.016, 0.048, 0.15),
                 hyper_gain: bool = False, context: dict | None = None, slices: dict | None = None,
                 rest_slices: dict | None = None, residual: dict | None = None):
        super().__init__()
        self.config = dict(N=N, M=M, Nz=Nz, levels=levels, lambdas=list(lambdas))
        if hyper_gain:
            self.config["hyper_gain"] = True
        if context is not None:
            self.config["context"] = dict(context)
        if slices is not None:
            if context is None:
                raise ValueError("channel slices of the anchors need the checkerboard context model")
            self.config["slices"] = dict(slices)
        if rest_slices is not None:
            if slices is None:
                raise ValueError("channel slices of the non-anchors need those of the anchors")
            self.config["rest_slices"] = dict(rest_slices)
        if residual is not None:
            self.config["residual"] = dict(residual)
        self.M, self.levels, self.hyper_gain = M, levels, hyper_gain
        # bin width of z's symbols (model 16 codes round(z / 1.25)); a training setting, not part of
        # the network's configuration: the shipped bundle carries it as `z_step`
        self.z_step = 1.0
        # how y's rate is counted in training (`Y_RATES`, `rate_input`); a training setting too
        self.y_rate = "noise"
        self.g_a = nn.Sequential(conv(3, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, M))
        self.g_s = nn.Sequential(deconv(M, N), nn.ReLU(), deconv(N, N), nn.ReLU(),
                                 deconv(N, N), nn.ReLU(), deconv(N, 3))
        self.h_a = nn.Sequential(conv(M, N, 3, 1), nn.ReLU(), conv(N, N), nn.ReLU(), conv(N, Nz))
        self.h_s = nn.Sequential(deconv(Nz, N), nn.ReLU(), deconv(N, N * 3 // 2), nn.ReLU(),
                                 conv(N * 3 // 2, 2 * M, 3, 1))
        self.prior_z = FactorizedPrior(Nz)
        # checkerboard context model of the second half of y (None: hyperprior only)
        self.context = CheckerboardContext(M, **context) if context is not None else None
        # channel-conditional context of the anchors (None: the anchors use the hyperprior alone)
        self.slices = ChannelSlices(M, **slices) if slices is not None else None
        # channel-conditional context of the non-anchors, after the checkerboard's correction (v12)
        self.rest_slices = ChannelSlices(M, **rest_slices) if rest_slices is not None else None
        # latent residual prediction: the decoder's y_hat beyond the bin centres (v13; None: centres)
        self.residual = LatentResidual(M, **residual) if residual is not None else None
        # learned log2 quantization steps, one vector per quality level (level 0 = coarsest)
        init = torch.linspace(1.5, -2.5, levels).unsqueeze(1).repeat(1, M)
        self.log2_steps = nn.Parameter(init)

    # ---- quality -----------------------------------------------------------------------------
    def log2_step(self, q: torch.Tensor) -> torch.Tensor:
        """Per-channel log2 step for qualities q (B,) -> (B, M), linear in log2 between levels."""
        q = q.clamp(0, self.levels - 1)
        lo = q.floor().long().clamp(max=self.levels - 2)
        frac = (q - lo).unsqueeze(1)
        return self.log2_steps[lo] * (1 - frac) + self.log2_steps[lo + 1] * frac

    def lmbda(self, q: torch.Tensor) -> torch.Tensor:
        """Rate-distortion trade-off used in training for quality q (log-linear between levels)."""
        loglam = torch.log(torch.tensor(self.config["lambdas"], device=q.device))
        q = q.clamp(0, self.levels - 1)
        lo = q.floor().long().clamp(max=self.levels - 2)
        frac = q - lo
        return torch.exp(loglam[lo] * (1 - frac) + loglam[lo + 1] * frac)

    # ---- hyperprior --------------------------------------------------------------------------
    def hyper_analysis(self, y: torch.Tensor, log2_step: torch.Tensor) -> torch.Tensor:
        """Hyper-latent (before rounding) of y. With `hyper_gain` the hyper-analysis sees y divided by
        the global quantization step (B, M), so the side information shrinks at low quality instead
        of costing the same bits at every rate."""
        if self.hyper_gain:
            y = y * torch.exp2(-log2_step)[:, :, None, None]
        return self.h_a(y)

    def coded_z(self, z: torch.Tensor, step: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """z as the codec sends it, round(z / step) x step, rounded straight through (the
        hyper-analysis gets gradients), and its bits: the factorized prior's mass over bins of the
        step (default: the model's `z_step`)."""
        step = self.z_step if step is None else step
        z_hat = z + (torch.round(z / step) * step - z).detach()
        return z_hat, -torch.log2(self.prior_z.likelihood(z_hat, step).clamp_min(1e-9)).sum()

    def entropy_parameters(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log2 scale of every latent element from the decoded hyper-latent."""
        mu, log2_sigma = self.h_s(z_hat).chunk(2, dim=1)
        return mu, log2_sigma

    # ---- training forward --------------------------------------------------------------------
    def forward(self, x: torch.Tensor, q: torch.Tensor, kmap: torch.Tensor | None = None) -> dict:
        """Training pass: x (B,3,H,W) Y'CbCr in [0,1], q (B,), kmap (B,1,H/16,W/16) offsets or None.

        Returns reconstruction and total bits of y and z (y's rate by the noise proxy, or at real
        rounding with `y_rate` "ste"; z in bins of `z_step`; straight-through rounding for the
        synthesis input).
        """
        # under CPU/GPU autocast the transforms run in bf16, except the layers that produce y and
        # consume y_hat (their precision is the quantizer's); everything counting bits stays float32
        y = self._fp32(self.g_a[-1], self.g_a[:-1](x))
        log2_step = self.log2_step(q)
        z = self.hyper_analysis(y, log2_step).float()
        with torch.autocast(x.device.type, enabled=False):
            z_hat, bits_z = self.coded_z(z)
        mu, log2_sigma = (t.float() for t in self.entropy_parameters(z_hat))
        log2_delta = log2_step[:, :, None, None]
        if kmap is not None:
            log2_delta = log2_delta + kmap / 4
        delta = torch.exp2(log2_delta)
        r = (y - mu) / delta
        log2_ratio = log2_sigma - log2_delta
        shift = 0.0   # mean shift in steps: the context models'
        if self.context is not None:
            # as the encoder does: anchors quantized first (with RDOQ; channel group by group with
            # slices), then the non-anchors coded with the means and scales the context network
            # derives from the anchors' symbols
            anchors = anchor_mask(*r.shape[-2:], device=r.device)
            with torch.autocast(r.device.type, enabled=False):   # their outputs count bits: float32
                if self.slices is not None:
                    shift, a_lr, symbols = self.slices(r, log2_ratio, anchors, rdoq_symbols)
                else:
                    a_lr, symbols = 0.0, rdoq_symbols(r, log2_ratio)
                # the anchors from the hyperprior's mean, with its scales: what the context saw in training
                anchor_values = ((symbols + shift) * anchors).detach()
                d_mu, d_lr = self.context(anchor_values, log2_ratio)
            later = (~anchors).to(r.dtype)
            shift = shift + d_mu * later
            log2_ratio = log2_ratio + a_lr + d_lr * later
            if self.rest_slices is not None:   # the non-anchors' channels in groups too
                with torch.autocast(r.device.type, enabled=False):
                    e_mu, e_lr, _ = self.rest_slices(r - shift, log2_ratio, ~anchors, rdoq_symbols,
                                                     known=(symbols * anchors).detach())
                shift, log2_ratio = shift + e_mu, log2_ratio + e_lr
            r = r - shift
        r_round = r + (torch.round(r) - r).detach()
        scale = torch.exp2(log2_ratio).clamp_min(SCALE_MIN)
        bits_y = -torch.log2(gaussian_mass(rate_input(r, self.y_rate), scale).clamp_min(1e-9)).sum()
        if self.residual is not None:   # from the symbols (as plainly rounded here) and coded scales
            with torch.autocast(r.device.type, enabled=False):
                shift = shift + self.residual(torch.round(r).detach(), log2_ratio)
        x_hat = self.g_s[1:](self._fp32(self.g_s[0], mu + (r_round + shift) * delta)).float()
        return dict(x_hat=x_hat, bits_y=bits_y, bits_z=bits_z)


    @staticmethod
    def _fp32(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return layer(x.float())


Y_RATES = ("noise", "ste", "round")


def rate_input(r: torch.Tensor, y_rate: str) -> torch.Tensor:
    """Where y's residuals (in steps) are read for their rate: `noise`, plus uniform noise (the
    training proxy); `ste`, rounded with the gradient passed straight through (the rate the coder
    sees, trainable); `round`, rounded (the rate the coder sees, for measuring)."""
    if y_rate == "noise":
        return r + torch.empty_like(r).uniform_(-0.5, 0.5)
    if y_rate == "ste":
        return r + (torch.round(r) - r).detach()
    if y_rate == "round":
        return torch.round(r)
    raise ValueError(f"y_rate must be one of {', '.join(Y_RATES)}, not {y_rate!r}")


def rdoq_symbols(r: torch.Tensor, log2_ratio: torch.Tensor) -> torch.Tensor:
    """The encoder's RDOQ (codec/entropy/rdoq.py) with the continuous Gaussian in place of the
    tables: a symbol moves one step toward the mean where that saves more bits than KAPPA times
    the squared error it adds. Context networks learn from anchors quantized this way."""
    s = torch.round(r)
    nearer = s - torch.sign(s)
    scale = torch.exp2(log2_ratio).clamp_min(SCALE_MIN)
    extra_bits = torch.log2(gaussian_mass(s, scale).clamp_min(1e-9) / gaussian_mass(nearer, scale).clamp_min(1e-9))
    take = (s != 0) & (extra_bits + KAPPA * ((r - nearer) ** 2 - (r - s) ** 2) < 0)
    return torch.where(take, nearer, s)


def gaussian_mass(v: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Mass of a zero-mean Gaussian of the given scale on [v - 0.5, v + 0.5]."""
    v = v.abs()
    c = 2 ** -0.5
    upper = 0.5 * torch.erfc(-(0.5 - v) / scale * c)
    lower = 0.5 * torch.erfc(-(-0.5 - v) / scale * c)
    return upper - lower


def pad_to_multiple(x: torch.Tensor, multiple: int = 64) -> torch.Tensor:
    """Replicate-pad (B,C,H,W) on the right/bottom to a multiple of the network's total stride."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x
