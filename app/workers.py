"""Long work off the GUI thread.

`Job` runs `fn(job)` in a thread pool. Inside `fn`, the job is the context: `job("text", 0.4)` reports
progress (text and an optional fraction 0..1), `job.partial(obj)` hands an intermediate result to the
GUI (e.g. ours before VVC is ready), `job.check()` raises `Cancelled` once the job was cancelled and
`job.should_stop` is a callable for engine loops that poll.

The engine calls cannot be interrupted mid-convolution, so cancel drops the result: the GUI never applies
the output of a cancelled job, and the window stays responsive throughout.

`JobRunner` is one slot of work (the main encode, the RD run, the devices run): starting a job cancels
the previous one, and only the current job's signals reach the GUI, so a late result of a cancelled or
superseded job can never overwrite a newer one.
"""
from __future__ import annotations

import traceback
from typing import Any, Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, QTimer, Signal, Slot


class Cancelled(Exception):
    """Raised by `Job.check()` in a cancelled job."""


class _Signals(QObject):
    finished = Signal(object)
    failed = Signal(str)
    progress = Signal(str)
    fraction = Signal(float)     # 0..1; negative: unknown
    partial = Signal(object)
    done = Signal(object)        # the job, always last (success, failure or cancel)


class Job(QRunnable):
    """Runs `fn(job)` in the pool; `job(text, fraction)` may be called from `fn` to report progress."""

    def __init__(self, fn: Callable[["Job"], Any], name: str = ""):
        super().__init__()
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "job")
        self.signals = _Signals()
        self.cancelled = False
        self.setAutoDelete(False)   # Python owns the job; the registry drops it on the GUI thread

    # ---- used by fn, in the worker thread ----------------------------------------------------
    def __call__(self, text: str, fraction: float | None = None) -> None:
        if not self.cancelled:
            self.signals.progress.emit(text)
            if fraction is not None:
                self.signals.fraction.emit(float(fraction))

    def partial(self, obj: Any) -> None:
        if not self.cancelled:
            self.signals.partial.emit(obj)

    def check(self) -> None:
        if self.cancelled:
            raise Cancelled

    def should_stop(self) -> bool:
        return self.cancelled

    # ---- GUI side ----------------------------------------------------------------------------
    def cancel(self) -> None:
        self.cancelled = True

    def run(self) -> None:
        _lower_priority()
        try:
            result = self.fn(self)
        except Cancelled:
            pass
        except Exception as exc:  # any engine failure is shown to the user, never kills the GUI
            if not self.cancelled:
                msg = str(exc) or type(exc).__name__
                if type(exc).__name__ not in ("BitlensError", "BitstreamError"):
                    traceback.print_exc()
                self.signals.failed.emit(msg)
        else:
            if not self.cancelled:
                self.signals.finished.emit(result)
        finally:
            self.signals.done.emit(self)


WORKER_NICE = 5


def _lower_priority() -> None:
    """Run worker threads a little below the GUI thread (Linux: per-thread nice), so that on a busy
    machine the event loop gets the CPU first. Best effort; silently skipped where unsupported."""
    try:
        import os
        import threading
        tid = threading.get_native_id()
        if os.getpriority(os.PRIO_PROCESS, tid) < WORKER_NICE:
            os.setpriority(os.PRIO_PROCESS, tid, WORKER_NICE)
    except (AttributeError, OSError):
        pass


class _Registry(QObject):
    """Keeps every started job alive until its `done` signal reaches the GUI thread."""

    def __init__(self):
        super().__init__()
        self.jobs: set[Job] = set()

    @Slot(object)
    def release(self, job: Job) -> None:
        # `done` is emitted from inside run(): let the worker thread leave run() before the last
        # reference (and with it the C++ runnable) goes away on this thread
        QTimer.singleShot(500, lambda: self.jobs.discard(job))


_pool: QThreadPool | None = None
_registry: _Registry | None = None


def pool() -> QThreadPool:
    global _pool, _registry
    if _pool is None:
        _pool = QThreadPool()
        _pool.setMaxThreadCount(4)   # main encode, RD, devices, and one cancelled job finishing
        _registry = _Registry()
    return _pool


def start(job: Job) -> Job:
    pool()
    _registry.jobs.add(job)
    job.signals.done.connect(_registry.release)
    _pool.start(job)
    return job


def running() -> int:
    """Jobs started and not yet finished (cancelled ones included)."""
    return 0 if _registry is None else len(_registry.jobs)


def wait_all(msecs: int = 30000) -> bool:
    """Wait for every job in the pool (tests and shutdown); True when all finished."""
    return True if _pool is None else _pool.waitForDone(msecs)


class JobRunner(QObject):
    """One slot of work: at most one current job; stale signals are dropped."""

    finished = Signal(object)
    failed = Signal(str)
    progress = Signal(str)
    fraction = Signal(float)
    partial = Signal(object)
    busy = Signal(bool)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.job: Job | None = None

    def start(self, fn: Callable[[Job], Any], name: str = "") -> Job:
        self.cancel()
        job = Job(fn, name)
        s = job.signals
        s.finished.connect(self._finished)
        s.failed.connect(self._failed)
        s.progress.connect(self._progress)
        s.fraction.connect(self._fraction)
        s.partial.connect(self._partial)
        self.job = job
        self.busy.emit(True)
        return start(job)

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.job = None
            self.busy.emit(False)

    @property
    def is_busy(self) -> bool:
        return self.job is not None

    def _current(self) -> bool:
        return self.job is not None and self.sender() is self.job.signals

    @Slot(object)
    def _finished(self, result) -> None:
        if self._current():
            self.job = None
            self.busy.emit(False)
            self.finished.emit(result)

    @Slot(str)
    def _failed(self, message: str) -> None:
        if self._current():
            self.job = None
            self.busy.emit(False)
            self.failed.emit(message)

    @Slot(str)
    def _progress(self, text: str) -> None:
        if self._current():
            self.progress.emit(text)

    @Slot(float)
    def _fraction(self, value: float) -> None:
        if self._current():
            self.fraction.emit(value)

    @Slot(object)
    def _partial(self, obj) -> None:
        if self._current():
            self.partial.emit(obj)
