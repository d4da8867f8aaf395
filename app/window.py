"""Main window: the presenter that connects the views and docks to the engine.

Open an image (dialog, drag and drop, recent files, a folder as an image list), encode it at a target
bpp through the rate matcher, and compare it with VVC at the same target in three linked views, with
heatmaps, painting and re-encoding with a bit-allocation map, RD curves and a device panel.

A thin layer: every number shown comes from a `codec` function (`codec.pipeline.encode_image`,
`codec.compare`, `codec.rd`, `codec.devices`, `codec.metrics`). Long work runs in worker threads
(`app.workers`); the window stays responsive, a cancelled job's result is dropped, and a failure shows
an error and leaves the session as it was.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QLabel, QMainWindow, QProgressBar, QSlider,
                               QToolBar)

from codec.bitalloc import auto_map, map_from_painting
from codec.compare import (Comparison, as_rgb, compare, map_to_image, match_anchor_for_view, painted_region,
                           report_from_bitstream, source_rgb8)
from codec.engine import LearnedCodec
from codec.model.zoo import DEFAULT_MODEL_ID, MODELS
from codec.errors import BitlensError
from codec.images import SourceImage, load_image, save_png, write_atomic
from codec.pipeline import EncodeReport, encode_image
from codec.session import Session, export_numbers, load_session, save_session

from . import workers
from .docks.bitalloc import BitAllocDock
from .docks.devices import DevicesDock
from .docks.heatmap import CHOICES as HEATMAP_CHOICES, HeatmapDock, HeatmapModel
from .docks.images import ImageListDock
from .docks.ratematch import RateMatchDock
from .docks.rd import RDDock
from .settings import Settings, app_settings
from .views import ComparisonViews, render_heatmap

CTC_BPP = ("0.06", "0.12", "0.25", "0.5", "0.75", "1.0", "1.5")
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff *.webp *.ppm *.pgm)"
ANCHOR = "vvc"


@dataclass
class Loaded:
    """An image read in the worker, ready to show."""

    source: SourceImage
    rgb8: np.ndarray
    path: str
    bpp: float | None
    encode: bool


@dataclass
class Outcome:
    """What an encode-and-compare job hands back to the window."""

    report: EncodeReport
    comparison: Comparison | None
    anchor: object | None = None       # AnchorResult
    anchor_note: str = ""
    target: float | None = None


def comparison_stage(job, codec, source: SourceImage, report: EncodeReport, target: float | None,
                     anchor=None, anchor_note: str = "") -> Outcome:
    """Worker side: the anchor at the same target (unless given) and the block maps."""
    err = ""
    if anchor is None and target is not None:
        job(f"{ANCHOR.upper()} at {target:g} bpp…", 0.55)
        try:
            anchor, anchor_note = match_anchor_for_view(ANCHOR, source, target)
        except BitlensError as exc:
            err = f"{ANCHOR}: {exc}"
    job.check()
    job("bits per block…", 0.9)
    comp = compare(source, report, anchor, codec=codec, anchor_note=anchor_note, anchor_error=err)
    return Outcome(report, comp, anchor, anchor_note, target)


_preloaded = False


def preload_engine_modules() -> None:
    """Import what worker jobs will import, once, on the GUI thread at start-up. An import in a worker
    holds the GIL while it compiles bytecode (matplotlib, which `bjontegaard` pulls in, takes a
    hundred milliseconds or more): done mid-session, it would freeze the event loop."""
    global _preloaded
    if _preloaded:
        return
    _preloaded = True
    import importlib
    for name in ("codec.anchors", "codec.rd", "codec.devices", "codec.rdplot", "codec.session",
                 "codec.entropy.offsetmap", "scipy.interpolate", "bjontegaard", "PIL.PngImagePlugin",
                 "PIL.JpegImagePlugin", "PIL.WebPImagePlugin"):
        try:
            importlib.import_module(name)
        except Exception:   # an optional piece missing here is reported when it is used
            pass


def side_title(side, label: str) -> str:
    t = f"{label}: {side.bpp:.4f} bpp, PSNR-Y {side.psnr_y:.2f} dB"
    if side.param:
        t += f" ({side.param})"
    return t


def fmt_db(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f} dB"


class MainWindow(QMainWindow):
    encode_done = Signal(bool)   # True on success; emitted after the views show ours and VVC
    image_opened = Signal(bool)  # True once an image is loaded and shown (open_image runs in a worker)

    def __init__(self, settings: QSettings | None = None):
        super().__init__()
        preload_engine_modules()
        self.setWindowTitle("Bitlens")
        self.setObjectName("bitlens-main")
        self.prefs = Settings(settings if settings is not None else app_settings())
        self.source: SourceImage | None = None
        self.report: EncodeReport | None = None
        self.anchor = None
        self.anchor_note = ""
        self._anchor_key = None
        self.comparison: Comparison | None = None
        self.map_applied = False
        self.apply_result: dict | None = None
        self.inspected: dict | None = None
        self._pending_apply: dict | None = None
        self._restore_target: float | None = None
        self._after_open: list = []      # what to do once the image being loaded is shown
        self._loading_job: workers.Job | None = None

        self.runner = workers.JobRunner(self)        # encode / apply / bitstream / RD point
        self.map_runner = workers.JobRunner(self)    # automatic maps

        self.views = ComparisonViews()
        self.setCentralWidget(self.views)
        self._build_docks()
        self._build_actions()
        self._build_status()
        self._connect()
        self._restore_settings()
        self.setAcceptDrops(True)

    # ---- construction ------------------------------------------------------------------------
    def _build_docks(self) -> None:
        R, L = Qt.DockWidgetArea.RightDockWidgetArea, Qt.DockWidgetArea.LeftDockWidgetArea
        self.heat_dock = HeatmapDock(self)
        self.trace_dock = RateMatchDock(self)
        self.bitalloc = BitAllocDock(self)
        self.rd_dock = RDDock(self)
        self.devices = DevicesDock(self)
        self.images_dock = ImageListDock(self)
        self.addDockWidget(R, self.heat_dock)
        self.addDockWidget(R, self.trace_dock)
        for d in (self.bitalloc, self.rd_dock, self.devices):
            self.tabifyDockWidget(self.trace_dock, d)
        self.trace_dock.raise_()
        self.addDockWidget(L, self.images_dock)
        self.images_dock.hide()
        # first run (no saved state): views wide, docks a column on the right, heatmap controls short
        self.resizeDocks([self.heat_dock, self.trace_dock], [430, 430], Qt.Orientation.Horizontal)
        self.resizeDocks([self.heat_dock, self.trace_dock], [120, 600], Qt.Orientation.Vertical)
        self.trace_plot = self.trace_dock.plot

    def _build_actions(self) -> None:
        A = QAction
        self.open_act = A("Open image…", self, shortcut=QKeySequence.StandardKey.Open, triggered=self.choose_image)
        self.open_folder_act = A("Open folder…", self, shortcut="Ctrl+Shift+O", triggered=self.choose_folder)
        self.open_bln_act = A("Open bitstream…", self, triggered=self.choose_bitstream)
        self.save_bln_act = A("Save bitstream…", self, shortcut="Ctrl+Shift+S", triggered=self.choose_save_bitstream)
        self.open_session_act = A("Open session…", self, triggered=self.choose_session)
        self.save_session_act = A("Save session…", self, shortcut=QKeySequence.StandardKey.Save,
                                  triggered=self.choose_save_session)
        self.export_act = A("Export report…", self, shortcut="Ctrl+R", triggered=self.choose_export)
        self.quit_act = A("Quit", self, shortcut=QKeySequence.StandardKey.Quit, triggered=self.close)
        self.encode_act = A("Encode", self, shortcut="Ctrl+E", triggered=lambda: self.encode())
        self.cancel_act = A("Cancel", self, shortcut="Esc", triggered=self.cancel, enabled=False)
        self.fit_act = A("Fit", self, shortcut="F", triggered=self.views.fit)
        self.one_act = A("1:1", self, shortcut="1", triggered=self.views.one_to_one)
        self.flicker_act = A("Flicker", self, shortcut=Qt.Key.Key_Space, checkable=True,
                             toggled=self.views.set_flicker)
        self.flicker_act.setToolTip("Space: the middle view flips between ours and VVC (or the original)")
        self.wipe_act = A("Wipe", self, shortcut="W", checkable=True, toggled=lambda on: self.views.set_wipe(on))
        self.diff_act = A("Difference", self, shortcut="D", checkable=True, toggled=self.views.set_difference)
        self.heat_next_act = A("Next heatmap", self, shortcut="H", triggered=self.heat_dock.cycle)
        self.paint_act = A("Paint", self, shortcut="P", triggered=self.bitalloc.paint_btn.toggle)
        self.apply_act = A("Apply map", self, shortcut="Ctrl+Return", triggered=self.apply_map)

        mb = self.menuBar()
        fm = mb.addMenu("&File")
        fm.addActions([self.open_act, self.open_folder_act])
        self.recent_menu = fm.addMenu("Open recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        fm.addSeparator()
        fm.addActions([self.open_bln_act, self.save_bln_act, self.open_session_act, self.save_session_act])
        fm.addSeparator()
        fm.addActions([self.export_act, self.quit_act])
        em = mb.addMenu("&Encode")
        em.addActions([self.encode_act, self.cancel_act, self.apply_act])
        vm = mb.addMenu("&View")
        vm.addActions([self.fit_act, self.one_act, self.flicker_act, self.wipe_act, self.diff_act,
                       self.heat_next_act, self.paint_act])
        dm = mb.addMenu("&Docks")
        for d in (self.heat_dock, self.trace_dock, self.bitalloc, self.rd_dock, self.devices, self.images_dock):
            dm.addAction(d.toggleViewAction())

        bar = QToolBar("Main", objectName="main-toolbar")
        self.addToolBar(bar)
        bar.addAction(self.open_act)
        bar.addWidget(QLabel(" Target bpp "))
        self.bpp_box = QComboBox(editable=True)
        self.bpp_box.addItems(CTC_BPP)
        self.bpp_box.setCurrentText("0.25")
        self.bpp_box.setMinimumContentsLength(5)
        bar.addWidget(self.bpp_box)
        bar.addWidget(QLabel(" Model "))
        self.model_box = QComboBox(toolTip="the learned model ours is encoded with")
        for model_id, name in MODELS.items():
            self.model_box.addItem(f"{model_id}: {name}" + (" (default)" if model_id == DEFAULT_MODEL_ID else ""),
                                   model_id)
        self.model_box.setCurrentIndex(self.model_box.findData(DEFAULT_MODEL_ID))
        bar.addWidget(self.model_box)
        self.filter_box = QCheckBox("Loop filter", checked=True,
                                    toolTip="fit and send the adaptive loop filter (codec/loopfilter.py) with ours")
        bar.addWidget(self.filter_box)
        bar.addAction(self.encode_act)
        bar.addAction(self.cancel_act)
        vbar = QToolBar("View", objectName="view-toolbar")
        self.addToolBar(vbar)
        vbar.addActions([self.fit_act, self.one_act, self.flicker_act])
        self.flicker_with = QComboBox()
        self.flicker_with.addItem("with VVC", "anchor")
        self.flicker_with.addItem("with original", "original")
        vbar.addWidget(self.flicker_with)
        vbar.addAction(self.wipe_act)
        self.wipe_slider = QSlider(Qt.Orientation.Horizontal, minimum=0, maximum=1000, value=500)
        self.wipe_slider.setMaximumWidth(140)
        vbar.addWidget(self.wipe_slider)
        vbar.addAction(self.diff_act)

    def _build_status(self) -> None:
        self.progress = QProgressBar(maximumWidth=160, maximum=0, visible=False)
        self.info = QLabel("Open an image to start (Ctrl+O, or drop a file or folder here)")
        self.inspector = QLabel("")
        self.inspector.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.statusBar().addWidget(self.info, 1)
        self.statusBar().addPermanentWidget(self.inspector)
        self.statusBar().addPermanentWidget(self.progress)

    def _connect(self) -> None:
        r = self.runner
        r.finished.connect(self._finished)
        r.failed.connect(self._fail)
        r.progress.connect(self.info.setText)
        r.fraction.connect(self._fraction)
        r.partial.connect(self._partial)
        r.busy.connect(self._busy)
        self.model_box.currentIndexChanged.connect(self._model_changed)
        self.filter_box.toggled.connect(self._loop_filter_changed)
        m = self.map_runner
        m.finished.connect(self._auto_map_done)
        m.failed.connect(lambda msg: self.info.setText(f"error: automatic map: {msg}"))
        m.progress.connect(self.info.setText)
        m.busy.connect(self.bitalloc.set_busy)
        self.views.hovered.connect(self._hover)
        self.views.wipe_moved.connect(lambda p: self._set_slider(p))
        self.wipe_slider.valueChanged.connect(lambda v: self.views.set_wipe(self.wipe_act.isChecked(), v / 1000))
        self.flicker_with.currentIndexChanged.connect(lambda: self.views.set_flicker_with(self.flicker_with.currentData()))
        self.heat_dock.changed.connect(self._update_heatmap)
        self.bitalloc.changed.connect(self._schedule_map_overlay)
        self.bitalloc.paint_mode_changed.connect(self._paint_mode)
        self.bitalloc.size.valueChanged.connect(lambda v: self.views.set_brush_radius(v))
        self.bitalloc.apply_requested.connect(self.apply_map)
        self.bitalloc.auto_requested.connect(self.compute_auto_map)
        self.rd_dock.point_chosen.connect(self.show_rd_point)
        self.devices.mismatch_changed.connect(lambda _: self._update_heatmap())
        self.images_dock.chosen.connect(lambda p: self.open_image(p))
        self._overlay_timer = QTimer(self, singleShot=True, interval=30, timeout=self._update_map_overlay)

    @property
    def job(self) -> workers.Job | None:
        return self.runner.job

    # ---- opening -----------------------------------------------------------------------------
    def choose_image(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open image", self._last_dir(), IMAGE_FILTER)
        if path:
            self.open_image(path)

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of images", self._last_dir())
        if folder:
            self.open_folder(folder)

    def open_path(self, path: str) -> None:
        """Open whatever `path` is: a folder, a bitstream, a session, a devices report or an image."""
        p = path.lower()
        if os.path.isdir(path):
            self.open_folder(path)
        elif p.endswith(".bln"):
            self.open_bitstream(path)
        elif p.endswith(".npz"):
            self.load_session(path)
        elif p.endswith(".json"):
            try:
                self.devices.import_report(path)
                self.devices.raise_()
            except BitlensError as exc:
                self._fail(str(exc))
        else:
            self.open_image(path)

    def open_folder(self, folder: str) -> bool:
        try:
            paths = self.images_dock.set_folder(folder)
        except BitlensError as exc:
            self._fail(str(exc))
            return False
        self.images_dock.show()
        self.prefs.set("last_dir", folder)
        self.open_image(paths[0])
        return True

    def open_image(self, path: str, bpp: float | None = None, encode: bool = False, then=None):
        """Load an image in a worker and show it; with `encode`, encode it at once (at `bpp`, or the
        target box). `then()` runs once it is shown. An `encode()` called meanwhile waits for it.
        Returns the loading job (a failure shows an error and keeps the current session)."""
        path = str(path)

        def work(job):
            job(f"opening {path}…")
            source = load_image(path)
            return Loaded(source, source_rgb8(source), path, bpp, encode)

        self.map_runner.cancel()
        self._pending_apply = None
        self._after_open = [then] if then is not None else []
        job = self.runner.start(work, "open")
        self._loading_job = job
        return job

    def _opened(self, loaded: Loaded) -> None:
        self._loading_job = None
        source, path = loaded.source, loaded.path
        self.source = source
        self.report = self.anchor = self.comparison = None
        self._anchor_key = None
        self.map_applied = False
        self.apply_result = None
        self.views.clear_all()
        self.views.set_image("original", loaded.rgb8, f"Original: {Path(path).name}, {source.width}x{source.height}")
        self.views.set_image("ours", None, "Ours (learned codec)")
        self.views.set_image("anchor", None, "VVC intra")
        self.views.fit()
        self.bitalloc.reset(source.height, source.width)
        self.rd_dock.set_source(source)
        self.devices.set_bitstream(None)
        self.trace_dock.show_trace([], None)
        self.setWindowTitle(f"Bitlens — {path}")
        note = "; ".join(source.warnings)
        self.info.setText(f"{path}: {source.width}x{source.height}" + (f" ({note})" if note else ""))
        self.prefs.add_recent(path)
        self.prefs.set("last_dir", str(Path(path).resolve().parent))
        self.images_dock.mark(path)
        if loaded.bpp is not None:
            self.bpp_box.setCurrentText(f"{loaded.bpp:g}")
        after, self._after_open = self._after_open, []
        self.image_opened.emit(True)
        for fn in after:
            fn()
        if loaded.encode:
            self.encode()

    @property
    def loading(self) -> bool:
        return self.runner.is_busy and self.runner.job.name == "open"

    # ---- encoding ----------------------------------------------------------------------------
    def model_id(self) -> int:
        """The model chosen in the toolbar (every encode of ours, the RD curves and the maps use it)."""
        return int(self.model_box.currentData())

    def set_model(self, model_id: int) -> None:
        """Show `model_id` as the chosen model without re-encoding (a session or bitstream sets it)."""
        i = self.model_box.findData(int(model_id))
        if i >= 0:
            self.model_box.blockSignals(True)
            self.model_box.setCurrentIndex(i)
            self.model_box.blockSignals(False)
            self.rd_dock.set_model(int(model_id))

    def _model_changed(self) -> None:
        """The engineer picked another model: the RD curves are stale; an encoded image is encoded
        again with it at the same target."""
        self.rd_dock.set_model(self.model_id())
        if self.source is not None and self.report is not None:
            self.encode()

    def loop_filter(self) -> bool:
        """Whether ours is encoded with the adaptive loop filter (the toolbar's box; on by default)."""
        return self.filter_box.isChecked()

    def set_loop_filter(self, on: bool) -> None:
        """Show the loop filter as on or off without re-encoding (a session or bitstream sets it)."""
        self.filter_box.blockSignals(True)
        self.filter_box.setChecked(bool(on))
        self.filter_box.blockSignals(False)
        self.rd_dock.set_loop_filter(bool(on))

    def _loop_filter_changed(self) -> None:
        """Switched on or off: as with another model, stale RD curves go and ours is encoded again."""
        self.rd_dock.set_loop_filter(self.loop_filter())
        if self.source is not None and self.report is not None:
            self.encode()

    def target_bpp(self) -> float:
        text = self.bpp_box.currentText().strip()
        try:
            value = float(text)
        except ValueError:
            raise BitlensError(f"target bpp {text!r} is not a number") from None
        if not (value > 0 and math.isfinite(value)):
            raise BitlensError("target bpp must be a positive number")
        return value

    def encode(self, kmap: np.ndarray | None = None, target: float | None = None):
        """Encode the current image at the target (the box's value unless given), with an optional
        step-offset map; then VVC at the same target and the comparison. Returns the job."""
        if self.loading:       # the image is still loading: encode once it is shown
            self._after_open.append(lambda: self.encode(kmap, target))
            return self.runner.job
        if self.source is None:
            return None
        if target is None:
            try:
                target = self.target_bpp()
            except BitlensError as exc:
                self._fail(str(exc))
                return None
        if kmap is None:
            self._pending_apply = None
        source = self.source
        cached = (self.anchor, self.anchor_note) if self._anchor_key == (id(source), target) else (None, "")

        model_id, loop_filter = self.model_id(), self.loop_filter()
        analysis = self._reusable_analysis(source, model_id)

        def work(job):
            codec = LearnedCodec.load(model_id)
            job(f"encoding at {target:g} bpp{' with the bit-allocation map' if kmap is not None else ''}…", 0.05)
            rep = encode_image(codec, source, target_bpp=target, kmap=kmap, loop_filter=loop_filter,
                               analysis=analysis)
            job.partial(rep)
            job.check()
            return comparison_stage(job, codec, source, rep, target, *cached)

        return self.runner.start(work, "encode")

    def _reusable_analysis(self, source, model_id: int):
        """The open image's analysis from the last encode by this model (a fork: the worker owns
        it), so that moving the target re-runs neither the analysis transform nor the size
        estimates already made; None if there is none. encode_image drops it if the loop-filter
        choice changed since."""
        rep = self.report
        if rep is None or rep.analysis is None or rep.analysis.source is not source \
                or rep.decoded.header.model_id != model_id:
            return None
        return rep.analysis.fork()

    def cancel(self) -> None:
        if self.runner.is_busy:
            self.runner.cancel()
            self._after_open = []
            self._loading_job = None
            self._pending_apply = None
            self._restore_target = None
            self._show_comparison()
            self.info.setText("cancelled")

    def _busy(self, busy: bool) -> None:
        self.progress.setVisible(busy)
        self.progress.setMaximum(0)
        self.cancel_act.setEnabled(busy)
        self.encode_act.setEnabled(not busy)
        self.bitalloc.apply_btn.setEnabled(not busy)

    def _fraction(self, f: float) -> None:
        if f >= 0:
            self.progress.setMaximum(1000)
            self.progress.setValue(int(f * 1000))

    def _partial(self, report: EncodeReport) -> None:
        """Ours is ready (VVC still running): show it at once."""
        self.views.set_image("ours", as_rgb(report.decoded.pixels),
                             side_title(_ours_side(report), "Ours") if math.isfinite(report.psnr_y) else "Ours")
        self.trace_dock.show_trace(report.trace, report.target_bpp)
        self.info.setText(f"ours: {report.bpp:.4f} bpp, PSNR-Y {report.psnr_y:.2f} dB; {ANCHOR.upper()} running…")

    def _finished(self, out) -> None:
        if isinstance(out, Loaded):
            self._opened(out)
            return
        self.report = out.report
        if self._restore_target is not None:
            self.report.target_bpp = self._restore_target
            self._restore_target = None
        self.comparison = out.comparison
        self.anchor, self.anchor_note = out.anchor, out.anchor_note
        self._anchor_key = (id(self.source), out.target) if out.anchor is not None and out.anchor.codec == ANCHOR else None
        applied = self._pending_apply
        self._pending_apply = None
        self.map_applied = applied is not None and applied.get("nonflat", False)
        self._show_comparison()
        self.devices.set_bitstream(out.report.encoded.data, Path(self.source.path).stem if self.source else "")
        self.info.setText(self.summary_text())
        if applied is not None and "mask" in applied and self.comparison is not None:
            self._show_apply_result(applied)
        self.encode_done.emit(True)

    def _fail(self, message: str) -> None:
        self._after_open = []
        load_failed = self._loading_job is not None
        self._loading_job = None
        self._pending_apply = None
        self._restore_target = None
        self._show_comparison()
        self.info.setText(f"error: {message}")
        if load_failed:
            self.image_opened.emit(False)
        self.encode_done.emit(False)

    def summary_text(self) -> str:
        r, c = self.report, self.comparison
        if r is None:
            return ""
        t = f"ours: {r.bpp:.4f} bpp" + (f" (target {r.target_bpp:g})" if r.target_bpp else "")
        t += f", PSNR-Y {r.psnr_y:.2f} dB, {len(r.trace)} trials, encode {r.encode_seconds:.2f} s, " \
             f"decode {r.decoded.seconds:.2f} s"
        if c is not None and c.anchor is not None:
            t += f" | {c.anchor.name.upper()}: {c.anchor.bpp:.4f} bpp, PSNR-Y {c.anchor.psnr_y:.2f} dB ({c.anchor.param})"
        elif c is not None and c.anchor_error:
            t += f" | {c.anchor_error}"
        return t

    def _show_comparison(self) -> None:
        """Views, titles, heatmap and trace from the session's current comparison."""
        c = self.comparison
        if c is None:
            if self.report is not None:
                self.views.set_image("ours", as_rgb(self.report.decoded.pixels), "Ours (from the bitstream)")
            elif self.source is not None:
                self.views.set_image("ours", None, "Ours (learned codec)")
            self._update_heatmap()
            return
        self.views.set_image("ours", as_rgb(c.ours.rgb8), side_title(c.ours, "Ours"))
        if c.anchor is not None:
            title = side_title(c.anchor, c.anchor.name.upper())
            if c.anchor.note:
                title += " — " + c.anchor.note
            self.views.set_image("anchor", as_rgb(c.anchor.rgb8), title)
        else:
            self.views.set_image("anchor", None, c.anchor_error or "VVC intra")
        if self.report is not None:
            self.trace_dock.show_trace(self.report.trace, self.report.target_bpp)
        self._update_heatmap()

    # ---- bit allocation ----------------------------------------------------------------------
    def apply_map(self):
        """Re-encode at the same target bpp with the painted map; PSNR-Y inside the painted region
        before and after is shown in the dock."""
        if self.source is None or self.report is None or self.comparison is None:
            self.info.setText("encode the image first: Apply re-encodes at the same target with the map")
            return None
        painted = self.bitalloc.model.map
        k = map_from_painting(painted, self.source.height, self.source.width)
        mask = painted_region(painted)
        target = self.report.target_bpp
        if target is None:
            try:
                target = self.target_bpp()
            except BitlensError as exc:
                self._fail(str(exc))
                return None
        self._pending_apply = dict(mask=mask, before=self.comparison.region_psnr(mask),
                                   before_psnr=self.report.psnr_y, before_bpp=self.report.bpp,
                                   nonflat=bool(np.any(k)), kmap=k)
        return self.encode(kmap=k, target=target)

    def _show_apply_result(self, a: dict) -> None:
        after = self.comparison.region_psnr(a["mask"])
        n = int(a["mask"].sum())
        r = self.report
        self.apply_result = dict(before=a["before"]["ours"], after=after["ours"], anchor=after["anchor"],
                                 pixels=n, before_psnr=a["before_psnr"], after_psnr=r.psnr_y,
                                 before_bpp=a["before_bpp"], after_bpp=r.bpp)
        k = r.encoded.kmap
        if n == 0:
            region = "Nothing painted: encoded with a flat map."
        else:
            region = (f"Inside the painted region ({n} px): PSNR-Y {fmt_db(a['before']['ours'])} → "
                      f"{fmt_db(after['ours'])} (VVC {fmt_db(after['anchor'])}).")
        self.bitalloc.result.setText(
            f"{region}\nWhole image: {fmt_db(a['before_psnr'])} at {a['before_bpp']:.4f} bpp → "
            f"{fmt_db(r.psnr_y)} at {r.bpp:.4f} bpp; map k from {int(k.min())} to {int(k.max())}.")

    def compute_auto_map(self, name: str):
        if self.source is None:
            return None
        try:
            target = self.target_bpp()
        except BitlensError as exc:
            self._fail(str(exc))
            return None
        source, model_id = self.source, self.model_id()

        def work(job):
            job(f"computing the automatic {name} map at {target:g} bpp…")
            k = auto_map(name, LearnedCodec.load(model_id), source, target)
            return name, map_to_image(k, source.height, source.width)

        return self.map_runner.start(work, f"auto-{name}")

    def _auto_map_done(self, result) -> None:
        name, values = result
        if self.source is None or values.shape != (self.source.height, self.source.width):
            return
        self.bitalloc.set_map(values)
        self.bitalloc.result.setText(f"Automatic {name} map loaded (k {values.min():g} to {values.max():g}): "
                                     f"Apply to encode with it.")
        self.info.setText(f"automatic {name} map ready")

    def _paint_mode(self, on: bool) -> None:
        self.views.set_brush_radius(self.bitalloc.model.radius)
        self.views.set_paint_handler(self.bitalloc.paint if on else None)

    def _schedule_map_overlay(self) -> None:
        if not self._overlay_timer.isActive():
            self._overlay_timer.start()

    def _update_map_overlay(self) -> None:
        m = self.bitalloc.model
        show = self.bitalloc.show_map.isChecked() and m.map is not None and not m.is_empty
        self.views.set_map_overlay(m.map if show else None)

    # ---- heatmaps and inspector --------------------------------------------------------------
    def _update_heatmap(self) -> None:
        model = self.heat_dock.model
        self.views.set_opacity(model.opacity)
        mismatch = self.devices.mismatch
        if mismatch is not None and (self.source is None or mismatch.shape != (self.source.height, self.source.width)):
            mismatch = None
        spec = model.layers(self.comparison, mismatch)
        if spec is None:
            self.views.clear_heatmap()
            self.heat_dock.note.setText("" if model.choice == "none" else "not available for this comparison yet")
            return
        layers, kind, levels, label, block = spec
        self.views.set_heatmap(layers, kind, levels, label, block)
        self.heat_dock.note.setText(f"{label}: {levels[0]:.2f} to {levels[1]:.2f}")

    def _hover(self, x: int, y: int) -> None:
        c = self.comparison
        d = c.inspect(x, y) if c is not None else None
        self.inspected = d
        if d is None:
            self.inspector.setText("")
            return
        name = c.anchor.name.upper() if c.anchor is not None else ANCHOR.upper()
        t = (f"({x}, {y})  orig {d['original']}  ours {d['ours']}  {name} {d['anchor'] if d['anchor'] else '—'}"
             f"  | block {d['block'][0]},{d['block'][1]}: ours {fmt_db(d['ours_block_psnr'])}, "
             f"{name} {fmt_db(d['anchor_block_psnr'])}")
        if d["bits"] is not None:
            t += f", {d['bits']:.0f} bits"
        self.inspector.setText(t)

    def _set_slider(self, pos: float) -> None:
        self.wipe_slider.blockSignals(True)
        self.wipe_slider.setValue(int(round(pos * 1000)))
        self.wipe_slider.blockSignals(False)

    # ---- RD points ---------------------------------------------------------------------------
    def show_rd_point(self, point):
        """Show an RD point's reconstruction with its counterpart at the same rate (ours and VVC, or
        ours and the clicked anchor)."""
        if self.source is None:
            return None
        model = self.rd_dock.model
        if point.codec == "ours":
            ours = point
            other = model.counterpart(point, ANCHOR) or next(
                (model.counterpart(point, a) for a in model.anchors if model.counterpart(point, a)), None)
        else:
            ours, other = model.counterpart(point, "ours"), point
        if ours is None:
            self.views.set_image("anchor", as_rgb(other.result.rgb8),
                                 f"{other.codec.upper()} @ {other.target_bpp:g}: {other.bpp:.4f} bpp, "
                                 f"PSNR-Y {other.psnr_y:.2f} dB (no point of ours at this rate)")
            return None
        source, rep, anchor = self.source, ours.result, None if other is None else other.result
        self.bpp_box.setCurrentText(f"{point.target_bpp:g}")

        model_id = self.rd_dock.model_id   # the model the RD points were encoded with

        def work(job):
            return comparison_stage(job, LearnedCodec.load(model_id), source, rep, point.target_bpp, anchor, "")

        return self.runner.start(work, "rd-point")

    # ---- bitstreams --------------------------------------------------------------------------
    def choose_bitstream(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open bitstream", self._last_dir(), "Bitlens bitstreams (*.bln)")
        if path:
            self.open_bitstream(path)

    def open_bitstream(self, path: str, target: float | None = None):
        """Decode a .bln; compared with the current image when it has the bitstream's size."""
        try:
            data = Path(path).read_bytes()
            from codec.entropy.bitstream import Bitstream
            header = Bitstream.unpack(data)
        except OSError as exc:
            self._fail(f"{path}: cannot read: {exc.strerror}")
            return None
        except BitlensError as exc:
            self._fail(f"{path}: {exc}")
            return None
        source = self.source
        if source is not None and (source.width, source.height) != (header.width, header.height):
            source = None
        self.set_model(header.model_id)
        self.set_loop_filter(header.filter_data is not None)

        def work(job):
            job(f"decoding {Path(path).name}…", 0.1)
            codec = LearnedCodec.load(header.model_id)
            rep = report_from_bitstream(codec, data, source)
            if target is not None:
                rep.target_bpp = target
            if source is None:
                return Outcome(rep, None)
            job.partial(rep)
            return comparison_stage(job, codec, source, rep, target if target is not None else rep.bpp)

        if source is None:
            self.views.clear_all()
            self.views.set_image("original", None, "Original (no image of the bitstream's size is open)")
            self.views.set_image("anchor", None, "VVC intra")
            self.comparison = None
        return self.runner.start(work, "bitstream")

    def save_bitstream(self, path: str) -> None:
        if self.report is None:
            raise BitlensError("nothing encoded yet")
        data = self.report.encoded.data
        write_atomic(path, lambda f: f.write(data))

    def choose_save_bitstream(self) -> None:
        if self.report is None:
            self.info.setText("error: nothing encoded yet")
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save bitstream", self._suggest(".bln"), "Bitlens bitstreams (*.bln)")
        if path:
            self._guard(lambda: self.save_bitstream(path), f"saved {path}")

    # ---- sessions ----------------------------------------------------------------------------
    def session_settings(self) -> dict:
        b = self.bitalloc.model
        return dict(heatmap=self.heat_dock.model.choice, opacity=self.heat_dock.model.opacity,
                    flicker_with=self.views.flicker_with, wipe=self.views.wipe, wipe_pos=self.views.wipe_pos,
                    difference=self.views.difference, brush_radius=b.radius, brush_strength=b.strength,
                    brush_mode=b.mode, rd_targets=list(self.rd_dock.chosen_targets()),
                    rd_anchors=list(self.rd_dock.chosen_anchors()),
                    devices_subprocesses=self.devices.subprocesses.isChecked(), model=self.model_id(),
                    loop_filter=self.loop_filter())

    def apply_settings(self, s: dict) -> None:
        if "heatmap" in s and s["heatmap"] in HEATMAP_CHOICES:
            self.heat_dock.set_choice(s["heatmap"])
        if "opacity" in s:
            self.heat_dock.opacity.setValue(int(round(float(s["opacity"]) * 100)))
        if s.get("flicker_with") in ("anchor", "original"):
            self.flicker_with.setCurrentIndex(self.flicker_with.findData(s["flicker_with"]))
        if "wipe_pos" in s:
            self.wipe_slider.setValue(int(round(float(s["wipe_pos"]) * 1000)))
        if "wipe" in s:
            self.wipe_act.setChecked(bool(s["wipe"]))
        if "difference" in s:
            self.diff_act.setChecked(bool(s["difference"]))
        self.bitalloc.set_brush(s.get("brush_radius"), s.get("brush_strength"))
        if s.get("brush_mode"):
            i = self.bitalloc.mode.findData(s["brush_mode"])
            if i >= 0:
                self.bitalloc.mode.setCurrentIndex(i)
        self.rd_dock.set_choices(s.get("rd_targets"), s.get("rd_anchors"))
        if "devices_subprocesses" in s:
            self.devices.subprocesses.setChecked(bool(s["devices_subprocesses"]))
        if s.get("model") in MODELS:
            self.set_model(s["model"])
        if isinstance(s.get("loop_filter"), bool):
            self.set_loop_filter(s["loop_filter"])

    def session_state(self) -> Session:
        if self.source is None:
            raise BitlensError("no image open: nothing to save")
        m = self.bitalloc.model
        target = self.report.target_bpp if self.report is not None and self.report.target_bpp else None
        if target is None:
            try:
                target = self.target_bpp()
            except BitlensError:
                target = None
        return Session(os.path.abspath(self.source.path), target, None if m.is_empty else m.map.copy(),
                       None if self.report is None else self.report.encoded.kmap, self.map_applied,
                       None if self.report is None else self.report.encoded.data, self.session_settings(),
                       [] if self.report is None else [list(t) for t in self.report.trace])

    def save_session(self, path: str) -> None:
        save_session(path, self.session_state())

    def load_session(self, path: str):
        """Open a saved session: its image, target, map and settings; the saved bitstream is decoded
        (no re-encode), or, without one, the image is encoded again."""
        try:
            s = load_session(path)
        except BitlensError as exc:
            self._fail(str(exc))
            return None
        def restore():
            if s.target_bpp is not None:
                self.bpp_box.setCurrentText(f"{s.target_bpp:g}")
            self.apply_settings(s.settings)
            if s.painted is not None and s.painted.shape == (self.source.height, self.source.width):
                self.bitalloc.set_map(s.painted)
            if s.bitstream is not None:
                self.open_bitstream_bytes(s.bitstream, s.target_bpp, s.map_applied, s.trace)
            else:
                self.encode(kmap=s.kmap if s.map_applied else None, target=s.target_bpp)
            self.info.setText(f"session {path}: restoring…")

        return self.open_image(s.image_path, then=restore)

    def open_bitstream_bytes(self, data: bytes, target: float | None, map_applied: bool, trace):
        source = self.source

        def work(job):
            from codec.entropy.bitstream import Bitstream
            codec = LearnedCodec.load(Bitstream.unpack(data).model_id)
            rep = report_from_bitstream(codec, data, source)
            rep.target_bpp = target
            rep.trace = [tuple(t) for t in trace]
            job.partial(rep)
            return comparison_stage(job, codec, source, rep, target if target is not None else rep.bpp)

        self._pending_apply = dict(nonflat=True) if map_applied else None
        job = self.runner.start(work, "session")
        return job

    def choose_session(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open session", self._last_dir(), "Bitlens sessions (*.npz)")
        if path:
            self.load_session(path)

    def choose_save_session(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save session", self._suggest(".bls.npz"), "Bitlens sessions (*.npz)")
        if path:
            self._guard(lambda: self.save_session(path), f"session saved to {path}")

    # ---- report ------------------------------------------------------------------------------
    def export_report(self, folder: str) -> dict[str, str]:
        """Pictures (views, heatmaps, RD plot, panels) and numbers (JSON, CSV) into `folder`."""
        out = Path(folder)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BitlensError(f"{out}: cannot create folder: {exc.strerror or exc}") from None
        files = {"views": str(out / "views.png")}
        save_pixmap(self.views.grab(), files["views"])
        c = self.comparison
        if c is not None:
            for choice in ("psnr", "psnr_diff", "bits"):
                hm = HeatmapModel()
                hm.choice = choice
                spec = hm.layers(c)
                if spec is None:
                    continue
                layers, kind, levels, _, block = spec
                for panel, arr in layers.items():
                    name = {"psnr": f"heatmap_psnr_{'ours' if panel == 'ours' else 'vvc'}"}.get(choice, f"heatmap_{choice}")
                    files[name] = str(out / f"{name}.png")
                    save_png(render_heatmap(arr, kind, levels, block), files[name])
        rd = self.rd_dock.model.result
        if rd is not None:
            from codec.rdplot import rd_plot
            files["rd_plot"] = str(out / "rd.png")
            rd_plot(rd.curves(), files["rd_plot"], title=f"Rate-distortion: {Path(self.source.path).name if self.source else ''}")
            files["rd_panel"] = str(out / "rd_panel.png")
            save_pixmap(self.rd_dock.widget().grab(), files["rd_panel"])
        dev = self.devices.model.report
        if dev is not None:
            files["devices_panel"] = str(out / "devices_panel.png")
            save_pixmap(self.devices.widget().grab(), files["devices_panel"])
        extra = dict(image=None if self.source is None else self.source.path, map_applied=self.map_applied,
                     rate_matching=None if self.report is None else self.report.as_dict(),
                     settings=self.session_settings(),
                     apply_result={k: v for k, v in (self.apply_result or {}).items()})
        files.update(export_numbers(out, c, rd, dev, extra))
        return files

    def choose_export(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export report into a folder", self._last_dir())
        if folder:
            self._guard(lambda: self.export_report(folder), f"report exported to {folder}")

    # ---- drag and drop -----------------------------------------------------------------------
    def dragEnterEvent(self, e) -> None:
        if e.mimeData().hasUrls():
            e.acceptProposedAction()

    def dropEvent(self, e) -> None:
        paths = [u.toLocalFile() for u in e.mimeData().urls() if u.isLocalFile()]
        if paths:
            e.acceptProposedAction()
            self.open_path(paths[0])

    # ---- settings ----------------------------------------------------------------------------
    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for p in self.prefs.recent():
            self.recent_menu.addAction(p, lambda p=p: self.open_path(p))
        if self.recent_menu.isEmpty():
            self.recent_menu.addAction("(none)").setEnabled(False)

    def _last_dir(self) -> str:
        return self.prefs.get("last_dir", "", str)

    def _suggest(self, suffix: str) -> str:
        stem = Path(self.source.path).stem if self.source is not None and self.source.path else "bitlens"
        return os.path.join(self._last_dir(), stem + suffix)

    def _restore_settings(self) -> None:
        p = self.prefs
        geo = p.get("geometry")
        if geo is not None:
            self.restoreGeometry(geo)
        state = p.get("window_state")
        if state is not None:
            self.restoreState(state)
        bpp = p.get("target_bpp", None, str)
        if bpp:
            self.bpp_box.setCurrentText(bpp)
        self.apply_settings(p.get_json("view", {}) or {})

    def save_settings(self) -> None:
        p = self.prefs
        p.set("geometry", self.saveGeometry())
        p.set("window_state", self.saveState())
        p.set("target_bpp", self.bpp_box.currentText())
        p.set_json("view", self.session_settings())
        p.sync()

    def closeEvent(self, e) -> None:
        self.save_settings()
        for r in (self.runner, self.map_runner, self.rd_dock.runner, self.devices.runner):
            r.cancel()
        super().closeEvent(e)

    def _guard(self, fn, ok_text: str) -> None:
        try:
            fn()
        except BitlensError as exc:
            self.info.setText(f"error: {exc}")
        else:
            self.info.setText(ok_text)


def _ours_side(report: EncodeReport):
    from codec.compare import ours_side
    return ours_side(report)


def save_pixmap(pixmap, path: str) -> None:
    """A QPixmap as PNG, written atomically."""
    ba = QByteArray()
    buf = QBuffer(ba)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    if not pixmap.save(buf, "PNG"):
        raise BitlensError(f"{path}: cannot render the picture")
    buf.close()
    data = bytes(ba.data())
    write_atomic(path, lambda f: f.write(data))
