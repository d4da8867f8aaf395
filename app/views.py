"""The three synchronized image views: original | ours | anchor (VVC).

A thin Qt layer: it shows arrays it is given and reports the image pixel under the cursor and brush
strokes; the numbers come from `codec.compare`. Zoom and pan are linked; the middle panel can flicker
to the anchor or the original (A/B), wipe between ours and the anchor, and every reconstruction can be
shown as its amplified difference from the original. Heatmap overlays (one block map per panel, with a
shared colour bar) and the bit-allocation map overlay sit on top of the images.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtWidgets import QGraphicsEllipseItem

from codec.compare import difference_image

# the app's pyqtgraph settings, set wherever the views are used (the app, tests, benchmarks)
pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)

PANELS = ("original", "ours", "anchor")

# colour maps per kind of overlay (all bundled with pyqtgraph)
CMAPS = {"psnr": "viridis", "diff": "CET-D1", "bits": "inferno", "mismatch": "inferno", "map": "CET-D1"}


def colormap(kind: str) -> pg.ColorMap:
    return pg.colormap.get(CMAPS.get(kind, "viridis"))


def render_heatmap(values: np.ndarray, kind: str, levels: tuple[float, float], scale: int = 16) -> np.ndarray:
    """A block map as an RGB picture (each block `scale` x `scale` pixels) for exported reports."""
    lo, hi = levels
    v = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=lo, posinf=hi, neginf=lo)
    t = np.clip((v - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    rgba = colormap(kind).map(t.ravel(), mode="byte").reshape(*t.shape, -1)
    return np.kron(rgba[..., :3], np.ones((scale, scale, 1), dtype=np.uint8)).astype(np.uint8)


class PaintViewBox(pg.ViewBox):
    """A ViewBox whose left-drag paints (through `paint_handler(x, y, start, finish)`) when painting is
    on, and pans/zooms as usual otherwise."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.paint_handler = None

    def _paint(self, ev, start: bool, finish: bool) -> None:
        ev.accept()
        p = self.mapSceneToView(ev.scenePos())
        self.paint_handler(p.x(), p.y(), start, finish)

    def mouseDragEvent(self, ev, axis=None):
        if self.paint_handler is not None and ev.button() == Qt.MouseButton.LeftButton:
            self._paint(ev, ev.isStart(), ev.isFinish())
        else:
            super().mouseDragEvent(ev, axis)

    def mouseClickEvent(self, ev):
        if self.paint_handler is not None and ev.button() == Qt.MouseButton.LeftButton:
            self._paint(ev, True, True)
        else:
            super().mouseClickEvent(ev)


class Panel:
    def __init__(self, layout: pg.GraphicsLayout, col: int, title: str):
        self.title = title
        self.label = layout.addLabel(title, row=0, col=col)
        self.box = PaintViewBox(lockAspect=True, invertY=True, enableMenu=False)
        layout.addItem(self.box, row=1, col=col)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.overlay = pg.ImageItem(axisOrder="row-major")
        self.overlay.setZValue(10)
        self.overlay.setVisible(False)
        self.map_overlay = pg.ImageItem(axisOrder="row-major")
        self.map_overlay.setZValue(11)
        self.map_overlay.setVisible(False)
        for item in (self.image, self.overlay, self.map_overlay):
            self.box.addItem(item)
        self.shown: np.ndarray | None = None

    def set_pixels(self, pixels: np.ndarray | None) -> None:
        if pixels is self.shown and pixels is not None:
            return          # the same array: nothing to upload or repaint
        self.shown = pixels
        if pixels is None:
            self.image.clear()
        else:
            self.image.setImage(pixels, levels=(0, 255), autoLevels=False)

    def set_title(self, text: str) -> None:
        if text != self.label.text:
            self.label.setText(text)


class ComparisonViews(pg.GraphicsLayoutWidget):
    hovered = Signal(int, int)         # image pixel under the cursor
    wipe_moved = Signal(float)         # wipe position 0..1 (the wipe line was dragged)

    def __init__(self):
        super().__init__()
        self.panels = {name: Panel(self.ci, i, title) for i, (name, title) in
                       enumerate(zip(PANELS, ("Original", "Ours (learned codec)", "VVC intra")))}
        first = self.panels["original"].box
        for p in self.panels.values():
            if p.box is not first:
                p.box.setXLink(first)
                p.box.setYLink(first)
        self.images: dict[str, np.ndarray | None] = dict.fromkeys(PANELS)
        self.titles: dict[str, str] = {n: p.title for n, p in self.panels.items()}
        self.flicker = False
        self.flicker_with = "anchor"       # what the middle panel flips to: anchor | original
        self.wipe = False
        self.wipe_pos = 0.5
        self.difference = False
        self.diff_gain = 4.0
        self.size_hw: tuple[int, int] | None = None

        self.wipe_line = pg.InfiniteLine(angle=90, movable=True, pen=pg.mkPen("y", width=2))
        self.wipe_line.setZValue(20)
        self.wipe_line.setVisible(False)
        self.panels["ours"].box.addItem(self.wipe_line, ignoreBounds=True)
        self.wipe_line.sigPositionChanged.connect(self._wipe_dragged)

        self.colorbar = pg.ColorBarItem(values=(0, 1), colorMap=colormap("psnr"), interactive=False, width=14,
                                        colorMapMenu=False)
        self._bar_in_layout = False
        self.heat_kind: str | None = None
        self.heat_label = ""
        self.opacity = 0.6

        self.brush = QGraphicsEllipseItem(0, 0, 1, 1)
        self.brush.setPen(pg.mkPen("c", width=1))
        self.brush.setZValue(30)
        self.brush.setVisible(False)
        self.panels["original"].box.addItem(self.brush, ignoreBounds=True)
        self.brush_radius = 0.0

        self.scene().sigMouseMoved.connect(self._mouse_moved)

    # ---- content -----------------------------------------------------------------------------
    def set_image(self, name: str, pixels: np.ndarray | None, title: str | None = None) -> None:
        self.images[name] = pixels
        if title is not None:
            self.titles[name] = title
        if name == "original" and pixels is not None:
            new = pixels.shape[:2]
            if new != self.size_hw:
                self.size_hw = new
                self.wipe_line.setValue(self.wipe_pos * new[1])
        self.render()

    def clear_all(self) -> None:
        """Remove every image and overlay (`clear` is pyqtgraph's: it would remove the panels)."""
        for n in PANELS:
            self.images[n] = None
        self.size_hw = None
        self.clear_heatmap()
        self.set_map_overlay(None)
        self.render()

    def _diff(self, pixels: np.ndarray | None) -> np.ndarray | None:
        orig = self.images["original"]
        if pixels is None or orig is None or not self.difference or pixels.shape[:2] != orig.shape[:2]:
            return pixels
        return difference_image(orig, pixels, self.diff_gain)

    def middle(self) -> tuple[np.ndarray | None, str]:
        """What the middle panel shows now, and its title."""
        ours, other = self.images["ours"], self.images[self.flicker_with]
        a, b = (other, ours) if self.flicker else (ours, other)
        name_b = "VVC" if self.flicker_with == "anchor" else "original"
        if self.flicker:
            title = f"⇄ {self.titles[self.flicker_with]}  [flicker: {name_b}]"
        else:
            title = self.titles["ours"]
        if self.wipe and a is not None and b is not None and a.shape == b.shape:
            x = int(round(self.wipe_pos * a.shape[1]))
            shown = a.copy()
            shown[:, x:] = b[:, x:]
            left, right = ("ours", name_b) if not self.flicker else (name_b, "ours")
            return shown, f"{title}  [wipe: {left} | {right}]"
        return a, title

    def render(self) -> None:
        p = self.panels
        p["original"].set_pixels(self.images["original"])
        p["original"].set_title(self.titles["original"])
        shown, title = self.middle()
        p["ours"].set_pixels(self._diff(shown))
        p["ours"].set_title(title + ("  [difference x%g]" % self.diff_gain if self.difference else ""))
        p["anchor"].set_pixels(self._diff(self.images["anchor"]))
        p["anchor"].set_title(self.titles["anchor"] + ("  [difference x%g]" % self.diff_gain if self.difference else ""))
        self.wipe_line.setVisible(self.wipe and self.images["ours"] is not None)
        self._settle()

    def _settle(self) -> None:
        """Lay out the new titles and move the panels' view ranges now, not during the next paint:
        there each would schedule one more paint of the window, and while the engine keeps the CPU
        busy the three paints in a row held the GUI thread up by over 50 ms."""
        self.ci.layout.activate()
        for p in self.panels.values():
            p.box.prepareForPaint()

    def shown(self, name: str) -> np.ndarray | None:
        """The pixels a panel displays right now (after flicker, wipe and difference)."""
        return self.panels[name].shown

    # ---- viewing modes -----------------------------------------------------------------------
    def toggle_flicker(self) -> None:
        self.set_flicker(not self.flicker)

    def set_flicker(self, on: bool) -> None:
        self.flicker = bool(on)
        self.render()

    def set_flicker_with(self, name: str) -> None:
        self.flicker_with = name if name in ("anchor", "original") else "anchor"
        self.render()

    def set_wipe(self, on: bool, pos: float | None = None) -> None:
        self.wipe = bool(on)
        if pos is not None:
            self.wipe_pos = float(np.clip(pos, 0, 1))
            if self.size_hw:
                self.wipe_line.blockSignals(True)
                self.wipe_line.setValue(self.wipe_pos * self.size_hw[1])
                self.wipe_line.blockSignals(False)
        self.render()

    def _wipe_dragged(self) -> None:
        if self.size_hw:
            self.wipe_pos = float(np.clip(self.wipe_line.value() / self.size_hw[1], 0, 1))
            self.render()
            self.wipe_moved.emit(self.wipe_pos)

    def set_difference(self, on: bool) -> None:
        self.difference = bool(on)
        self.render()

    def fit(self) -> None:
        if self.size_hw:
            h, w = self.size_hw
            self.panels["original"].box.setRange(QRectF(0, 0, w, h), padding=0)
        else:
            self.panels["original"].box.autoRange(padding=0)

    def one_to_one(self) -> None:
        """One image pixel per screen pixel, centred where the view is centred now."""
        box = self.panels["original"].box
        (x0, x1), (y0, y1) = box.viewRange()
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        r = box.boundingRect()
        w, h = max(r.width(), 1.0), max(r.height(), 1.0)
        box.setRange(xRange=(cx - w / 2, cx + w / 2), yRange=(cy - h / 2, cy + h / 2), padding=0)

    # ---- overlays ----------------------------------------------------------------------------
    def set_heatmap(self, layers: dict[str, np.ndarray], kind: str, levels: tuple[float, float], label: str,
                    block: int = 16) -> None:
        """Show block maps (rows, cols) on the named panels (or per-pixel maps: block=1) with one
        colour bar; panels not named get no overlay."""
        lo, hi = levels
        if not hi > lo:
            hi = lo + 1.0
        items = []
        for name, panel in self.panels.items():
            arr = layers.get(name)
            if arr is None:
                panel.overlay.setVisible(False)
                continue
            a = np.nan_to_num(np.asarray(arr, dtype=np.float64), nan=lo, posinf=hi, neginf=lo)
            panel.overlay.setImage(a, autoLevels=False, levels=(lo, hi))
            panel.overlay.setRect(QRectF(0, 0, a.shape[1] * block, a.shape[0] * block))
            panel.overlay.setOpacity(self.opacity)
            panel.overlay.setVisible(True)
            items.append(panel.overlay)
        self.heat_kind, self.heat_label = kind, label
        self.colorbar.setColorMap(colormap(kind))
        if items:
            self.colorbar.setImageItem(items)
        self.colorbar.setLevels(values=(lo, hi))
        try:
            self.colorbar.axis.setLabel(label)
        except Exception:   # older pyqtgraph: no axis label on the bar
            pass
        self._show_bar(bool(items))
        self._settle()

    def clear_heatmap(self) -> None:
        for panel in self.panels.values():
            panel.overlay.setVisible(False)
        self.heat_kind = None
        self._show_bar(False)
        self._settle()

    def set_opacity(self, value: float) -> None:
        self.opacity = float(value)
        for panel in self.panels.values():
            panel.overlay.setOpacity(self.opacity)

    def _show_bar(self, on: bool) -> None:
        if on and not self._bar_in_layout:
            self.ci.addItem(self.colorbar, row=1, col=len(PANELS))
            self._bar_in_layout = True
        elif not on and self._bar_in_layout:
            self.ci.removeItem(self.colorbar)
            self.colorbar.setParentItem(None)
            if self.colorbar.scene() is not None:
                self.colorbar.scene().removeItem(self.colorbar)
            self._bar_in_layout = False

    @property
    def colorbar_visible(self) -> bool:
        return self._bar_in_layout

    def set_map_overlay(self, painted: np.ndarray | None, opacity: float = 0.55) -> None:
        """The bit-allocation map (image resolution, offsets -8..8) over the original panel."""
        item = self.panels["original"].map_overlay
        if painted is None:
            item.setVisible(False)
            return
        rgba = colormap("map").map(np.clip((np.asarray(painted, dtype=np.float64) + 8) / 16, 0, 1).ravel(),
                                   mode="byte").reshape(*painted.shape, 4)
        rgba[..., 3] = np.where(painted != 0, int(255 * opacity), 0)
        item.setImage(rgba, autoLevels=False, levels=(0, 255))
        item.setVisible(True)

    # ---- painting and hover ------------------------------------------------------------------
    def set_paint_handler(self, handler) -> None:
        """Painting happens on the original panel; None turns it off (left-drag pans again)."""
        self.panels["original"].box.paint_handler = handler
        self.brush.setVisible(handler is not None and self.brush_radius > 0)

    def set_brush_radius(self, radius: float) -> None:
        self.brush_radius = float(radius)
        r = self.brush.rect()
        cx, cy = r.center().x(), r.center().y()
        self.brush.setRect(cx - radius, cy - radius, 2 * radius, 2 * radius)

    def _mouse_moved(self, pos) -> None:
        for name, panel in self.panels.items():
            if panel.box.sceneBoundingRect().contains(pos):
                p = panel.box.mapSceneToView(pos)
                x, y = int(np.floor(p.x())), int(np.floor(p.y()))
                if name == "original" and self.brush.isVisible():
                    r = self.brush_radius
                    self.brush.setRect(p.x() - r, p.y() - r, 2 * r, 2 * r)
                self.hovered.emit(x, y)
                return
