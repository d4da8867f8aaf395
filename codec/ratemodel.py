"""An image's rate curve predicted from its latent, before any trial: the fast matcher's prior.

The analysis output y does not depend on the quality; only the steps do. So the bits an element
costs are modelled as one learned function of u = log2(|y| / step), the same for every element,
channel and image (`bits(u)`, a table fitted by least squares on training photos with
`training/rate_model.py`). The predicted size at a quality code is the sum of bits(u) over the
latent; it is computed from a histogram of log2|y| per channel, made once per image. Images still
differ from the prediction by a near-constant log-rate offset, which the matcher measures with its
first trial; the shape of the curve in the quality is what the prediction gets right, far better
than the model's mean curve (on held-out training photos the log-rate error one table step away
from a trial falls by about 40%).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .model.quality import Q16, QMAX, log2_step_q16

CODES = np.linspace(0, QMAX, 33).round().astype(np.int64)   # codes the curve is tabulated at
V_LO, V_HI = -24.0, 16.0       # range of log2|y| - k/4 histogrammed (values outside are clamped)
EPS = 2.0 ** -24               # |y| below this counts as 2^-24


def magnitude_histogram(y: np.ndarray, kmap: np.ndarray, width: float) -> np.ndarray:
    """(channels, bins) counts of log2|y| - k/4 (the step offset map moves every channel's step)."""
    v = np.log2(np.abs(y) + EPS) - kmap[None] / 4
    nb = int(round((V_HI - V_LO) / width))
    b = np.clip(((v - V_LO) / width).astype(np.int64), 0, nb - 1).reshape(y.shape[0], -1)
    b += (np.arange(y.shape[0]) * nb)[:, None]
    return np.bincount(b.ravel(), minlength=y.shape[0] * nb).reshape(y.shape[0], nb).astype(np.float64)


def code_log2_steps(log2_steps_q16: np.ndarray, codes: np.ndarray = CODES) -> np.ndarray:
    """(codes, channels) log2 step of every channel at each code."""
    return np.stack([log2_step_q16(log2_steps_q16, int(q)) / Q16 for q in codes])


@dataclass
class RateModel:
    """bits(u) tabulated at u = u_lo + (i + 1/2) * width, linear in between and flat outside."""

    u_lo: float
    width: float
    bits: np.ndarray

    @classmethod
    def from_dict(cls, d: dict) -> "RateModel":
        return cls(float(d["u_lo"]), float(d["width"]), np.asarray(d["bits"], dtype=np.float64))

    def to_dict(self) -> dict:
        return dict(u_lo=self.u_lo, width=self.width, bits=[round(float(b), 6) for b in self.bits])

    def centers(self) -> np.ndarray:
        return self.u_lo + (np.arange(len(self.bits)) + 0.5) * self.width

    def predict_bits(self, hist: np.ndarray, log2_steps: np.ndarray) -> np.ndarray:
        """Predicted total bits at each row of `log2_steps` (codes, channels) for an image with
        magnitude histogram `hist` (channels, bins of this model's width).

        Sum over channels c and bins b of hist[c, b] * bits(v_b - L_c): the histogram is first
        correlated with bits() at every shift on the bin grid (one matrix product), then each
        channel's step picks its shift by linear interpolation."""
        v = V_LO + (np.arange(hist.shape[1]) + 0.5) * self.width
        lo, hi = np.floor(log2_steps.min()) - 1, np.ceil(log2_steps.max()) + 1
        shifts = np.arange(lo, hi + self.width, self.width)
        table = np.interp(v[:, None] - shifts[None, :], self.centers(), self.bits)   # (bins, shifts)
        # (channels, shifts); in torch: a numpy BLAS product leaves OpenBLAS threads spinning, which
        # slowed the torch work of every following trial by a third on 2 cores
        per_shift = (torch.from_numpy(hist) @ torch.from_numpy(table)).numpy()
        pos = (log2_steps - lo) / self.width
        i = np.clip(np.floor(pos).astype(np.int64), 0, len(shifts) - 2)
        frac = pos - i
        ch = np.arange(hist.shape[0])[None, :]
        return ((1 - frac) * per_shift[ch, i] + frac * per_shift[ch, i + 1]).sum(axis=1)

    @classmethod
    def fit(cls, hists: list[np.ndarray], log2_steps: np.ndarray, bits: np.ndarray, width: float = 0.125,
            u_range: tuple[float, float] = (-10.0, 8.0), smooth: float = 30.0) -> "RateModel":
        """Least-squares bits(u) from images' histograms and their exact sizes `bits` (images, codes)
        at the codes of `log2_steps` (codes, channels); residuals are relative (each row divided by
        its size) and the table's second differences are penalized by `smooth`."""
        centers_v = V_LO + (np.arange(hists[0].shape[1]) + 0.5) * width
        nb = int(round((u_range[1] - u_range[0]) / width))
        rows, target = [], []
        for hist, sizes in zip(hists, bits):
            for steps, size in zip(log2_steps, sizes):
                u = centers_v[None, :] - steps[:, None]                          # (channels, bins)
                j = np.clip(((u - u_range[0]) / width).astype(np.int64), 0, nb - 1)
                rows.append(np.bincount(j.ravel(), weights=hist.ravel(), minlength=nb) / size)
                target.append(1.0)
        penalty = np.diff(np.eye(nb), 2, axis=0) * smooth
        a = np.vstack([np.array(rows), penalty])
        b = np.concatenate([np.array(target), np.zeros(len(penalty))])
        return cls(u_range[0], width, np.linalg.lstsq(a, b, rcond=None)[0])
