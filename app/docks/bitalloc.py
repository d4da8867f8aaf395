"""Bit allocation: paint a float map of step offsets at image resolution (negative = more bits), or
start from an automatic one, then Apply = re-encode at the same target bpp with the map
(`codec.bitalloc.map_from_painting` quantizes it onto the 16x16 latent grid; the rate matcher keeps the
total on target, so painting moves bits rather than adding them).

`PaintModel` is the Qt-free state: the map, brush dabs along a stroke, clear, and undo/redo of whole
operations (a stroke, a clear, an automatic map, a loaded map).
"""
from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDockWidget, QDoubleSpinBox, QFormLayout, QGridLayout,
                               QHBoxLayout, QLabel, QPushButton, QSpinBox, QToolButton, QVBoxLayout, QWidget)

MODES = {"more": "More bits (−k)", "fewer": "Fewer bits (+k)", "erase": "Erase"}
MAP_LIMIT = 8.0


class PaintModel:
    """A float offset map at image resolution with brush strokes and undo/redo."""

    def __init__(self, history: int = 40):
        self.map: np.ndarray | None = None
        self.undo_stack: list[np.ndarray] = []
        self.redo_stack: list[np.ndarray] = []
        self.history = history
        self.radius = 24.0
        self.strength = 2.0
        self.mode = "more"
        self._last: tuple[float, float] | None = None
        self._stroking = False

    # ---- state -------------------------------------------------------------------------------
    def reset(self, height: int, width: int) -> None:
        self.map = np.zeros((height, width), dtype=np.float32)
        self.undo_stack.clear()
        self.redo_stack.clear()

    @property
    def shape(self) -> tuple[int, int] | None:
        return None if self.map is None else self.map.shape

    @property
    def is_empty(self) -> bool:
        return self.map is None or not np.any(self.map)

    @property
    def can_undo(self) -> bool:
        return bool(self.undo_stack)

    @property
    def can_redo(self) -> bool:
        return bool(self.redo_stack)

    def _push(self) -> None:
        self.undo_stack.append(self.map.copy())
        del self.undo_stack[:-self.history]
        self.redo_stack.clear()

    def undo(self) -> bool:
        if not self.undo_stack:
            return False
        self.redo_stack.append(self.map)
        self.map = self.undo_stack.pop()
        return True

    def redo(self) -> bool:
        if not self.redo_stack:
            return False
        self.undo_stack.append(self.map)
        self.map = self.redo_stack.pop()
        return True

    def clear(self) -> None:
        if self.map is not None and not self.is_empty:
            self._push()
            self.map = np.zeros_like(self.map)

    def set_map(self, values: np.ndarray) -> None:
        """Replace the map (an automatic or loaded one) as one undoable step."""
        values = np.asarray(values, dtype=np.float32)
        if self.map is not None and values.shape != self.map.shape:
            raise ValueError(f"map of shape {values.shape} for an image of shape {self.map.shape}")
        if self.map is not None:
            self._push()
        self.map = np.clip(values, -MAP_LIMIT, MAP_LIMIT).copy()

    # ---- brush -------------------------------------------------------------------------------
    @property
    def value(self) -> float:
        return {"more": -self.strength, "fewer": self.strength, "erase": 0.0}[self.mode]

    def dab(self, x: float, y: float) -> None:
        """Set the disc of the brush radius around (x, y) to the brush value."""
        h, w = self.map.shape
        r = max(self.radius, 0.5)
        x0, x1 = max(int(math.floor(x - r)), 0), min(int(math.ceil(x + r)) + 1, w)
        y0, y1 = max(int(math.floor(y - r)), 0), min(int(math.ceil(y + r)) + 1, h)
        if x0 >= x1 or y0 >= y1:
            return
        yy, xx = np.mgrid[y0:y1, x0:x1]
        disc = (xx + 0.5 - x) ** 2 + (yy + 0.5 - y) ** 2 <= r * r
        self.map[y0:y1, x0:x1][disc] = self.value

    def begin_stroke(self, x: float, y: float) -> None:
        if self.map is None:
            return
        self._push()
        self._stroking = True
        self._last = (x, y)
        self.dab(x, y)

    def stroke_to(self, x: float, y: float) -> None:
        """Continue the stroke with dabs every half radius along the segment."""
        if self.map is None:
            return
        if not self._stroking:
            self.begin_stroke(x, y)
            return
        x0, y0 = self._last
        n = max(1, int(math.hypot(x - x0, y - y0) / max(self.radius / 2, 0.5)))
        for i in range(1, n + 1):
            self.dab(x0 + (x - x0) * i / n, y0 + (y - y0) * i / n)
        self._last = (x, y)

    def end_stroke(self) -> None:
        self._stroking = False
        self._last = None

    def stroke(self, points) -> None:
        """A whole stroke through `points` [(x, y), ...] as one undoable step."""
        pts = list(points)
        if not pts:
            return
        self.begin_stroke(*pts[0])
        for p in pts[1:]:
            self.stroke_to(*p)
        self.end_stroke()


class BitAllocDock(QDockWidget):
    changed = Signal()                 # the map changed (repaint the overlay)
    paint_mode_changed = Signal(bool)
    apply_requested = Signal()
    auto_requested = Signal(str)       # rdo | vvc | variance

    def __init__(self, parent=None):
        super().__init__("Bit allocation", parent)
        self.setObjectName("bitalloc")
        self.model = PaintModel()
        w = QWidget()
        lay = QVBoxLayout(w)

        top = QHBoxLayout()
        self.paint_btn = QPushButton("Paint (P)", checkable=True)
        self.paint_btn.setToolTip("Left-drag on the Original view paints; off: left-drag pans")
        self.mode = QComboBox()
        for k, t in MODES.items():
            self.mode.addItem(t, k)
        top.addWidget(self.paint_btn)
        top.addWidget(self.mode, 1)
        lay.addLayout(top)

        form = QFormLayout()
        self.size = QSpinBox(minimum=1, maximum=400, value=24, suffix=" px")
        self.strength = QDoubleSpinBox(minimum=0.25, maximum=MAP_LIMIT, value=2.0, singleStep=0.25, decimals=2)
        self.strength.setToolTip("step offset k painted (x 2^(k/4) on the quantization step)")
        form.addRow("Brush radius", self.size)
        form.addRow("Strength (k)", self.strength)
        lay.addLayout(form)

        grid = QGridLayout()
        self.undo_act = QAction("Undo", self, shortcut=QKeySequence.StandardKey.Undo, triggered=self.undo)
        self.redo_act = QAction("Redo", self, shortcut=QKeySequence.StandardKey.Redo, triggered=self.redo)
        self.clear_act = QAction("Clear", self, triggered=self.clear)
        for i, act in enumerate((self.undo_act, self.redo_act, self.clear_act)):
            b = QToolButton()
            b.setDefaultAction(act)
            grid.addWidget(b, 0, i)
        self.auto = QComboBox()
        self.auto.addItem("rdo (equal slope)", "rdo")
        self.auto.addItem("vvc-guided", "vvc")
        self.auto.addItem("variance", "variance")
        self.auto_btn = QPushButton("Automatic map")
        grid.addWidget(self.auto, 1, 0, 1, 2)
        grid.addWidget(self.auto_btn, 1, 2)
        lay.addLayout(grid)

        self.show_map = QCheckBox("Show map over the original", checked=True)
        lay.addWidget(self.show_map)
        self.apply_btn = QPushButton("Apply: re-encode at the same bpp")
        lay.addWidget(self.apply_btn)
        self.result = QLabel("Paint where bits should go, then Apply.")
        self.result.setWordWrap(True)
        lay.addWidget(self.result)
        lay.addStretch(1)
        self.setWidget(w)

        self.paint_btn.toggled.connect(self.paint_mode_changed)
        self.mode.currentIndexChanged.connect(lambda: setattr(self.model, "mode", self.mode.currentData()))
        self.size.valueChanged.connect(lambda v: setattr(self.model, "radius", float(v)))
        self.strength.valueChanged.connect(lambda v: setattr(self.model, "strength", float(v)))
        self.auto_btn.clicked.connect(lambda: self.auto_requested.emit(self.auto.currentData()))
        self.apply_btn.clicked.connect(self.apply_requested)
        self.show_map.toggled.connect(lambda _: self.changed.emit())
        self.update_actions()

    # ---- presenter hooks ---------------------------------------------------------------------
    def reset(self, height: int, width: int) -> None:
        self.model.reset(height, width)
        self.result.setText("Paint where bits should go, then Apply.")
        self._changed()

    def paint(self, x: float, y: float, start: bool, finish: bool) -> None:
        """Brush input from the view (image coordinates)."""
        if self.model.map is None:
            return
        if start:
            self.model.begin_stroke(x, y)
        else:
            self.model.stroke_to(x, y)
        if finish:
            self.model.end_stroke()
        self._changed()

    def set_map(self, values: np.ndarray) -> None:
        self.model.set_map(values)
        self._changed()

    def undo(self) -> None:
        if self.model.undo():
            self._changed()

    def redo(self) -> None:
        if self.model.redo():
            self._changed()

    def clear(self) -> None:
        self.model.clear()
        self._changed()

    def set_brush(self, radius: float | None = None, strength: float | None = None) -> None:
        if radius is not None:
            self.size.setValue(int(radius))
        if strength is not None:
            self.strength.setValue(float(strength))

    def set_busy(self, busy: bool) -> None:
        self.auto_btn.setEnabled(not busy)

    def update_actions(self) -> None:
        self.undo_act.setEnabled(self.model.can_undo)
        self.redo_act.setEnabled(self.model.can_redo)
        self.clear_act.setEnabled(not self.model.is_empty)

    def _changed(self) -> None:
        self.update_actions()
        self.changed.emit()
