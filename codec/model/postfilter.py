"""Learned post-filter (v14; on 2x2 pixel blocks since v17): a small CNN that corrects the decoded
luma before the loop filter.

The loop filter (codec/loopfilter.py) is fitted per image and sent; this network is trained once
(training/postfilter.py, on float reconstructions of the frozen v13 codec) and costs no bits. It
sees the decoded Y'CbCr planes as 10-bit integers and the quality code, and adds a correction to
luma (PSNR-Y is what is judged). Its inputs are exact integers at scale 2^-10 and its correction
is dyadic, so its integer form (`IntegerPostFilter`, codec/integer/networks.py) is exact on every
machine; the loop filter is then fitted on its output.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IN_BITS = 10          # the inputs (10-bit planes, quality code >> Q_SHIFT) enter at scale 2^-IN_BITS
Q_SHIFT = 6           # quality codes 0..65535 enter as 0..1023
GAIN = 16.0           # the network's output times GAIN is the luma correction in 10-bit levels


def to_blocks(x: torch.Tensor, r: int) -> torch.Tensor:
    """A post-filter network's input from `PostFilter.inputs`-shaped planes: edge-padded to a
    multiple of r and folded into r x r blocks (a permutation, so exact for the integer form too)."""
    if r == 1:
        return x
    ph, pw = -x.shape[2] % r, -x.shape[3] % r
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return F.pixel_unshuffle(x, r)


def from_blocks(out: torch.Tensor, r: int, height: int, width: int) -> torch.Tensor:
    """The luma plane (N, 1, height, width) of a post-filter network's output."""
    return F.pixel_shuffle(out, r)[:, :, :height, :width] if r > 1 else out


class PostFilter(nn.Module):
    """Luma (10-bit levels, not yet rounded) from the decoded 10-bit Y'CbCr planes and the quality
    code. The last layer starts at zero: the untrained post-filter changes nothing.

    With `unshuffle` r > 1 (v17) the convolutions run at 1/r resolution on the r x r pixel blocks
    (space to depth, then depth to space for the luma correction): on this CPU's oneDNN a 4-layer
    network of 32 channels at half resolution, 8 times v14's parameters and 2.5 times its
    receptive field, costs half of v14's 3-layer, 16-channel network at full resolution."""

    def __init__(self, channels: int = 16, layers: int = 3, unshuffle: int = 1):
        super().__init__()
        self.unshuffle = unshuffle
        convs, c_in = [], 4 * unshuffle ** 2
        for _ in range(layers - 1):
            convs += [nn.Conv2d(c_in, channels, 3, padding=1), nn.ReLU()]
            c_in = channels
        convs.append(nn.Conv2d(c_in, unshuffle ** 2, 3, padding=1))
        nn.init.zeros_(convs[-1].weight)
        nn.init.zeros_(convs[-1].bias)
        self.net = nn.Sequential(*convs)
        self.config = {"channels": channels, "layers": layers, "unshuffle": unshuffle}

    @staticmethod
    def inputs(planes10: torch.Tensor, q_codes: torch.Tensor) -> torch.Tensor:
        """The integer input (N, 4, H, W): the three 10-bit planes and the quality code >> Q_SHIFT."""
        q = (q_codes.to(torch.int64) >> Q_SHIFT).to(planes10.dtype).view(-1, 1, 1, 1)
        return torch.cat([planes10, q.expand(-1, 1, *planes10.shape[2:])], 1)

    def forward(self, planes10: torch.Tensor, q_codes: torch.Tensor) -> torch.Tensor:
        x = self.inputs(planes10, q_codes) * 2.0 ** -IN_BITS
        out = from_blocks(self.net(to_blocks(x, self.unshuffle)), self.unshuffle, *planes10.shape[2:])
        return planes10[:, :1] + GAIN * out

    @classmethod
    def from_state(cls, state: dict) -> "PostFilter":
        """The network of a saved {"config", "state_dict"} (training/postfilter.py's checkpoint, a
        bundle's "postfilter" entry), ready for inference."""
        net = cls(**state["config"])
        net.load_state_dict({k: v.float() for k, v in state["state_dict"].items()})
        return net.eval()

    def convs(self) -> list[nn.Conv2d]:
        """The network's convolutions, first to last."""
        return [m for m in self.net if isinstance(m, nn.Conv2d)]

    def macs_per_pixel(self) -> int:
        return sum(m.weight.numel() for m in self.convs()) // self.unshuffle ** 2
