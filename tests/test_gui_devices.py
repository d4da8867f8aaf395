"""Devices dock: the backends table for the current bitstream (in-process configurations only, for
speed), the verdict, the mismatch heatmap, and reports from another machine."""
import json

import numpy as np

from codec.devices import compare_reports, load_report

from .guiconf import open_and_wait, TIMEOUT, _gui_env, encode_and_wait, make_window, settings_path, tiny_png, window  # noqa: F401


def run_devices(qtbot, w):
    with qtbot.waitSignal(w.devices.runner.finished, timeout=TIMEOUT):
        w.devices.run(subprocesses=False)
    return w.devices.model.report


def test_devices_table_verdict_and_mismatch_map(window, qtbot, tiny_png, codec):
    w = window
    open_and_wait(qtbot, w, tiny_png)
    rep = encode_and_wait(qtbot, w, "1.0")
    dock = w.devices
    assert dock.model.bitstream == rep.encoded.data
    report = run_devices(qtbot, w)
    assert dock.table.rowCount() == len(report.rows)
    for i, r in enumerate(report.rows):
        assert dock.table.item(i, 1).text() == r.config and dock.table.item(i, 2).text() == r.decoder
        assert dock.table.item(i, 3).text() == r.sha256[:16]
        assert dock.table.item(i, 4).text() == str(r.mismatches)
    ints = [r for r in report.rows if r.decoder == "integer"]
    assert len({r.sha256 for r in ints}) == 1
    from codec.devices import pixel_sha256
    assert ints[0].sha256 == pixel_sha256(codec.decode(rep.encoded.data).pixels)
    assert "bit-exact ✔" in dock.verdict.text()
    # a float row is selected at first; its heatmap is the codec's mismatch map
    row = dock.table.selectionModel().selectedRows()[0].row()
    assert report.rows[row].decoder == "float"
    assert np.array_equal(dock.mismatch, report.mismatch_map(row))
    # and it can be laid over the views
    w.heat_dock.set_choice("mismatch")
    assert np.array_equal(w.views.panels["ours"].overlay.image, dock.mismatch.astype(float))
    dock.select_row(0)
    assert dock.mismatch.max() == 0


def test_import_report_from_another_machine(window, qtbot, tiny_png, tmp_path, codec):
    w = window
    open_and_wait(qtbot, w, tiny_png)
    encode_and_wait(qtbot, w, "1.0")
    report = run_devices(qtbot, w)
    out = tmp_path / "mine.json"
    w.devices.export_report(str(out))
    other = json.loads(out.read_text())
    other["machine"]["cpu"] = "Other CPU"
    p = tmp_path / "other.json"
    p.write_text(json.dumps(other))
    w.devices.import_report(str(p))
    assert w.devices.table.rowCount() == 2 * len(report.rows)
    assert w.devices.table.item(len(report.rows), 0).text() == "Other CPU"
    assert w.devices.model.comparison_lines == compare_reports(report, [load_report(str(p))])
    assert "integer decoder identical" in w.devices.lines.toPlainText()


def test_devices_without_bitstream_and_cancel(window, qtbot, tiny_png, codec):
    w = window
    assert w.devices.run() is None and "encode" in w.devices.verdict.text()
    open_and_wait(qtbot, w, tiny_png)
    encode_and_wait(qtbot, w, "1.0")
    job = w.devices.run(subprocesses=False)
    w.devices.cancel()
    assert job.cancelled and w.devices.run_btn.isEnabled()
