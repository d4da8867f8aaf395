"""GUI responsiveness while the engine works: event-loop latency and time to the first comparison.

Opens the main window offscreen on a Kodak image, and while the window works through a sequence of
phases, a QTimer fires every 10 ms and records the time between its ticks: with a free event loop the
gaps stay near 10 ms; a gap is a stall of the GUI thread (goal: none over 50 ms). Phases:

  idle        the window showing an image, nothing running (the baseline of this machine)
  open        open the image and encode it: from the call to the first full comparison (ours and VVC
              shown, `encode_done`); VVC comes from a fresh anchor cache unless --warm-cache
  pan+encode  re-encode at another rate while the view is panned every 30 ms (rendering load too)
  apply       re-encode at the first rate with a painted bit-allocation map
  rd          (with --rd) RD curves at a few rates, ours and VVC

--trace-stalls FILE writes every thread's stack at each stall (which call held the GUI thread up).

Prints a table: phase, seconds, ticks, max gap, 99th percentile gap, gaps over 50 ms.

    .venv/bin/python benchmarks/gui_latency.py [--image PATH] [--bpp 0.25] [--bpp2 0.5] [--rd] [--warm-cache]
                                               [--trace-stalls FILE]

Not run in CI. Numbers depend on what else the machine does: say so when reporting them.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_IMAGE = ROOT.parent / "shared" / "data" / "kodak" / "kodim23.png"
STALL_MS = 50.0


class GapRecorder:
    """A 10 ms QTimer; `gaps` are the intervals between its ticks, in ms. With `trace` (an open file),
    a faulthandler watchdog re-armed on every tick dumps every thread's stack whenever the GUI thread
    misses a tick by more than STALL_MS: what held it up."""

    def __init__(self, trace=None):
        from PySide6.QtCore import QTimer
        self.timer = QTimer(interval=10)
        self.timer.setTimerType(self.timer.timerType().PreciseTimer)
        self.timer.timeout.connect(self._tick)
        self.stamps: list[float] = []
        self.trace = trace

    def _tick(self):
        self.stamps.append(time.perf_counter())
        if self.trace is not None:
            import faulthandler
            faulthandler.dump_traceback_later(STALL_MS / 1000, file=self.trace)

    def start(self):
        self.stamps = [time.perf_counter()]
        self.timer.start()

    def stop(self) -> list[float]:
        self.timer.stop()
        if self.trace is not None:
            import faulthandler
            faulthandler.cancel_dump_traceback_later()
        self.stamps.append(time.perf_counter())
        s = self.stamps
        return [(b - a) * 1000 for a, b in zip(s, s[1:])]


def summarize(name: str, seconds: float, gaps: list[float]) -> dict:
    import numpy as np
    g = np.asarray(gaps) if gaps else np.zeros(1)
    return dict(phase=name, seconds=seconds, ticks=len(gaps), max_ms=float(g.max()),
                p99_ms=float(np.percentile(g, 99)), stalls=int((g > STALL_MS).sum()))


def wait(ms: float, signal=None) -> None:
    """Run the event loop for `ms` or until `signal`. A QEventLoop, not QTest.qWait: PySide6's
    qWait keeps the GIL while it waits, which starved the engine's worker thread (on the 2-core
    EPYC an encode took 41 s under a qWait(5) loop against 3.5 s in the app)."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(int(ms), loop.quit)
    if signal is not None:
        signal.connect(loop.quit)
    loop.exec()
    if signal is not None:
        signal.disconnect(loop.quit)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", default=str(DEFAULT_IMAGE))
    ap.add_argument("--bpp", type=float, default=0.25)
    ap.add_argument("--bpp2", type=float, default=0.5)
    ap.add_argument("--rd", action="store_true", help="also time an RD run (ours and VVC, 3 rates)")
    ap.add_argument("--warm-cache", action="store_true", help="use the user's anchor cache (VVC may be cached)")
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--trace-stalls", metavar="FILE", help="dump all thread stacks at each stall into FILE")
    args = ap.parse_args(argv)

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    tmp = tempfile.TemporaryDirectory(prefix="bitlens-latency-")
    if not args.warm_cache:
        os.environ["BITLENS_CACHE"] = os.path.join(tmp.name, "cache")
    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    from app import workers
    from app.window import MainWindow
    from codec.engine import LearnedCodec

    LearnedCodec.load()    # model loading is start-up, not encoding
    win = MainWindow(QSettings(os.path.join(tmp.name, "settings.ini"), QSettings.Format.IniFormat))
    win.resize(1400, 800)
    win.show()
    wait(200)
    rec = GapRecorder(open(args.trace_stalls, "w") if args.trace_stalls else None)
    rows = []
    outcome = {}

    def until_done(signal, what: str) -> float:
        outcome.clear()
        t0 = time.perf_counter()

        def got(ok=True):
            outcome.setdefault("ok", ok)
            outcome.setdefault("t", time.perf_counter())
        signal.connect(got)
        wait(args.timeout * 1000, signal)
        signal.disconnect(got)
        if "ok" not in outcome:
            raise SystemExit(f"gui_latency: {what} did not finish in {args.timeout:.0f} s")
        if outcome["ok"] is False:
            raise SystemExit(f"gui_latency: {what} failed: {win.info.text()}")
        return outcome["t"]

    # idle baseline (an image is shown so paints are real)
    rec.start()
    t0 = time.perf_counter()
    wait(2000)
    rows.append(summarize("idle", time.perf_counter() - t0, rec.stop()))

    # open -> first full comparison
    rec.start()
    t0 = time.perf_counter()
    win.open_image(args.image, args.bpp, encode=True)
    t1 = until_done(win.encode_done, "open and encode")
    rows.append(summarize(f"open -> ours+VVC @ {args.bpp:g}", t1 - t0, rec.stop()))
    first = dict(seconds=t1 - t0, report=win.report, vvc_cached=getattr(win.anchor, "cached", None))

    # re-encode at another rate while panning
    box = win.views.panels["original"].box
    pan = QTimer(interval=30)
    step = {"i": 0}

    def do_pan():
        step["i"] += 1
        box.translateBy(x=(1 if step["i"] % 40 < 20 else -1) * 4, y=0)
    pan.timeout.connect(do_pan)
    win.bpp_box.setCurrentText(f"{args.bpp2:g}")
    rec.start()
    pan.start()
    t0 = time.perf_counter()
    win.encode()
    t1 = until_done(win.encode_done, "re-encode")
    pan.stop()
    rows.append(summarize(f"pan + encode @ {args.bpp2:g}", t1 - t0, rec.stop()))

    # apply a painted map at the first rate
    win.bpp_box.setCurrentText(f"{args.bpp:g}")
    win.encode()
    until_done(win.encode_done, "encode before apply")
    m = win.bitalloc.model
    m.radius, m.strength, m.mode = 60, 3, "more"
    h, w = win.source.height, win.source.width
    win.bitalloc.paint(w * 0.3, h * 0.5, True, False)
    win.bitalloc.paint(w * 0.7, h * 0.5, False, True)
    rec.start()
    t0 = time.perf_counter()
    win.apply_map()
    t1 = until_done(win.encode_done, "apply")
    rows.append(summarize(f"apply map @ {args.bpp:g}", t1 - t0, rec.stop()))

    if args.rd:
        rec.start()
        t0 = time.perf_counter()
        win.rd_dock.run((0.12, 0.25, 0.5), ("vvc",))
        t1 = until_done(win.rd_dock.finished, "RD")
        rows.append(summarize("RD (ours+VVC, 3 rates)", t1 - t0, rec.stop()))

    win.close()
    workers.wait_all(120_000)

    rep = first["report"]
    print(f"image {args.image} ({win.source.width}x{win.source.height}); QT_QPA_PLATFORM="
          f"{os.environ.get('QT_QPA_PLATFORM')}; {os.cpu_count()} cores; load average "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"open -> first full comparison: {first['seconds']:.2f} s (ours {rep.bpp:.4f} bpp in "
          f"{rep.encode_seconds:.2f} s + decode {rep.decoded.seconds:.2f} s; VVC "
          f"{'from cache' if first['vvc_cached'] else 'encoded'})")
    print()
    hdr = f"{'phase':28} {'seconds':>8} {'ticks':>6} {'max gap ms':>11} {'p99 gap ms':>11} {'gaps>50ms':>10}"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(f"{r['phase']:28} {r['seconds']:8.2f} {r['ticks']:6d} {r['max_ms']:11.1f} {r['p99_ms']:11.1f} "
              f"{r['stalls']:10d}")
    worst = max(r["max_ms"] for r in rows)
    print()
    print(f"goal: no event-loop stall over {STALL_MS:.0f} ms -> {'met' if worst <= STALL_MS else 'NOT met'} "
          f"(worst gap {worst:.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
