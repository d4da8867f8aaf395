"""Rounding a transposed convolution's weights to a short integer grid so that its output, not each
weight, stays closest to the float layer's: GPTQ (Frantar et al. 2022, after Optimal Brain
Quantization). Written here because the GPTQ packages target the linear layers of language models,
while these layers are transposed convolutions, whose output phases each see their own taps, and
because the grid must be the one `fixedpoint.quantize_layer` derives, so that the export's integers
are exactly the weights chosen here.

For one output phase, the weights W (Cout x K) act on input neighbourhoods u (K) and the output
error of rounded weights Q is sum over positions of |(W - Q) u|^2 = tr((W - Q) H (W - Q)^T), H =
sum u u^T over calibration inputs. GPTQ rounds one column of W at a time and spreads the rounding
error over the columns not yet rounded, in the proportions that minimise that error given H
(through the Cholesky factor of H^-1), columns taken in order of decreasing input energy.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .fixedpoint import phase_offsets, phase_taps, weight_steps

DAMP = 0.01          # H + DAMP * mean(diag H) * I: keeps the inverse well-conditioned
CHUNK = 16384        # positions per Hessian product, to bound memory at full resolution


def input_hessian(inputs: list[torch.Tensor], k: int, stride: int, padding: int) -> torch.Tensor:
    """H = sum of u u^T (float64, Cin*T*T square) over every input position, u the T x T input
    neighbourhood (channel-major, then tap row, tap column) that the phases of a transposed
    convolution (kernel k) read: tap row ti is input row m - dmax + ti for output row stride*m + a."""
    dmax, dmin = phase_offsets(k, stride, padding)
    taps = dmax - dmin + 1
    h = None
    for x in inputs:
        u = F.unfold(F.pad(x.float(), (dmax, -dmin, dmax, -dmin)), taps)[0]     # (Cin*T*T, P)
        for c in range(0, u.shape[1], CHUNK):
            part = u[:, c:c + CHUNK]
            part = (part @ part.T).double()
            h = part if h is None else h + part
    return h


def phase_entries(cin: int, k: int, stride: int, padding: int) -> list[tuple[torch.Tensor, ...]]:
    """For each output phase of a transposed convolution: the rows of `input_hessian` its taps
    read, and the (input channel, kernel row, kernel column) of the weight each row meets."""
    dmax, dmin = phase_offsets(k, stride, padding)
    taps = dmax - dmin + 1
    entries = []
    for phase in phase_taps(k, stride, padding):
        ti, tj, ki, kj = (torch.tensor(v).repeat(cin) for v in zip(*phase))
        channels = torch.arange(cin).repeat_interleave(len(phase))
        entries.append(((channels * taps + ti) * taps + tj, channels, ki, kj))
    return entries


def round_transposed_conv(m: nn.ConvTranspose2d, inputs: list[torch.Tensor], weight_bits: int) -> torch.Tensor:
    """Weights of `m` (same shape) on its per-output-channel grid max|w| / (2^(bits-1) - 1),
    rounded by GPTQ on the layer's `inputs`. Each channel's largest weight stays at the end of the
    grid, so `quantize_layer` derives this same grid from the result."""
    if not isinstance(m, nn.ConvTranspose2d):
        raise TypeError(f"GPTQ rounding is written for transposed convolutions, not {type(m).__name__}")
    stride, padding, k = m.stride[0], m.padding[0], m.kernel_size[0]
    w = m.weight.detach().double()                     # (Cin, Cout, k, k)
    qmax = (1 << (weight_bits - 1)) - 1
    step = torch.from_numpy(weight_steps(w.numpy(), True, weight_bits))
    h = input_hessian(inputs, k, stride, padding)
    out = w.clone()
    for rows, ci, ki, kj in phase_entries(w.shape[0], k, stride, padding):
        out[ci, :, ki, kj] = gptq(w[ci, :, ki, kj].T, h[rows][:, rows], step, qmax).T
    return out.float()


def gptq(w: torch.Tensor, h: torch.Tensor, step: torch.Tensor, qmax: int) -> torch.Tensor:
    """w (Cout x K) rounded to multiples of step (per row) within +-qmax steps, each column's
    rounding error compensated on the later columns for the input second moments h (K x K).
    Entries at +-qmax steps in w (each row's largest) are kept there."""
    w, h = w.clone(), h.clone()
    ends = torch.where((w.abs() / step[:, None]).round() >= qmax, torch.sign(w) * qmax, 0)
    dead = torch.diag(h) == 0                        # inputs never non-zero: their weights do not matter
    h[dead, dead] = 1
    h += DAMP * torch.diag(h).mean() * torch.eye(len(h), dtype=h.dtype)
    order = torch.argsort(torch.diag(h), descending=True)
    w, h, ends = w[:, order], h[order][:, order], ends[:, order]
    u = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    q = torch.empty_like(w)
    for i in range(w.shape[1]):
        col = (w[:, i] / step).round().clamp(-qmax, qmax)
        col = torch.where(ends[:, i] != 0, ends[:, i], col) * step
        q[:, i] = col
        err = (w[:, i] - col) / u[i, i]
        w[:, i + 1:] -= err[:, None] * u[i, i + 1:][None, :]
    return q[:, torch.argsort(order)]
