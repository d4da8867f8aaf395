"""Sessions (save and open: image, target, map, settings, the encode itself), bitstreams, the exported
report, settings remembered between runs, recent files, folders and drag and drop."""
import csv
import json

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from codec.session import load_session

from .conftest import sample_crop
from .guiconf import open_and_wait, TIMEOUT, _gui_env, encode_and_wait, make_window, settings_path, tiny_png, window  # noqa: F401


def paint_and_apply(qtbot, w):
    m = w.bitalloc.model
    m.radius, m.strength = 12, 3
    m.stroke([(16, 16), (48, 16)])
    with qtbot.waitSignal(w.encode_done, timeout=TIMEOUT):
        w.apply_map()


def test_save_and_open_session(make_window, qtbot, tiny_png, tmp_path, codec):
    w = make_window()
    open_and_wait(qtbot, w, tiny_png)
    encode_and_wait(qtbot, w, "1.0")
    paint_and_apply(qtbot, w)
    w.heat_dock.set_choice("bits")
    path = tmp_path / "s.bls.npz"
    w.save_session(str(path))
    s = load_session(str(path))
    assert s.image_path == str(tiny_png.resolve()) and s.target_bpp == 1.0 and s.map_applied
    assert np.array_equal(s.painted, w.bitalloc.model.map)
    assert s.bitstream == w.report.encoded.data and s.settings["heatmap"] == "bits"

    w2 = make_window(tmp_path / "other-settings.ini")
    with qtbot.waitSignal(w2.encode_done, timeout=TIMEOUT) as sig:
        w2.load_session(str(path))
    assert sig.args == [True]
    assert w2.source.path == str(tiny_png.resolve()) and w2.bpp_box.currentText() == "1"
    assert np.array_equal(w2.bitalloc.model.map, w.bitalloc.model.map)
    assert w2.report.encoded.data == w.report.encoded.data          # restored, not re-encoded
    assert w2.report.psnr_y == pytest.approx(w.report.psnr_y) and w2.report.target_bpp == 1.0
    assert w2.report.trace == w.report.trace and w2.map_applied
    assert w2.heat_dock.model.choice == "bits"
    assert np.array_equal(w2.views.shown("ours"), w.views.shown("ours"))


def test_broken_session_is_an_error_and_keeps_the_session(window, qtbot, tiny_png, tmp_path):
    open_and_wait(qtbot, window, tiny_png)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    window.load_session(str(bad))
    assert "error" in window.info.text() and window.source.path == str(tiny_png)


def test_save_and_open_bitstream(window, qtbot, tiny_png, tmp_path, codec):
    w = window
    open_and_wait(qtbot, w, tiny_png)
    rep = encode_and_wait(qtbot, w, "1.0")
    out = tmp_path / "x.bln"
    w.save_bitstream(str(out))
    assert out.read_bytes() == rep.encoded.data
    with qtbot.waitSignal(w.encode_done, timeout=TIMEOUT) as sig:
        w.open_bitstream(str(out))
    assert sig.args == [True]
    assert w.report is not rep and w.report.encoded.data == rep.encoded.data
    assert w.report.psnr_y == pytest.approx(rep.psnr_y)
    assert np.array_equal(w.views.shown("ours"), rep.decoded.pixels)


def test_export_report(window, qtbot, tiny_png, tmp_path, codec):
    w = window
    open_and_wait(qtbot, w, tiny_png)
    encode_and_wait(qtbot, w, "1.0")
    files = w.export_report(str(tmp_path / "report"))
    for key in ("views", "heatmap_psnr_ours", "heatmap_psnr_vvc", "heatmap_psnr_diff", "heatmap_bits",
                "json", "csv", "blocks"):
        assert (tmp_path / "report" / files[key].split("/")[-1]).exists(), key
    with Image.open(files["views"]) as im:
        assert im.width > 100
    with Image.open(files["heatmap_bits"]) as im:
        assert im.size == (16 * w.comparison.grid[1], 16 * w.comparison.grid[0])
    numbers = json.loads(open(files["json"]).read())
    assert numbers["comparison"]["ours"]["psnr_y"] == pytest.approx(w.report.psnr_y)
    assert numbers["comparison"]["anchor"]["bpp"] == pytest.approx(w.comparison.anchor.bpp)
    rows = list(csv.DictReader(open(files["csv"])))
    assert {r["codec"] for r in rows} == {"ours", "vvc"}
    blocks = list(csv.DictReader(open(files["blocks"])))
    assert len(blocks) == w.comparison.psnr_ours.size
    assert float(blocks[0]["psnr_ours"]) == pytest.approx(w.comparison.psnr_ours[0, 0])


def test_settings_are_remembered(make_window, qtbot, tiny_png, settings_path):
    w = make_window()
    open_and_wait(qtbot, w, tiny_png)
    w.bpp_box.setCurrentText("0.75")
    w.heat_dock.set_choice("psnr_diff")
    w.bitalloc.size.setValue(33)
    w.rd_dock.set_choices([0.12, 0.5], ["vvc", "hevc"])
    w.devices.subprocesses.setChecked(False)
    w.close()
    assert settings_path.exists()
    w2 = make_window()
    assert w2.bpp_box.currentText() == "0.75"
    assert w2.heat_dock.model.choice == "psnr_diff"
    assert w2.bitalloc.model.radius == 33
    assert w2.rd_dock.chosen_targets() == (0.12, 0.5) and w2.rd_dock.chosen_anchors() == ("vvc", "hevc")
    assert not w2.devices.subprocesses.isChecked()
    assert w2.prefs.recent()[0] == str(tiny_png.resolve())


def test_folder_as_image_list_and_drop(window, qtbot, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, name in enumerate(("a.png", "b.png")):
        Image.fromarray(sample_crop(32, 48, 100 + 10 * i, 200)).save(folder / name)
    (folder / "notes.txt").write_text("x")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(folder))])
    ev = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                    Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.image_opened, timeout=TIMEOUT):
        window.dropEvent(ev)
    assert window.images_dock.isVisible()
    assert [p.split("/")[-1] for p in window.images_dock.paths()] == ["a.png", "b.png"]
    assert window.source.path.endswith("a.png")
    with qtbot.waitSignal(window.image_opened, timeout=TIMEOUT):
        window.images_dock.chosen.emit(str(folder / "b.png"))
    assert window.source.path.endswith("b.png")
