"""Checkerboard context model (He et al. 2021): the second half of y is coded knowing the first.

The latent grid is split like a checkerboard. Anchors ((row + column) even) are coded with the
hyperprior's means and scales, as before. Then a small network looks at the decoded anchor symbols
around every non-anchor, together with the hyperprior's scale there, and corrects the non-anchor's
mean and scale. Both halves decode in parallel (two passes, no serial autoregression).

Everything the network sees and says is in units of the local quantization step: anchor symbols
(integers) and log2(sigma / delta) in, mean shift (in steps) and log2-scale shift out. That keeps
one network valid at every quality and under any step-offset map, and its inputs are exact integers
or dyadic numbers, so its integer form (codec/integer/networks.py) is exact on every machine.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

SYMBOL_CLIP = 127     # anchor symbols enter the network clipped to +-127 (only context, never coded)
LR_BITS = 8           # log2(sigma / delta) enters rounded to 1/256


def anchor_mask(h: int, w: int, device=None) -> torch.Tensor:
    """(h, w) bool: True at anchors, the cells coded first ((row + column) even)."""
    i = torch.arange(h, device=device)[:, None]
    j = torch.arange(w, device=device)[None, :]
    return (i + j) % 2 == 0


class CheckerboardContext(nn.Module):
    """Mean shift (steps) and log2-scale shift of the non-anchors from anchor symbols and the
    hyperprior's log2(sigma / delta). The last layer starts at zero: the untrained context model is
    exactly the hyperprior."""

    def __init__(self, M: int, hidden: int = 128, kernel: int = 3):
        super().__init__()
        self.M = M
        self.net = nn.Sequential(nn.Conv2d(2 * M, hidden, kernel, padding=kernel // 2), nn.ReLU(),
                                 nn.Conv2d(hidden, hidden, 1), nn.ReLU(),
                                 nn.Conv2d(hidden, 2 * M, 1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    @staticmethod
    def inputs(s_anchor: torch.Tensor, log2_ratio: torch.Tensor) -> torch.Tensor:
        """The network's input (B, 2M, h, w) at scale 2^-LR_BITS: the anchors' values in steps from
        the hyperprior's mean (their symbols, plus the mean shifts of channel slices; zero
        elsewhere), clipped and rounded, and log2(sigma / delta) rounded, as the integer network
        receives them."""
        one = 1 << LR_BITS
        s = torch.round(s_anchor.clamp(-SYMBOL_CLIP, SYMBOL_CLIP) * one)
        lr = torch.round(log2_ratio * one).clamp(-(1 << 15) + 1, (1 << 15) - 1)
        return torch.cat([s, lr], dim=1) / one

    def forward(self, s_anchor: torch.Tensor, log2_ratio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(self.inputs(s_anchor, log2_ratio))
        return out[:, :self.M], out[:, self.M:]


class ChannelSlices(nn.Module):
    """Channel-conditional context (Minnen & Singh 2020; He et al. 2022's ELIC puts it beside the
    checkerboard) over one half of the checkerboard, `cells`: its channels are coded in `groups`
    equal groups, one after another, and a network per group after the first corrects that group's
    means (in steps) and log2 scales there from the symbols of the groups before it (on these
    cells, and on any cells coded before, `known`) and its own log2(sigma / delta). Used for the
    anchors (v11) and for the non-anchors after the checkerboard's correction (v12). Same layer
    shapes and integer inputs as `CheckerboardContext`, so the same integer form runs it; the last
    layers start at zero (no correction)."""

    def __init__(self, M: int, groups: int = 4, hidden: int = 128, kernel: int = 3):
        super().__init__()
        if M % groups:
            raise ValueError(f"{M} channels do not split into {groups} equal groups")
        self.C = M // groups
        self.nets = nn.ModuleList()
        for g in range(1, groups):
            net = nn.Sequential(nn.Conv2d(self.C * (g + 1), hidden, kernel, padding=kernel // 2), nn.ReLU(),
                                nn.Conv2d(hidden, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, 2 * self.C, 1))
            nn.init.zeros_(net[-1].weight)
            nn.init.zeros_(net[-1].bias)
            self.nets.append(net)

    def forward(self, r: torch.Tensor, log2_ratio: torch.Tensor, cells: torch.Tensor,
                quantize: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], known: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean shift (steps) and log2-scale shift at every one of `cells` (zero elsewhere and in the
        first group), and the symbols, group by group as the coder goes: each group's symbols
        `quantize(r - shift, log2_ratio + scale shift)` (detached; meaningful on `cells`) are the
        next groups' context, with `known` (the symbols of the cells coded before, zero on `cells`)."""
        a = cells.to(r.dtype)
        d_mu, d_lr, symbols = [torch.zeros_like(r[:, :self.C])], [torch.zeros_like(r[:, :self.C])], []
        for g in range(len(self.nets) + 1):
            ch = slice(g * self.C, (g + 1) * self.C)
            if g:
                before = torch.cat(symbols, 1) * a
                if known is not None:
                    before = before + known[:, :ch.start]
                out = self.nets[g - 1](CheckerboardContext.inputs(before, log2_ratio[:, ch]))
                d_mu.append(out[:, :self.C] * a)
                d_lr.append(out[:, self.C:] * a)
            symbols.append(quantize(r[:, ch] - d_mu[g], log2_ratio[:, ch] + d_lr[g]).detach())
        return torch.cat(d_mu, 1), torch.cat(d_lr, 1), torch.cat(symbols, 1)


class LatentResidual(nn.Module):
    """Latent residual prediction (Minnen & Singh 2020): what rounding and RDOQ took from each
    latent, in steps, predicted from everything the decoder has once y is decoded (every symbol and
    the log2(sigma / delta) it was coded with), so the decoder puts the latent back at
    mu + (s + p) * delta instead of the centre of its bin. The rate does not change. Same first
    layer and integer inputs as `CheckerboardContext` (so the same integer form runs it); the last
    layer starts at zero (the bin centres)."""

    def __init__(self, M: int, hidden: int = 128, kernel: int = 3):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(2 * M, hidden, kernel, padding=kernel // 2), nn.ReLU(),
                                 nn.Conv2d(hidden, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, M, 1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, symbols: torch.Tensor, log2_ratio: torch.Tensor) -> torch.Tensor:
        """The predicted residual (B, M, h, w) in steps."""
        return self.net(CheckerboardContext.inputs(symbols, log2_ratio))
