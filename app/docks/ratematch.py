"""Rate matching: the trials of the last encode (quality code, bpp) against the target."""
from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDockWidget, QLabel, QVBoxLayout, QWidget


class RateMatchDock(QDockWidget):
    def __init__(self, parent=None):
        super().__init__("Rate matching", parent)
        self.setObjectName("ratematch")
        w = QWidget()
        lay = QVBoxLayout(w)
        lay.setContentsMargins(2, 2, 2, 2)
        self.plot = pg.PlotWidget()
        self.plot.setLabel("bottom", "trial")
        self.plot.setLabel("left", "bpp")
        self.plot.showGrid(x=True, y=True, alpha=0.3)
        self.text = QLabel("")
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.plot, 1)
        lay.addWidget(self.text)
        self.setWidget(w)
        self.trace: list[tuple[int, float]] = []
        self._target: float | None = None

    def show_trace(self, trace, target: float | None, tolerance: float = 0.01) -> None:
        """Plot (quality code, bpp) trials in order, with the target and the tolerance band."""
        trace = [(int(q), float(b)) for q, b in trace]
        if trace and (trace, target) == (self.trace, self._target):
            return          # unchanged: no replot (an axis re-layout is a noticeable paint)
        self.trace, self._target = trace, target
        self.plot.clear()
        if not self.trace:
            self.text.setText("no rate matching (fixed quality or a bitstream from disk)")
            return
        bpps = [b for _, b in self.trace]
        self.plot.plot(range(1, len(bpps) + 1), bpps, pen=pg.mkPen("w"), symbol="o", symbolBrush="y")
        if target is not None:
            self.plot.addLine(y=target, pen=pg.mkPen("r", style=Qt.PenStyle.DashLine))
            self.plot.addLine(y=target * (1 - tolerance), pen=pg.mkPen((255, 120, 120), style=Qt.PenStyle.DotLine))
        self.text.setText("trials (quality code → bpp): " +
                          ", ".join(f"{q}→{b:.4f}" for q, b in self.trace))
