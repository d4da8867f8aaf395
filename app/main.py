"""Start the Bitlens desktop application."""
from __future__ import annotations

import sys
from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[1] / "resources" / "samples" / "endeavour.png"


def run(image: str | None = None, bpp: float | None = None, screenshot: str | None = None) -> int:
    """Open the main window on `image` (the bundled sample by default); with `screenshot`, save the
    window once the first full comparison (ours and VVC) is shown, and exit."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from . import workers
    from .window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Bitlens")
    settings = None
    if screenshot:   # a scripted run: default layout, and the user's settings stay untouched
        import tempfile

        from PySide6.QtCore import QSettings
        tmp = tempfile.TemporaryDirectory(prefix="bitlens-settings-")
        settings = QSettings(str(Path(tmp.name) / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(settings)
    if screenshot:
        win.resize(1600, 900)
    elif not win.prefs.get("geometry"):
        win.resize(1400, 800)
    win.show()
    status = {"code": 0, "shot": False}

    if screenshot:
        def shoot(ok: bool) -> None:
            if status["shot"]:
                return
            status["shot"] = True
            win.views.fit()
            app.processEvents()
            if not win.grab().save(screenshot):
                sys.stderr.write(f"bitlens: error: {screenshot}: cannot write screenshot\n")
                status["code"] = 1
            elif not ok:
                status["code"] = 1
            win.close()
            app.quit()
        win.encode_done.connect(shoot)
        QTimer.singleShot(600_000, lambda: shoot(False))   # never hang a scripted run
    QTimer.singleShot(0, lambda: win.open_image(image or str(SAMPLE), bpp, encode=True))
    app.exec()
    workers.wait_all(120_000)   # let cancelled engine calls finish before the interpreter goes
    return status["code"]
