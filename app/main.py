"""Start the Bitlens desktop application."""
from __future__ import annotations

import sys
from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[1] / "resources" / "samples" / "endeavour.png"


def run(image: str | None = None, bpp: float | None = None, screenshot: str | None = None) -> int:
    """Open the main window on `image` (the bundled sample by default); with `screenshot`, save the
    window after the first encode and exit."""
    import pyqtgraph as pg
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from .window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)
    win = MainWindow()
    win.resize(1400, 800)
    win.show()
    status = {"code": 0}

    if screenshot:
        def shoot(ok: bool) -> None:
            app.processEvents()
            if not win.grab().save(screenshot):
                sys.stderr.write(f"bitlens: error: {screenshot}: cannot write screenshot\n")
                status["code"] = 1
            elif not ok:
                status["code"] = 1
            app.quit()
        win.encode_done.connect(shoot)
        QTimer.singleShot(600_000, lambda: shoot(False))   # never hang a scripted run
    QTimer.singleShot(0, lambda: win.open_image(image or str(SAMPLE), bpp, encode=True))
    app.exec()
    return status["code"]
