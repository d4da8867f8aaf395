"""RD curves of the current image: ours and the anchors at the chosen rates, BD-rate against VVC.

The numbers come from `codec.rd.rd_points` (run in a worker with progress and cancel); clicking a point
asks the main window to show that reconstruction (and its counterpart at the same rate) in the views.
"""
from __future__ import annotations

import math

import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QCheckBox, QDockWidget, QGridLayout, QHBoxLayout, QHeaderView, QLabel,
                               QProgressBar, QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from codec.model.zoo import DEFAULT_MODEL_ID
from codec.rd import CTC_RATES, HIGH_RATES, RDResult, rd_points

from .. import workers

ANCHOR_CHOICES = ("vvc", "jpeg", "hevc", "webp", "av1")
DEFAULT_ANCHORS = ("vvc", "jpeg")
COLOURS = {"ours": (214, 39, 40), "vvc": (31, 119, 180), "hevc": (44, 160, 44), "av1": (148, 103, 189),
           "jpeg": (255, 127, 14), "webp": (140, 86, 75)}


class RDModel:
    """Chosen rates and anchors, and the last result."""

    def __init__(self):
        self.targets: tuple[float, ...] = CTC_RATES
        self.anchors: tuple[str, ...] = DEFAULT_ANCHORS
        self.result: RDResult | None = None

    def point(self, codec: str, index: int):
        return self.result.points[codec][index]

    def counterpart(self, point, codec: str):
        """The successful point of `codec` at the same target rate, or None."""
        if self.result is None:
            return None
        return next((p for p in self.result.points.get(codec, []) if p.ok and p.target_bpp == point.target_bpp), None)


class RDDock(QDockWidget):
    point_chosen = Signal(object)      # RDPoint
    finished = Signal(object)          # RDResult

    def __init__(self, parent=None):
        super().__init__("RD curves", parent)
        self.setObjectName("rd")
        self.model = RDModel()
        self.source = None
        self.model_id = DEFAULT_MODEL_ID    # ours is encoded with this model (the window's choice)
        self.loop_filter = True             # and with the loop filter (the window's choice)
        self.runner = workers.JobRunner(self)
        w = QWidget()
        lay = QVBoxLayout(w)
        lay.setContentsMargins(2, 2, 2, 2)

        grid = QGridLayout()
        self.rate_boxes: dict[float, QCheckBox] = {}
        for i, t in enumerate(CTC_RATES + HIGH_RATES):
            b = QCheckBox(f"{t:g}", checked=t in CTC_RATES)
            self.rate_boxes[t] = b
            grid.addWidget(b, 0, i)
        self.anchor_boxes: dict[str, QCheckBox] = {}
        for i, a in enumerate(ANCHOR_CHOICES):
            b = QCheckBox(a, checked=a in DEFAULT_ANCHORS)
            self.anchor_boxes[a] = b
            grid.addWidget(b, 1, i)
        lay.addLayout(grid)

        row = QHBoxLayout()
        self.run_btn = QPushButton("Run RD")
        self.cancel_btn = QPushButton("Cancel", enabled=False)
        self.progress = QProgressBar(maximum=1000, value=0, textVisible=True)
        row.addWidget(self.run_btn)
        row.addWidget(self.cancel_btn)
        row.addWidget(self.progress, 1)
        lay.addLayout(row)

        self.plot = pg.PlotWidget()
        self.plot.setLabel("bottom", "rate [bpp]")
        self.plot.setLabel("left", "PSNR-Y [dB]")
        self.plot.showGrid(x=True, y=True, alpha=0.3)
        self.plot.addLegend(offset=(-10, 10))
        lay.addWidget(self.plot, 1)

        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["codec", "BD-rate vs VVC", "note"])
        self.table.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setMaximumHeight(110)
        lay.addWidget(self.table)
        self.status = QLabel("Open an image, choose rates and anchors, Run.")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        self.setWidget(w)

        self.run_btn.clicked.connect(lambda: self.run())
        self.cancel_btn.clicked.connect(self.cancel)
        self.runner.progress.connect(self.status.setText)
        self.runner.fraction.connect(lambda f: self.progress.setValue(int(f * 1000)))
        self.runner.finished.connect(self._done)
        self.runner.failed.connect(lambda m: self.status.setText(f"error: {m}"))
        self.runner.busy.connect(self._busy)
        self._items = []

    # ---- settings ----------------------------------------------------------------------------
    def chosen_targets(self) -> tuple[float, ...]:
        return tuple(t for t, b in self.rate_boxes.items() if b.isChecked())

    def chosen_anchors(self) -> tuple[str, ...]:
        return tuple(a for a, b in self.anchor_boxes.items() if b.isChecked())

    def set_choices(self, targets=None, anchors=None) -> None:
        if targets is not None:
            ts = {float(t) for t in targets}
            for t, b in self.rate_boxes.items():
                b.setChecked(t in ts)
        if anchors is not None:
            for a, b in self.anchor_boxes.items():
                b.setChecked(a in anchors)

    # ---- running -----------------------------------------------------------------------------
    def set_source(self, source) -> None:
        self.cancel()
        self.source = source
        self.model.result = None
        self.plot.clear()
        self.table.setRowCount(0)
        self.progress.setValue(0)
        self.status.setText("Run to measure the RD curves of this image.")

    def set_model(self, model_id: int) -> None:
        """Ours is encoded with `model_id` from now on; curves of another model are dropped."""
        if model_id != self.model_id:
            self.model_id = model_id
            self._drop_curves(f"model {model_id}")

    def set_loop_filter(self, on: bool) -> None:
        """Ours is encoded with (or without) the loop filter from now on; other curves are dropped."""
        if bool(on) != self.loop_filter:
            self.loop_filter = bool(on)
            self._drop_curves(f"the loop filter {'on' if on else 'off'}")

    def _drop_curves(self, setting: str) -> None:
        if self.model.result is not None or self.runner.is_busy:
            self.set_source(self.source)
            self.status.setText(f"Run to measure the RD curves of this image with {setting}.")

    def run(self, targets=None, anchors=None):
        if self.source is None:
            self.status.setText("open an image first")
            return None
        targets = tuple(targets) if targets is not None else self.chosen_targets()
        anchors = tuple(anchors) if anchors is not None else self.chosen_anchors()
        if not targets:
            self.status.setText("choose at least one rate")
            return None
        self.model.targets, self.model.anchors = targets, anchors
        self.set_choices(targets, anchors)
        source, model_id, loop_filter = self.source, self.model_id, self.loop_filter

        def work(job):
            from codec.engine import LearnedCodec
            return rd_points(LearnedCodec.load(model_id), source, targets, anchors,
                             progress=lambda i, n, text: job(f"RD: {text} ({i}/{n})", i / n),
                             should_stop=job.should_stop, loop_filter=loop_filter)

        self.progress.setValue(0)
        return self.runner.start(work, "rd")

    def cancel(self) -> None:
        if self.runner.is_busy:
            self.runner.cancel()
            self.status.setText("RD cancelled")

    @property
    def job(self):
        return self.runner.job

    def _busy(self, busy: bool) -> None:
        self.run_btn.setEnabled(not busy)
        self.cancel_btn.setEnabled(busy)

    def _done(self, result: RDResult) -> None:
        self.model.result = result
        self.progress.setValue(1000)
        self.show_result(result)
        self.finished.emit(result)

    # ---- display -----------------------------------------------------------------------------
    def show_result(self, result: RDResult) -> None:
        self.plot.clear()
        self._items = []
        for codec in result.codecs:
            pts = [(i, p) for i, p in enumerate(result.points[codec]) if p.ok and math.isfinite(p.psnr_y)]
            if not pts:
                continue
            pts.sort(key=lambda ip: ip[1].bpp)
            colour = COLOURS.get(codec, (200, 200, 200))
            item = self.plot.plot([p.bpp for _, p in pts], [p.psnr_y for _, p in pts], name=codec,
                                  pen=pg.mkPen(colour, width=2), symbol="o", symbolBrush=colour, symbolSize=9,
                                  data=[(codec, i) for i, _ in pts])
            item.sigPointsClicked.connect(self._clicked)
            self._items.append(item)
        rows = [(c, result.bd_rate.get(c), result.bd_notes.get(c, "")) for c in result.codecs if c != result.reference]
        self.table.setRowCount(len(rows))
        for r, (c, v, note) in enumerate(rows):
            self.table.setItem(r, 0, QTableWidgetItem(c))
            self.table.setItem(r, 1, QTableWidgetItem(bd_text(v)))
            self.table.setItem(r, 2, QTableWidgetItem(note))
        failed = [p for c in result.codecs for p in result.points[c] if not p.ok]
        msg = f"{sum(len(v) for v in result.points.values()) - len(failed)} points in {result.seconds:.1f} s"
        if failed:
            msg += f"; {len(failed)} not reached (e.g. {failed[0].codec} @ {failed[0].target_bpp:g}: {failed[0].error})"
        if result.cancelled:
            msg = "cancelled: " + msg
        self.status.setText(msg + ". Click a point to view it.")

    def _clicked(self, item, points, ev=None) -> None:
        if len(points):
            codec, index = points[0].data()
            self.choose_point(codec, index)

    def choose_point(self, codec: str, index: int) -> None:
        """Show point `index` of `codec` (index into result.points[codec]) in the views."""
        if self.model.result is None:
            return
        p = self.model.point(codec, index)
        if p.ok:
            self.point_chosen.emit(p)


def bd_text(v: float | None) -> str:
    return "n/a" if v is None else f"{v:+.2f} %"
