"""Rate matching: the trials of the last encode (quality code, bpp) against the target."""
from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDockWidget, QLabel, QSizePolicy, QVBoxLayout, QWidget

# The plot is redrawn while the engine's worker keeps both cores busy (a new trace arrives as the
# decode starts), and on a 2-core CPU three paints of it in a row held the GUI thread up by about
# 100 ms. So a new trace changes the plot in one paint: its items are made once and updated, the
# view range is set here instead of auto-ranged during the paint, and neither the left axis (tick
# labels of another width) nor the text below (another number of lines) can change the dock's
# layout. No grid: with it one paint took 28 ms (median, idle), without it 6 ms; the target and
# tolerance lines are the reference that matters here.
AXIS_WIDTH = 56
TEXT_LINES = 3


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
        left = self.plot.getAxis("left")
        left.setWidth(AXIS_WIDTH)
        left.enableAutoSIPrefix(False)     # bpp as bpp (0.2485), not "bpp (x0.001)" 248.5
        self.plot.disableAutoRange()
        self.trials = self.plot.plot([], [], pen=pg.mkPen("w"), symbol="o", symbolBrush="y")
        self.target_line = self.plot.addLine(y=0, pen=pg.mkPen("r", style=Qt.PenStyle.DashLine))
        self.floor_line = self.plot.addLine(y=0, pen=pg.mkPen((255, 120, 120), style=Qt.PenStyle.DotLine))
        self.text = QLabel("")
        self.text.setWordWrap(True)
        self.text.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.text.setFixedHeight(self.text.fontMetrics().lineSpacing() * TEXT_LINES + 4)
        self.text.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.plot, 1)
        lay.addWidget(self.text)
        self.setWidget(w)
        self.trace: list[tuple[int, float]] = []
        self._target: float | None = None
        self._show_lines(False)

    def _show_lines(self, on: bool) -> None:
        self.target_line.setVisible(on)
        self.floor_line.setVisible(on)

    def show_trace(self, trace, target: float | None, tolerance: float = 0.01) -> None:
        """Plot (quality code, bpp) trials in order, with the target and the tolerance band."""
        trace = [(int(q), float(b)) for q, b in trace]
        if trace and (trace, target) == (self.trace, self._target):
            return          # unchanged: no replot
        self.trace, self._target = trace, target
        if not self.trace:
            self.trials.setData([], [])
            self._show_lines(False)
            self.text.setText("no rate matching (fixed quality or a bitstream from disk)")
            return
        bpps = [b for _, b in self.trace]
        trials = list(range(1, len(bpps) + 1))
        self.trials.setData(trials, bpps)
        self.plot.getAxis("bottom").setTicks([[(i, str(i)) for i in trials]])
        shown = list(bpps)
        if target is not None:
            self.target_line.setValue(target)
            self.floor_line.setValue(target * (1 - tolerance))
            shown += [target, target * (1 - tolerance)]
        self._show_lines(target is not None)
        self.plot.setRange(xRange=(0.5, len(bpps) + 0.5), yRange=(min(shown), max(shown)), padding=0.08)
        self.plot.getViewBox().updateMatrix()    # now, not in the paint (which would then need another)
        self.text.setText("trials (quality code → bpp): " +
                          ", ".join(f"{q}→{b:.4f}" for q, b in self.trace))
