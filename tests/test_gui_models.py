"""The toolbar's model and loop-filter choices: ours is encoded with them, the RD curves follow them,
and a bitstream or session shows the ones it was made with."""
from codec.entropy.bitstream import Bitstream
from codec.model.zoo import DEFAULT_MODEL_ID

from .guiconf import open_and_wait, TIMEOUT, _gui_env, encode_and_wait, make_window, settings_path, tiny_png, window  # noqa: F401


def test_choosing_a_model_encodes_again_with_it(window, qtbot, tiny_png, codec):
    w = window
    open_and_wait(qtbot, w, tiny_png)
    assert w.model_id() == DEFAULT_MODEL_ID
    first = encode_and_wait(qtbot, w, "1.0")
    assert Bitstream.unpack(first.encoded.data).model_id == DEFAULT_MODEL_ID
    with qtbot.waitSignal(w.encode_done, timeout=TIMEOUT) as sig:
        w.model_box.setCurrentIndex(w.model_box.findData(6))    # encodes again at the same target
    assert sig.args == [True]
    assert Bitstream.unpack(w.report.encoded.data).model_id == 6 and w.report.bpp <= 1.0
    assert w.rd_dock.model_id == 6 and w.session_settings()["model"] == 6


def test_stale_rd_curves_are_dropped_when_the_model_changes(window, qtbot, tiny_png, codec):
    w = window
    open_and_wait(qtbot, w, tiny_png)
    w.rd_dock.model.result = object()            # a result of the previous model
    w.set_model(4)
    assert w.rd_dock.model.result is None and "model 4" in w.rd_dock.status.text()
    assert w.model_id() == 4 and w.report is None  # set_model alone does not encode


def test_a_bitstream_shows_its_model(window, qtbot, tiny_png, tmp_path, codec):
    from codec.engine import LearnedCodec
    from codec.images import load_image
    c4 = LearnedCodec.load(4)
    data = c4.encode(c4.analyze(load_image(str(tiny_png))), 30000).data
    path = tmp_path / "v4.bln"
    path.write_bytes(data)
    open_and_wait(qtbot, window, tiny_png)
    with qtbot.waitSignal(window.encode_done, timeout=TIMEOUT) as sig:
        window.open_bitstream(str(path))
    assert sig.args == [True]
    assert window.model_id() == 4 and window.report.encoded.data == data


def test_switching_the_loop_filter_off_encodes_again_without_it(window, qtbot, tiny_png, codec, tmp_path):
    w = window
    open_and_wait(qtbot, w, tiny_png)
    assert w.loop_filter()
    first = encode_and_wait(qtbot, w, "1.0")
    assert Bitstream.unpack(first.encoded.data).filter_data is not None
    w.rd_dock.model.result = object()            # curves measured with the filter
    with qtbot.waitSignal(w.encode_done, timeout=TIMEOUT) as sig:
        w.filter_box.setChecked(False)              # encodes again at the same target
    assert sig.args == [True]
    assert Bitstream.unpack(w.report.encoded.data).filter_data is None and w.report.bpp <= 1.0
    assert w.report.analysis.y is not first.analysis.y   # analysed again, with the other choice
    assert codec.loop_filter                        # the shared codec's default is untouched
    assert w.rd_dock.model.result is None and "loop filter off" in w.rd_dock.status.text()
    assert not w.rd_dock.loop_filter and w.session_settings()["loop_filter"] is False
    # a bitstream with the filter shows it on again, without encoding
    path = tmp_path / "f.bln"
    path.write_bytes(first.encoded.data)
    with qtbot.waitSignal(w.encode_done, timeout=TIMEOUT):
        w.open_bitstream(str(path))
    assert w.loop_filter() and w.rd_dock.loop_filter
