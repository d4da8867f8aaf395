"""A result arriving from the engine is shown in one paint per view: while the worker keeps the CPU
busy every paint is slow, and chains of paints (a relayout or a view-range change discovered during
a paint schedules another) held the GUI thread up by 60-117 ms on a 2-core CPU
(`benchmarks/gui_latency.py`)."""
import numpy as np
import pytest

from .guiconf import _gui_env  # noqa: F401


@pytest.fixture
def paints(monkeypatch):
    """Counts paint events of pyqtgraph views, per view."""
    from pyqtgraph.widgets.GraphicsView import GraphicsView

    counts: dict[int, int] = {}
    original = GraphicsView.paintEvent

    def counted(self, event):
        counts[id(self)] = counts.get(id(self), 0) + 1
        return original(self, event)
    monkeypatch.setattr(GraphicsView, "paintEvent", counted)
    return counts


def settle(qtbot) -> None:
    qtbot.wait(150)


def test_new_trace_is_one_paint_and_plotted(qtbot, paints):
    from app.docks.ratematch import RateMatchDock

    dock = RateMatchDock()
    qtbot.addWidget(dock)
    dock.resize(430, 600)
    dock.show()
    settle(qtbot)
    traces = [([(30000, 0.3012), (32000, 0.2611), (32395, 0.2485)], 0.25),
              ([(40000, 0.5903), (41000, 0.4961)], 0.5),
              ([(12000, 0.0731), (9000, 0.0598)], 0.06)]
    for trace, target in traces:
        paints.clear()
        dock.show_trace(trace, target)
        settle(qtbot)
        assert paints == {id(dock.plot): 1}
        x, y = dock.trials.getData()
        assert list(x) == list(range(1, len(trace) + 1)) and list(y) == [b for _, b in trace]
        assert dock.plot.getAxis("bottom")._tickLevels == [[(i, str(i)) for i in x]]   # whole trials
        assert dock.target_line.value() == target and dock.target_line.isVisible()
        assert dock.floor_line.value() == pytest.approx(target * 0.99)
        (x0, x1), (y0, y1) = dock.plot.getViewBox().viewRange()
        assert x0 < 1 and x1 > len(trace) and y0 < min(target * 0.99, *(b for _, b in trace))
        assert y1 > max(target, *(b for _, b in trace))
    dock.show_trace([], None)
    assert len(dock.trials.getData()[0] or []) == 0 and not dock.target_line.isVisible()


def test_new_image_and_title_is_one_paint(qtbot, paints):
    from app.views import ComparisonViews

    views = ComparisonViews()
    qtbot.addWidget(views)
    views.resize(1000, 500)
    views.show()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    views.set_image("original", image, "Original")
    settle(qtbot)
    for name, title in [("ours", "Ours: 0.2485 bpp, 37.23 dB"), ("anchor", "VVC: 0.2490 bpp, 38.10 dB (QP 37)"),
                        ("ours", "Ours: 0.4990 bpp, 40.12 dB, a longer title than before")]:
        paints.clear()
        views.set_image(name, image.copy(), title)
        settle(qtbot)
        assert paints == {id(views): 1}
        assert views.panels[name].label.text == title
