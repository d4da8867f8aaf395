"""The three views (ours and VVC next to the original), flicker, wipe, difference, fit / 1:1, the
pixel inspector and the heatmap overlays: what is shown equals what the codec functions compute."""
import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt

from codec.anchors import match_anchor
from codec.compare import difference_image, source_rgb8
from codec.metrics import block_psnr

from .guiconf import open_and_wait, _gui_env, encode_and_wait, make_window, settings_path, tiny_png, window  # noqa: F401


@pytest.fixture
def encoded(window, qtbot, tiny_png, codec):
    open_and_wait(qtbot, window, tiny_png)
    encode_and_wait(qtbot, window, "1.0")
    return window


def test_three_views_show_original_ours_and_vvc(encoded):
    w = encoded
    src, rep = w.source, w.report
    vvc = match_anchor("vvc", src, 1.0)       # cached on disk by the encode
    assert np.array_equal(w.views.shown("original"), source_rgb8(src))
    assert np.array_equal(w.views.shown("ours"), rep.decoded.pixels)
    assert np.array_equal(w.views.shown("anchor"), vvc.rgb8)
    assert w.comparison.anchor.psnr_y == pytest.approx(vvc.psnr_y)
    assert f"{rep.psnr_y:.2f} dB" in w.views.panels["ours"].label.text
    assert f"{vvc.psnr_y:.2f} dB" in w.views.panels["anchor"].label.text
    assert f"VVC: {vvc.bpp:.4f} bpp" in w.info.text()
    # the rate matcher's trials are plotted
    assert w.trace_dock.trace == [(int(q), float(b)) for q, b in rep.trace]


def test_flicker_key_toggles_ours_and_vvc(encoded, qtbot):
    w = encoded
    ours, vvc = w.comparison.ours.rgb8, w.comparison.anchor.rgb8
    w.views.setFocus()
    qtbot.keyClick(w, Qt.Key.Key_Space)
    assert w.flicker_act.isChecked()
    assert np.array_equal(w.views.shown("ours"), vvc)
    qtbot.keyClick(w, Qt.Key.Key_Space)
    assert np.array_equal(w.views.shown("ours"), ours)
    w.flicker_with.setCurrentIndex(w.flicker_with.findData("original"))
    w.flicker_act.setChecked(True)
    assert np.array_equal(w.views.shown("ours"), source_rgb8(w.source))


def test_wipe_and_difference(encoded):
    w = encoded
    ours, vvc = w.comparison.ours.rgb8, w.comparison.anchor.rgb8
    w.wipe_slider.setValue(250)
    w.wipe_act.setChecked(True)
    x = round(0.25 * ours.shape[1])
    shown = w.views.shown("ours")
    assert np.array_equal(shown[:, :x], ours[:, :x]) and np.array_equal(shown[:, x:], vvc[:, x:])
    w.wipe_act.setChecked(False)
    w.diff_act.setChecked(True)
    orig = source_rgb8(w.source)
    assert np.array_equal(w.views.shown("ours"), difference_image(orig, ours, w.views.diff_gain))
    assert np.array_equal(w.views.shown("anchor"), difference_image(orig, vvc, w.views.diff_gain))
    w.diff_act.setChecked(False)
    assert np.array_equal(w.views.shown("ours"), ours)


def test_views_are_linked_and_fit_and_one_to_one(encoded):
    w = encoded
    boxes = [p.box for p in w.views.panels.values()]
    boxes[0].setRange(xRange=(10, 30), yRange=(5, 25), padding=0)
    (x0, x1), _ = boxes[0].viewRange()
    for b in boxes[1:]:
        (bx0, bx1), _ = b.viewRange()
        assert (bx0 + bx1) / 2 == pytest.approx((x0 + x1) / 2, abs=1e-6)
    w.views.one_to_one()
    (x0, x1), _ = boxes[0].viewRange()
    assert x1 - x0 == pytest.approx(boxes[0].boundingRect().width(), rel=1e-3)
    w.views.fit()
    (x0, x1), (y0, y1) = boxes[0].viewRange()
    assert x0 <= 0 and x1 >= w.source.width - 1e-6 and y0 <= 0 and y1 >= w.source.height - 1e-6


def test_pixel_inspector_shows_all_three_and_block_numbers(encoded, codec):
    w = encoded
    x, y = 37, 21
    box = w.views.panels["anchor"].box
    w.views.scene().sigMouseMoved.emit(box.mapViewToScene(QPointF(x + 0.5, y + 0.5)))
    d = w.inspected
    assert d is not None and (d["x"], d["y"]) == (x, y)
    src, rep = w.source, w.report
    by, bx = y // 16, x // 16
    assert d["ours_block_psnr"] == pytest.approx(block_psnr(src.y10(), rep.decoded.y10, 16)[by, bx])
    vvc = match_anchor("vvc", src, 1.0)
    assert d["anchor_block_psnr"] == pytest.approx(block_psnr(src.y10(), vvc.y10, 16)[by, bx])
    assert d["bits"] == pytest.approx(rep.cell_bits(codec, src)[by, bx])
    assert d["original"] == tuple(int(v) for v in source_rgb8(src)[y, x])
    assert d["ours"] == tuple(int(v) for v in rep.decoded.pixels[y, x])
    assert d["anchor"] == tuple(int(v) for v in vvc.rgb8[y, x])
    text = w.inspector.text()
    assert f"{d['ours_block_psnr']:.2f} dB" in text and f"{d['anchor_block_psnr']:.2f} dB" in text
    assert f"{d['bits']:.0f} bits" in text and str(d["original"]) in text


def test_heatmap_overlays_and_colour_bar(encoded, codec):
    w = encoded
    src, rep = w.source, w.report
    panels = w.views.panels
    assert not w.views.colorbar_visible
    w.heat_dock.set_choice("psnr")
    ours_map = block_psnr(src.y10(), rep.decoded.y10, 16)
    vvc_map = block_psnr(src.y10(), match_anchor("vvc", src, 1.0).y10, 16)
    assert panels["ours"].overlay.isVisible() and panels["anchor"].overlay.isVisible()
    assert np.allclose(panels["ours"].overlay.image, ours_map)
    assert np.allclose(panels["anchor"].overlay.image, vvc_map)
    assert w.views.colorbar_visible
    w.heat_dock.set_choice("psnr_diff")
    assert np.allclose(panels["ours"].overlay.image, ours_map - vvc_map)
    assert not panels["anchor"].overlay.isVisible()
    w.heat_dock.set_choice("bits")
    bits = rep.cell_bits(codec, src)[: ours_map.shape[0], : ours_map.shape[1]]
    assert np.allclose(panels["ours"].overlay.image, bits)
    w.heat_dock.opacity.setValue(25)
    assert panels["ours"].overlay.opacity() == pytest.approx(0.25)
    w.heat_dock.set_choice("none")
    assert not panels["ours"].overlay.isVisible() and not w.views.colorbar_visible
