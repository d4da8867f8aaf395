"""Shared pytest-qt fixtures for the GUI tests (imported by tests/test_gui*.py).

Every window gets its own temporary QSettings file (never the user's settings); the anchor cache is one
temporary folder for the whole run, so VVC on the same tiny crop is encoded once; after each test the
worker pool is drained so no job of one test runs into the next.
"""
import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("pytestqt")

from PIL import Image  # noqa: E402
from PySide6.QtCore import QSettings  # noqa: E402

from .conftest import sample_crop  # noqa: E402

TIMEOUT = 120_000


@pytest.fixture(autouse=True)
def _gui_env(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("BITLENS_CACHE", str(tmp_path_factory.getbasetemp() / "gui-anchor-cache"))
    monkeypatch.setenv("BITLENS_SETTINGS", str(tmp_path_factory.getbasetemp() / "gui-default-settings.ini"))
    yield
    from app import workers
    workers.wait_all(TIMEOUT)


@pytest.fixture
def settings_path(tmp_path):
    return tmp_path / "settings.ini"


@pytest.fixture
def make_window(qtbot, settings_path):
    """make_window() -> a shown MainWindow on the test's own settings file."""
    from app.window import MainWindow

    def make(path=None):
        w = MainWindow(QSettings(str(path or settings_path), QSettings.Format.IniFormat))
        qtbot.addWidget(w)
        w.resize(1200, 700)
        w.show()
        return w
    return make


@pytest.fixture
def window(make_window):
    return make_window()


@pytest.fixture
def tiny_png(tmp_path):
    p = tmp_path / "tiny.png"
    Image.fromarray(sample_crop(64, 96)).save(p)
    return p


def encode_and_wait(qtbot, window, bpp="1.0", timeout=TIMEOUT):
    window.bpp_box.setCurrentText(bpp)
    with qtbot.waitSignal(window.encode_done, timeout=timeout) as sig:
        window.encode()
    assert sig.args == [True], window.info.text()
    return window.report


def wait_job(qtbot, runner, timeout=TIMEOUT):
    """Wait until a JobRunner is idle; raise if it failed."""
    qtbot.waitUntil(lambda: not runner.is_busy, timeout=timeout)


def open_and_wait(qtbot, window, path, timeout=TIMEOUT):
    """open_image loads in a worker: wait until the image is shown (or the load failed)."""
    with qtbot.waitSignal(window.image_opened, timeout=timeout) as sig:
        window.open_image(str(path))
    return sig.args[0]
