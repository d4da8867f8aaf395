"""Devices: decode the current bitstream on every backend here (`codec.devices.compare_backends`), with
the integer and the float decoder, and show the table, a verdict, and the mismatch heatmap of a chosen
row against its decoder's reference row (`DeviceReport.mismatch_map`). Reports from other machines
(`bitlens devices --json`) can be imported and compared (`codec.devices.compare_reports`).
"""
from __future__ import annotations

import json
import os
import tempfile

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QDockWidget, QFileDialog, QHBoxLayout, QHeaderView, QLabel,
                               QPlainTextEdit, QProgressBar, QPushButton, QSplitter, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from codec.devices import DeviceReport, compare_backends, compare_reports, load_report
from codec.errors import BitlensError
from codec.images import write_atomic

from .. import workers

COLUMNS = ["machine", "config", "decoder", "sha256", "mismatches", "max diff", "raw max diff", "time [s]",
           "scale-index mismatches"]


def row_cells(row: dict, machine: str) -> list[str]:
    si = row.get("scale_index_mismatches")
    return [machine, row["config"], row["decoder"], row["sha256"][:16], str(row["mismatches"]), str(row["max_diff"]),
            f"{row.get('raw_max_diff', 0.0):.4f}", f"{row['seconds']:.3f}", "" if si is None else str(si)]


class DevicesModel:
    def __init__(self):
        self.bitstream: bytes | None = None
        self.name = ""
        self.report: DeviceReport | None = None
        self.others: list[dict] = []
        self.comparison_lines: list[str] = []

    def verdict(self) -> str:
        if self.report is None:
            return ""
        s = self.report.summary()
        exact = "bit-exact ✔" if s["integer_bit_exact"] else "NOT bit-exact ✘"
        return (f"integer decoder: {s['integer_hashes']} hash over {s['integer_configs']} configurations, {exact}; "
                f"float decoder: {s['float_hashes']} distinct hashes over {s['float_configs']} configurations, "
                f"up to {s['float_mismatching_pixels']} pixels differ by up to {s['float_max_diff']}")


class DevicesDock(QDockWidget):
    mismatch_changed = Signal(object)      # np.ndarray | None: the selected row's mismatch map

    def __init__(self, parent=None):
        super().__init__("Devices", parent)
        self.setObjectName("devices")
        self.model = DevicesModel()
        self.runner = workers.JobRunner(self)
        self.mismatch: np.ndarray | None = None
        self.last_dir = ""
        w = QWidget()
        lay = QVBoxLayout(w)
        lay.setContentsMargins(2, 2, 2, 2)
        row = QHBoxLayout()
        self.run_btn = QPushButton("Decode on all backends")
        self.cancel_btn = QPushButton("Cancel", enabled=False)
        self.subprocesses = QCheckBox("ISA variants (subprocesses)", checked=True)
        self.subprocesses.setToolTip("ATEN_CPU_CAPABILITY=default|avx2|avx512, each in a subprocess (slower)")
        row.addWidget(self.run_btn)
        row.addWidget(self.cancel_btn)
        row.addWidget(self.subprocesses)
        lay.addLayout(row)
        row2 = QHBoxLayout()
        self.import_btn = QPushButton("Import report…")
        self.export_btn = QPushButton("Save report…", enabled=False)
        self.progress = QProgressBar(maximum=0, visible=False)
        row2.addWidget(self.import_btn)
        row2.addWidget(self.export_btn)
        row2.addWidget(self.progress, 1)
        lay.addLayout(row2)
        self.verdict = QLabel("Encode an image, then decode its bitstream on every backend.")
        self.verdict.setWordWrap(True)
        lay.addWidget(self.verdict)

        split = QSplitter(Qt.Orientation.Vertical)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        split.addWidget(self.table)
        self.heat = pg.PlotWidget(title="mismatch vs the decoder's reference row")
        self.heat.setAspectLocked(True)
        self.heat.invertY(True)
        self.heat_img = pg.ImageItem(axisOrder="row-major")
        self.heat.addItem(self.heat_img)
        self.heat_bar = pg.ColorBarItem(values=(0, 1), colorMap=pg.colormap.get("inferno"), interactive=False,
                                        width=12, colorMapMenu=False)
        self.heat_bar.setImageItem(self.heat_img, insert_in=self.heat.getPlotItem())
        split.addWidget(self.heat)
        self.lines = QPlainTextEdit(readOnly=True)
        self.lines.setMaximumHeight(80)
        split.addWidget(self.lines)
        split.setSizes([260, 240, 60])
        lay.addWidget(split, 1)
        self.setWidget(w)

        self.run_btn.clicked.connect(lambda: self.run())
        self.cancel_btn.clicked.connect(self.cancel)
        self.import_btn.clicked.connect(self.choose_import)
        self.export_btn.clicked.connect(self.choose_export)
        self.table.itemSelectionChanged.connect(self._selected)
        self.runner.progress.connect(self.verdict.setText)
        self.runner.finished.connect(self._done)
        self.runner.failed.connect(lambda m: self.verdict.setText(f"error: {m}"))
        self.runner.busy.connect(self._busy)

    # ---- input -------------------------------------------------------------------------------
    def set_bitstream(self, data: bytes | None, name: str = "") -> None:
        if data == self.model.bitstream:
            return
        self.cancel()
        self.model.bitstream, self.model.name = data, name
        self.model.report = None
        self.table.setRowCount(0)
        self._show_mismatch(None)
        self.export_btn.setEnabled(False)
        self.verdict.setText("Decode the current bitstream on every backend." if data else
                             "Encode an image, then decode its bitstream on every backend.")

    def run(self, subprocesses: bool | None = None):
        if self.model.bitstream is None:
            self.verdict.setText("encode an image first: no bitstream")
            return None
        data = self.model.bitstream
        sub = self.subprocesses.isChecked() if subprocesses is None else subprocesses

        def work(job):
            with tempfile.TemporaryDirectory(prefix="bitlens-devices-") as tmp:
                path = os.path.join(tmp, "current.bln")
                with open(path, "wb") as f:
                    f.write(data)
                return compare_backends(path, subprocesses=sub, keep_pixels=True,
                                        progress=lambda m: job(f"decoding: {m}"), should_stop=job.should_stop)

        return self.runner.start(work, "devices")

    def cancel(self) -> None:
        if self.runner.is_busy:
            self.runner.cancel()
            self.verdict.setText("devices run cancelled")

    @property
    def job(self):
        return self.runner.job

    def _busy(self, busy: bool) -> None:
        self.run_btn.setEnabled(not busy)
        self.cancel_btn.setEnabled(busy)
        self.progress.setVisible(busy)

    def _done(self, report: DeviceReport) -> None:
        self.model.report = report
        self.export_btn.setEnabled(True)
        self.refresh()
        # start on the float row that differs most: the reason this panel exists
        rows = report.rows
        worst = max(range(len(rows)), key=lambda i: (rows[i].decoder == "float", rows[i].mismatches), default=None)
        if worst is not None:
            self.table.selectRow(worst)

    # ---- display -----------------------------------------------------------------------------
    def refresh(self) -> None:
        m = self.model
        rows = [] if m.report is None else [(r.__dict__, "this machine") for r in m.report.rows]
        for o in m.others:
            name = f"{o.get('machine', {}).get('cpu', '?')}"
            rows += [(r, name) for r in o.get("rows", [])]
        self.table.setRowCount(len(rows))
        for i, (r, machine) in enumerate(rows):
            for j, text in enumerate(row_cells(r, machine)):
                self.table.setItem(i, j, QTableWidgetItem(text))
        self.verdict.setText(m.verdict())
        m.comparison_lines = compare_reports(m.report, m.others) if m.report is not None and m.others else []
        self.lines.setPlainText("\n".join(m.comparison_lines))

    def select_row(self, index: int) -> None:
        self.table.selectRow(index)

    def _selected(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        rep = self.model.report
        if not rows or rep is None or rows[0].row() >= len(rep.rows):
            self._show_mismatch(None)
            return
        self._show_mismatch(rep.mismatch_map(rows[0].row()))

    def _show_mismatch(self, m: np.ndarray | None) -> None:
        self.mismatch = m
        if m is None:
            self.heat_img.clear()
        else:
            self.heat_img.setImage(m.astype(np.float32), autoLevels=False)
            self.heat_bar.setLevels(values=(0, float(max(1, m.max()))))
        self.mismatch_changed.emit(m)

    # ---- reports from other machines ---------------------------------------------------------
    def import_report(self, path: str) -> None:
        other = load_report(path)
        self.model.others.append(other)
        self.refresh()

    def export_report(self, path: str) -> None:
        if self.model.report is None:
            raise BitlensError("no devices report yet: run the decoders first")
        payload = json.dumps(self.model.report.to_json(), indent=2).encode()
        write_atomic(path, lambda f: f.write(payload))

    def choose_import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import devices report", self.last_dir, "JSON (*.json)")
        if path:
            try:
                self.import_report(path)
            except BitlensError as exc:
                self.lines.setPlainText(f"error: {exc}")

    def choose_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save devices report", self.last_dir, "JSON (*.json)")
        if path:
            try:
                self.export_report(path)
            except BitlensError as exc:
                self.lines.setPlainText(f"error: {exc}")
