"""Main window: open an image, encode it at a target bpp off the GUI thread, compare side by side.

A thin view: every number shown comes from `codec.pipeline.encode_image`, the same function the CLI
reports from. Encodes run in a worker; the window stays responsive and a failure leaves the session
as it was.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QComboBox, QDockWidget, QFileDialog, QLabel, QMainWindow,
                               QProgressBar, QToolBar)

from codec.engine import LearnedCodec
from codec.errors import BitlensError
from codec.images import SourceImage, load_image
from codec.pipeline import EncodeReport, encode_image

from . import workers

CTC_BPP = ("0.06", "0.12", "0.25", "0.5", "0.75", "1.0", "1.5")


class LinkedViews(pg.GraphicsLayoutWidget):
    """Side-by-side image panels sharing zoom and pan (original | ours)."""

    def __init__(self, titles: list[str]):
        super().__init__()
        self.items: list[pg.ImageItem] = []
        self.boxes: list[pg.ViewBox] = []
        for i, title in enumerate(titles):
            box = self.addViewBox(row=1, col=i, lockAspect=True, invertY=True)
            self.addLabel(title, row=0, col=i)
            item = pg.ImageItem()
            box.addItem(item)
            if self.boxes:
                box.setXLink(self.boxes[0])
                box.setYLink(self.boxes[0])
            self.items.append(item)
            self.boxes.append(box)

    def show_image(self, index: int, pixels: np.ndarray | None) -> None:
        if pixels is None:
            self.items[index].clear()
        else:
            self.items[index].setImage(pixels, levels=(0, 255), autoLevels=False)

    def fit(self) -> None:
        self.boxes[0].autoRange(padding=0)


class MainWindow(QMainWindow):
    encode_done = Signal(bool)   # True on success; emitted after the views are updated

    def __init__(self):
        super().__init__()
        self.setWindowTitle("Bitlens")
        self.source: SourceImage | None = None
        self.report: EncodeReport | None = None
        self.job: workers.Job | None = None

        self.views = LinkedViews(["Original", "Ours (learned codec)"])
        self.setCentralWidget(self.views)

        bar = QToolBar("Main")
        self.addToolBar(bar)
        open_act = QAction("Open…", self, shortcut=QKeySequence.Open, triggered=self.choose_image)
        bar.addAction(open_act)
        bar.addWidget(QLabel(" Target bpp "))
        self.bpp_box = QComboBox(editable=True)
        self.bpp_box.addItems(CTC_BPP)
        self.bpp_box.setCurrentText("0.25")
        bar.addWidget(self.bpp_box)
        self.encode_act = QAction("Encode", self, shortcut="Ctrl+E", triggered=self.encode)
        self.cancel_act = QAction("Cancel", self, triggered=self.cancel, enabled=False)
        bar.addAction(self.encode_act)
        bar.addAction(self.cancel_act)
        bar.addAction(QAction("Fit", self, shortcut="F", triggered=self.views.fit))

        self.trace_plot = pg.PlotWidget(title="Rate matcher trials")
        self.trace_plot.setLabel("bottom", "trial")
        self.trace_plot.setLabel("left", "bpp")
        dock = QDockWidget("Rate matching", self)
        dock.setWidget(self.trace_plot)
        self.addDockWidget(Qt.RightDockWidgetArea, dock)

        self.progress = QProgressBar(maximumWidth=160, maximum=0, visible=False)
        self.info = QLabel("Open an image to start")
        self.statusBar().addWidget(self.info, 1)
        self.statusBar().addPermanentWidget(self.progress)

    # ---- actions -----------------------------------------------------------------------------
    def choose_image(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open image", "", "Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff *.webp)")
        if path:
            self.open_image(path)

    def open_image(self, path: str, bpp: float | None = None, encode: bool = False) -> None:
        try:
            self.source = load_image(path)
        except BitlensError as exc:
            self._fail(str(exc))
            return
        self.report = None
        self.views.show_image(0, self._display(self.source))
        self.views.show_image(1, None)
        self.views.fit()
        self.setWindowTitle(f"Bitlens — {path}")
        self.info.setText(f"{path}: {self.source.width}x{self.source.height}")
        if bpp is not None:
            self.bpp_box.setCurrentText(f"{bpp:g}")
        if encode:
            self.encode()

    def target_bpp(self) -> float:
        try:
            value = float(self.bpp_box.currentText())
        except ValueError:
            raise BitlensError(f"target bpp {self.bpp_box.currentText()!r} is not a number") from None
        if value <= 0:
            raise BitlensError("target bpp must be positive")
        return value

    def encode(self) -> None:
        if self.source is None:
            return
        try:
            target = self.target_bpp()
        except BitlensError as exc:
            self._fail(str(exc))
            return
        self.cancel()
        source = self.source

        def work(progress):
            progress(f"encoding at {target:g} bpp…")
            return encode_image(LearnedCodec.load(), source, target_bpp=target)

        self.job = workers.Job(work)
        self.job.signals.finished.connect(self._encoded)
        self.job.signals.failed.connect(self._fail)
        self.job.signals.progress.connect(self.info.setText)
        self._busy(True)
        workers.start(self.job)

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.job = None
        self._busy(False)

    # ---- results -----------------------------------------------------------------------------
    def _encoded(self, report: EncodeReport) -> None:
        self.job = None
        self._busy(False)
        self.report = report
        self.views.show_image(1, report.decoded.pixels)
        self.trace_plot.clear()
        bpps = [b for _, b in report.trace]
        self.trace_plot.plot(range(1, len(bpps) + 1), bpps, symbol="o")
        self.trace_plot.addLine(y=report.target_bpp, pen=pg.mkPen("r", style=Qt.DashLine))
        self.info.setText(f"ours: {report.bpp:.4f} bpp (target {report.target_bpp:g}), "
                          f"PSNR-Y {report.psnr_y:.2f} dB, {len(report.trace)} trials, "
                          f"encode {report.encode_seconds:.2f} s, decode {report.decoded.seconds:.2f} s")
        self.encode_done.emit(True)

    def _fail(self, message: str) -> None:
        self.job = None
        self._busy(False)
        self.info.setText(f"error: {message}")
        self.encode_done.emit(False)

    def _busy(self, busy: bool) -> None:
        self.progress.setVisible(busy)
        self.cancel_act.setEnabled(busy)
        self.encode_act.setEnabled(not busy)

    @staticmethod
    def _display(source: SourceImage) -> np.ndarray:
        return np.clip(np.round(source.rgb * 255), 0, 255).astype(np.uint8)
