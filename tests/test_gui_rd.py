"""RD dock: curves of ours and the anchors on the current image (few rates, tiny image), BD-rate as
`codec.rd` computes it, clicking a point shows it in the views, cancel drops the run."""
import math

import numpy as np
import pytest

from app.docks.rd import bd_text
from codec.anchors import match_anchor
from codec.pipeline import encode_image
from codec.rd import bd_rates

from .guiconf import open_and_wait, TIMEOUT, _gui_env, make_window, settings_path, tiny_png, wait_job, window  # noqa: F401

RATES = (0.75, 1.0, 1.5)


def test_rd_curves_points_and_bd_rate(window, qtbot, tiny_png, codec):
    w = window
    open_and_wait(qtbot, w, tiny_png)
    dock = w.rd_dock
    with qtbot.waitSignal(dock.finished, timeout=TIMEOUT):
        dock.run(RATES, ("vvc", "jpeg"))
    res = dock.model.result
    assert res.codecs == ("ours", "vvc", "jpeg") and res.targets == RATES
    for p in res.points["ours"]:
        rep = encode_image(codec, w.source, target_bpp=p.target_bpp)
        assert p.ok and p.bpp == rep.bpp and p.psnr_y == pytest.approx(rep.psnr_y)
    for p in res.points["vvc"]:
        a = match_anchor("vvc", w.source, p.target_bpp)
        assert p.ok and p.bpp == a.bpp and p.psnr_y == pytest.approx(a.psnr_y)
    # plotted: one curve per codec with points, x = bpp
    xs = {item.name(): sorted(item.getData()[0]) for item in dock._items}
    assert xs["ours"] == pytest.approx(sorted(p.bpp for p in res.points["ours"]))
    # BD-rate table equals codec.rd's numbers (n/a with the reason when they cannot be computed)
    values, notes = bd_rates(res)
    rows = {dock.table.item(r, 0).text(): (dock.table.item(r, 1).text(), dock.table.item(r, 2).text())
            for r in range(dock.table.rowCount())}
    assert set(rows) == {"ours", "jpeg"}
    for c in ("ours", "jpeg"):
        assert rows[c] == (bd_text(values[c]), notes.get(c, ""))
    assert dock.progress.value() == 1000 and dock.run_btn.isEnabled()


def test_clicking_an_rd_point_shows_it(window, qtbot, tiny_png, codec):
    w = window
    open_and_wait(qtbot, w, tiny_png)
    dock = w.rd_dock
    with qtbot.waitSignal(dock.finished, timeout=TIMEOUT):
        dock.run((0.75, 1.5), ("vvc",))
    res = dock.model.result
    ours, vvc = res.points["ours"][1], res.points["vvc"][1]
    with qtbot.waitSignal(w.encode_done, timeout=TIMEOUT):
        dock.choose_point("vvc", 1)
    assert np.array_equal(w.views.shown("ours"), ours.result.decoded.pixels)
    assert np.array_equal(w.views.shown("anchor"), vvc.result.rgb8)
    assert w.report is ours.result and w.bpp_box.currentText() == "1.5"
    assert f"{vvc.psnr_y:.2f} dB" in w.views.panels["anchor"].label.text


def test_cancel_rd(window, qtbot, tiny_png, codec):
    w = window
    open_and_wait(qtbot, w, tiny_png)
    dock = w.rd_dock
    job = dock.run((0.5, 0.75, 1.0, 1.5), ("vvc",))
    assert dock.cancel_btn.isEnabled()
    dock.cancel_btn.click()
    assert job.cancelled and not dock.runner.is_busy and dock.run_btn.isEnabled()
    from app import workers
    workers.wait_all(TIMEOUT)
    qtbot.wait(100)
    assert dock.model.result is None and "cancelled" in dock.status.text()


def test_unreachable_points_are_reported_not_raised(window, qtbot, tiny_png, codec):
    w = window
    open_and_wait(qtbot, w, tiny_png)
    dock = w.rd_dock
    with qtbot.waitSignal(dock.finished, timeout=TIMEOUT):
        dock.run((0.06,), ("jpeg",))        # neither codec gets this low on a 96x64 crop
    res = dock.model.result
    assert all(not p.ok and p.error for c in res.codecs for p in res.points[c])
    assert "not reached" in dock.status.text()
    assert math.isnan(res.points["ours"][0].psnr_y)
