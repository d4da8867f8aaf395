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
        """The network's input (B, 2M, h, w) at scale 2^-LR_BITS: anchor symbols (zero elsewhere),
        clipped, and log2(sigma / delta) rounded, as the integer network receives them."""
        one = 1 << LR_BITS
        s = s_anchor.clamp(-SYMBOL_CLIP, SYMBOL_CLIP) * one
        lr = torch.round(log2_ratio * one).clamp(-(1 << 15) + 1, (1 << 15) - 1)
        return torch.cat([s, lr], dim=1) / one

    def forward(self, s_anchor: torch.Tensor, log2_ratio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(self.inputs(s_anchor, log2_ratio))
        return out[:, :self.M], out[:, self.M:]
