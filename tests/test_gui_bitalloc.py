"""Bit-allocation dock: brush strokes on the map, undo/redo/clear, automatic maps, overlay, and Apply
(re-encode at the same target with the map; PSNR-Y inside the painted region before and after)."""
import numpy as np
import pytest

from app.docks.bitalloc import PaintModel
from codec.bitalloc import auto_map, map_from_painting, variance_map
from codec.compare import map_to_image
from codec.metrics import region_psnr

from .guiconf import open_and_wait, _gui_env, encode_and_wait, make_window, settings_path, tiny_png, wait_job, window  # noqa: F401


def test_paint_model_strokes_undo_redo_clear():
    m = PaintModel()
    m.reset(40, 60)
    m.radius, m.strength, m.mode = 5, 3, "more"
    m.stroke([(10, 10), (30, 10)])
    painted = m.map.copy()
    assert painted[10, 10] == -3 and painted[10, 30] == -3 and painted[10, 20] == -3
    assert painted[30, 50] == 0 and set(np.unique(painted)) == {-3.0, 0.0}
    m.mode = "erase"
    m.stroke([(10, 10)])
    assert m.map[10, 10] == 0 and m.map[10, 30] == -3
    assert m.undo() and np.array_equal(m.map, painted)
    assert m.redo() and m.map[10, 10] == 0
    m.clear()
    assert m.is_empty and m.undo() and not m.is_empty
    assert m.undo() and m.undo() and m.is_empty      # erase, then the first stroke
    assert not m.undo()


def test_painting_in_the_view_then_undo_restores(window, tiny_png, qtbot):
    w = window
    open_and_wait(qtbot, w, tiny_png)
    dock = w.bitalloc
    dock.size.setValue(6)
    dock.strength.setValue(2.5)
    dock.paint_btn.setChecked(True)
    handler = w.views.panels["original"].box.paint_handler
    assert handler is not None
    handler(20, 20, True, False)
    handler(40, 20, False, True)
    assert dock.model.map[20, 30] == pytest.approx(-2.5)
    assert dock.undo_act.isEnabled() and not dock.redo_act.isEnabled()
    qtbot.waitUntil(lambda: w.views.panels["original"].map_overlay.isVisible(), timeout=2000)
    dock.undo_act.trigger()
    assert dock.model.is_empty and dock.redo_act.isEnabled()
    dock.redo_act.trigger()
    assert dock.model.map[20, 30] == pytest.approx(-2.5)
    dock.paint_btn.setChecked(False)
    assert w.views.panels["original"].box.paint_handler is None


def test_apply_reencodes_at_the_same_bpp_with_the_map(window, qtbot, tiny_png, codec):
    w = window
    open_and_wait(qtbot, w, tiny_png)
    before = encode_and_wait(qtbot, w, "1.0")
    m = w.bitalloc.model
    m.radius, m.strength, m.mode = 14, 4, "more"
    m.stroke([(20, 24), (50, 24)])
    painted = m.map.copy()
    with qtbot.waitSignal(w.encode_done, timeout=120_000) as sig:
        w.apply_map()
    assert sig.args == [True]
    after = w.report
    k = map_from_painting(painted, w.source.height, w.source.width)
    assert np.array_equal(after.encoded.kmap, k) and k.min() < 0
    assert after.target_bpp == 1.0 and after.bpp <= 1.0 and after.bpp >= 0.99 * 1.0 - 1e-9
    assert w.map_applied
    mask = painted != 0
    ref = w.source.y10()
    r = w.apply_result
    assert r["before"] == pytest.approx(region_psnr(ref, before.decoded.y10, mask))
    assert r["after"] == pytest.approx(region_psnr(ref, after.decoded.y10, mask))
    assert r["pixels"] == int(mask.sum())
    text = w.bitalloc.result.text()
    assert f"{r['before']:.2f} dB" in text and f"{r['after']:.2f} dB" in text


def test_apply_before_encoding_says_so(window, qtbot, tiny_png):
    open_and_wait(qtbot, window, tiny_png)
    assert window.apply_map() is None
    assert "encode the image first" in window.info.text()


def test_automatic_variance_map_is_undoable(window, qtbot, tiny_png):
    w = window
    open_and_wait(qtbot, w, tiny_png)
    w.bpp_box.setCurrentText("1.0")
    w.compute_auto_map("variance")
    wait_job(qtbot, w.map_runner)
    expected = map_to_image(variance_map(w.source), w.source.height, w.source.width)
    assert np.array_equal(w.bitalloc.model.map, expected)
    assert "variance" in w.bitalloc.result.text()
    w.bitalloc.undo()
    assert w.bitalloc.model.is_empty


def test_automatic_rdo_map_equals_the_codec_function(window, qtbot, tiny_png, codec):
    w = window
    open_and_wait(qtbot, w, tiny_png)
    w.bpp_box.setCurrentText("1.0")
    w.compute_auto_map("rdo")
    wait_job(qtbot, w.map_runner)
    k = auto_map("rdo", codec, w.source, 1.0)
    assert np.array_equal(w.bitalloc.model.map, map_to_image(k, w.source.height, w.source.width))


def test_painting_with_the_mouse(window, qtbot, tiny_png):
    from PySide6.QtCore import QPointF, Qt
    from PySide6.QtTest import QTest
    w = window
    open_and_wait(qtbot, w, tiny_png)
    w.views.fit()
    qtbot.wait(50)
    w.bitalloc.size.setValue(5)
    w.bitalloc.paint_btn.setChecked(True)
    box = w.views.panels["original"].box
    vp = w.views.viewport()

    def at(x, y):
        return w.views.mapFromScene(box.mapViewToScene(QPointF(x, y)))
    (x0, x1), _ = box.viewRange()
    QTest.mousePress(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, at(20, 30))
    for x in range(22, 72, 4):
        QTest.mouseMove(vp, at(x, 30))
        qtbot.wait(5)
    QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, at(70, 30))
    m = w.bitalloc.model.map
    assert m[30, 25] < 0 and m[30, 60] < 0 and m[5, 5] == 0
    assert box.viewRange()[0] == [x0, x1]              # painting, not panning
    assert w.bitalloc.undo_act.isEnabled()
