"""Learned post-filter (v14): a small CNN that corrects the decoded luma before the loop filter.

The loop filter (codec/loopfilter.py) is fitted per image and sent; this network is trained once
(training/postfilter.py, on float reconstructions of the frozen v13 codec) and costs no bits. It
sees the decoded Y'CbCr planes as 10-bit integers and the quality code, and adds a correction to
luma (PSNR-Y is what is judged). Its inputs are exact integers at scale 2^-10 and its correction
is dyadic, so its integer form (`IntegerPostFilter`, codec/integer/networks.py) is exact on every
machine; the loop filter is then fitted on its output.
"""
from __future__ import annotations

import torch
from torch import nn

IN_BITS = 10          # the inputs (10-bit planes, quality code >> Q_SHIFT) enter at scale 2^-IN_BITS
Q_SHIFT = 6           # quality codes 0..65535 enter as 0..1023
GAIN = 16.0           # the network's output times GAIN is the luma correction in 10-bit levels


class PostFilter(nn.Module):
    """Luma (10-bit levels, not yet rounded) from the decoded 10-bit Y'CbCr planes and the quality
    code. The last layer starts at zero: the untrained post-filter changes nothing."""

    def __init__(self, channels: int = 16, layers: int = 3):
        super().__init__()
        convs, c_in = [], 4
        for _ in range(layers - 1):
            convs += [nn.Conv2d(c_in, channels, 3, padding=1), nn.ReLU()]
            c_in = channels
        convs.append(nn.Conv2d(c_in, 1, 3, padding=1))
        nn.init.zeros_(convs[-1].weight)
        nn.init.zeros_(convs[-1].bias)
        self.net = nn.Sequential(*convs)
        self.config = {"channels": channels, "layers": layers}

    @staticmethod
    def inputs(planes10: torch.Tensor, q_codes: torch.Tensor) -> torch.Tensor:
        """The integer input (N, 4, H, W): the three 10-bit planes and the quality code >> Q_SHIFT."""
        q = (q_codes.to(torch.int64) >> Q_SHIFT).to(planes10.dtype).view(-1, 1, 1, 1)
        return torch.cat([planes10, q.expand(-1, 1, *planes10.shape[2:])], 1)

    def forward(self, planes10: torch.Tensor, q_codes: torch.Tensor) -> torch.Tensor:
        x = self.inputs(planes10, q_codes) * 2.0 ** -IN_BITS
        return planes10[:, :1] + GAIN * self.net(x)

    @classmethod
    def from_state(cls, state: dict) -> "PostFilter":
        """The network of a saved {"config", "state_dict"} (training/postfilter.py's checkpoint, a
        bundle's "postfilter" entry), ready for inference."""
        net = cls(**state["config"])
        net.load_state_dict({k: v.float() for k, v in state["state_dict"].items()})
        return net.eval()

    def macs_per_pixel(self) -> int:
        return sum(m.weight.numel() for m in self.net if isinstance(m, nn.Conv2d))
