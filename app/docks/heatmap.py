"""Heatmap overlays: which block map is drawn over the views, and how opaque.

The maps themselves come from `codec.compare.Comparison` (per-block PSNR-Y of each codec, their
difference, our bits per block) and `codec.devices` (a decoder mismatch map); this module only picks
the panels, the colour map and the colour-bar range for the chosen one.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QDockWidget, QFormLayout, QLabel, QSlider, QWidget

CHOICES = {
    "none": "None",
    "psnr": "PSNR-Y per block: ours | VVC",
    "psnr_diff": "PSNR-Y per block: ours minus VVC",
    "bits": "Our bits per 16x16 block",
    "mismatch": "Decoder mismatch (Devices dock row)",
}


def _finite_range(arrays, cap: float | None = None) -> tuple[float, float]:
    vals = [a[np.isfinite(a)] for a in arrays if a is not None]
    vals = [v[v < cap] if cap is not None else v for v in vals]
    vals = np.concatenate(vals) if vals else np.zeros(0)
    if vals.size == 0:
        return 0.0, 1.0
    return float(vals.min()), float(vals.max())


class HeatmapModel:
    """The chosen heatmap and opacity; `layers` says what to draw for a comparison."""

    def __init__(self):
        self.choice = "none"
        self.opacity = 0.6

    def layers(self, comparison, mismatch: np.ndarray | None = None):
        """(layers {panel: array}, colour kind, (lo, hi), label, block) or None when nothing applies."""
        c = self.choice
        if c == "mismatch":
            if mismatch is None:
                return None
            return {"ours": mismatch}, "mismatch", (0.0, float(max(1, mismatch.max()))), "max |diff| (8-bit)", 1
        if comparison is None or c == "none":
            return None
        if c == "psnr":
            lo, hi = _finite_range([comparison.psnr_ours, comparison.psnr_anchor], cap=100.0)
            layers = {"ours": comparison.psnr_ours}
            if comparison.psnr_anchor is not None:
                layers["anchor"] = comparison.psnr_anchor
            return layers, "psnr", (lo, hi), "PSNR-Y [dB]", comparison.block
        if c == "psnr_diff":
            d = comparison.psnr_diff
            if d is None:
                return None
            ok = (comparison.psnr_ours < 100) & (comparison.psnr_anchor < 100)
            m = float(np.abs(d[ok]).max()) if ok.any() else 1.0
            return {"ours": d}, "diff", (-max(m, 0.1), max(m, 0.1)), "ours - VVC [dB]", comparison.block
        if c == "bits":
            if comparison.bits is None:
                return None
            return {"ours": comparison.bits}, "bits", (0.0, float(max(comparison.bits.max(), 1.0))), \
                "bits / block", comparison.block
        return None


class HeatmapDock(QDockWidget):
    changed = Signal()

    def __init__(self, parent=None):
        super().__init__("Heatmaps", parent)
        self.setObjectName("heatmaps")
        self.model = HeatmapModel()
        w = QWidget()
        form = QFormLayout(w)
        self.combo = QComboBox()
        for key, text in CHOICES.items():
            self.combo.addItem(text, key)
        self.opacity = QSlider(Qt.Orientation.Horizontal, minimum=0, maximum=100, value=60)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        form.addRow("Overlay", self.combo)
        form.addRow("Opacity", self.opacity)
        form.addRow(self.note)
        self.setWidget(w)
        self.combo.currentIndexChanged.connect(self._choice)
        self.opacity.valueChanged.connect(self._opacity)

    def set_choice(self, key: str) -> None:
        i = self.combo.findData(key)
        if i >= 0:
            self.combo.setCurrentIndex(i)

    def cycle(self) -> None:
        self.combo.setCurrentIndex((self.combo.currentIndex() + 1) % self.combo.count())

    def _choice(self) -> None:
        self.model.choice = self.combo.currentData()
        self.changed.emit()

    def _opacity(self, v: int) -> None:
        self.model.opacity = v / 100
        self.changed.emit()
