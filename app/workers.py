"""Long work off the GUI thread: a QThreadPool runnable with finished/failed signals and cancel.

The engine calls cannot be interrupted mid-convolution, so cancel drops the result: the view never
applies the output of a cancelled job, and the window stays responsive throughout.
"""
from __future__ import annotations

import traceback
from typing import Any, Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal


class _Signals(QObject):
    finished = Signal(object)
    failed = Signal(str)
    progress = Signal(str)


class Job(QRunnable):
    """Runs `fn(progress)` in the global thread pool; `progress(text)` may be called from `fn`."""

    def __init__(self, fn: Callable[[Callable[[str], None]], Any]):
        super().__init__()
        self.fn = fn
        self.signals = _Signals()
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def run(self) -> None:
        try:
            result = self.fn(self.signals.progress.emit)
        except Exception as exc:  # any engine failure is shown to the user, never kills the GUI
            if not self.cancelled:
                msg = str(exc) or type(exc).__name__
                if not hasattr(exc, "args") or type(exc).__name__ not in ("BitlensError", "BitstreamError"):
                    traceback.print_exc()
                self.signals.failed.emit(msg)
            return
        if not self.cancelled:
            self.signals.finished.emit(result)


def start(job: Job) -> Job:
    QThreadPool.globalInstance().start(job)
    return job
