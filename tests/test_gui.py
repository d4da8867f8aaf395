import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("pytestqt")

from app.window import MainWindow  # noqa: E402


@pytest.fixture
def window(qtbot):
    w = MainWindow()
    qtbot.addWidget(w)
    w.show()
    return w


def test_open_and_encode_shows_result(window, qtbot, small_png, codec):
    window.open_image(str(small_png))
    window.bpp_box.setCurrentText("1.0")
    with qtbot.waitSignal(window.encode_done, timeout=60000) as sig:
        window.encode()
    assert sig.args == [True]
    assert window.report is not None and window.report.bpp <= 1.0
    assert "PSNR-Y" in window.info.text()
    assert window.encode_act.isEnabled()


def test_failed_encode_keeps_session(window, qtbot, small_png, codec):
    window.open_image(str(small_png))
    window.bpp_box.setCurrentText("0.0001")     # below what the model reaches
    with qtbot.waitSignal(window.encode_done, timeout=60000) as sig:
        window.encode()
    assert sig.args == [False]
    assert "error" in window.info.text() and window.source is not None


def test_cancel_drops_the_result(window, qtbot, small_png, codec):
    window.open_image(str(small_png))
    window.encode()
    job = window.job
    window.cancel()
    assert job.cancelled and window.job is None and window.encode_act.isEnabled()
    qtbot.wait(200)
    assert window.report is None


def test_bad_image_shows_error(window, tmp_path):
    p = tmp_path / "x.png"
    p.write_text("nope")
    window.open_image(str(p))
    assert "error" in window.info.text()
