"""Anchors: VVC through ffmpeg/VVenC checked against a hand-built ffmpeg run, rate matching on QP, the
disk cache, clear errors when ffmpeg or an encoder is missing, odd and tiny sizes."""
import json
import math
import os
import stat
import subprocess
import threading

import numpy as np
import pytest
from PIL import Image

from codec.anchors import ANCHORS, available_anchors, cache, encode_anchor, ffmpeg, match_anchor
from codec.anchors.planes import source_planes
from codec.cli import main
from codec.errors import BitlensError
from codec.images import source_from_array

from .conftest import sample_crop

AVAILABLE = available_anchors()
needs = {name: pytest.mark.skipif(AVAILABLE[name] is not None, reason=str(AVAILABLE[name])) for name in ANCHORS}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Every test in this file shares one cache folder of its own (never the user's)."""
    monkeypatch.setenv("BITLENS_CACHE", str(tmp_path_factory.getbasetemp() / "anchor-cache"))


@pytest.fixture
def crop():
    return sample_crop(64, 96)


def _by_hand_planes(rgb8: np.ndarray) -> bytes:
    """BT.709 full-range 10-bit 4:2:0, written out independently of codec.color / codec.anchors."""
    rgb = rgb8.astype(np.float64) / 255.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    cb = (b - y) / (2 * (1 - 0.0722)) + 0.5
    cr = (r - y) / (2 * (1 - 0.2126)) + 0.5
    h, w = y.shape

    def q10(p):
        return np.clip(np.round(p * 1023), 0, 1023).astype("<u2")

    def avg(p):
        return p.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    return q10(y).tobytes() + q10(avg(cb)).tobytes() + q10(avg(cr)).tobytes()


@needs["vvc"]
def test_cli_vvc_qp32_equals_ffmpeg_vvenc_by_hand(tmp_path, crop, capsys):
    h, w = crop.shape[:2]
    png, out, stream = tmp_path / "in.png", tmp_path / "out.png", tmp_path / "out.266"
    Image.fromarray(crop).save(png)
    assert main(["anchor", "vvc", str(png), "--qp", "32", "-o", str(out), "--stream", str(stream), "--json",
                 "--no-cache"]) == 0
    rep = json.loads(capsys.readouterr().out)

    # the same encode, by hand: our planes as one rawvideo frame, VVenC medium, QP 32, QPA off, all intra
    raw = _by_hand_planes(crop)
    assert raw == source_planes(source_from_array(crop)).tobytes()
    (tmp_path / "in.yuv").write_bytes(raw)
    colour = ["-color_range", "pc", "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709"]
    exe = ffmpeg.ffmpeg_exe()
    subprocess.run([exe, "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "yuv420p10le",
                    "-s", f"{w}x{h}", "-r", "1", *colour, "-i", str(tmp_path / "in.yuv"), "-frames:v", "1",
                    "-c:v", "libvvenc", "-preset", "medium", "-qp", "32", "-qpa", "0", "-g", "1", *colour,
                    "-f", "vvc", "-y", str(tmp_path / "hand.266")], check=True, capture_output=True)
    hand = (tmp_path / "hand.266").read_bytes()
    assert rep["bytes"] == len(hand) == stream.stat().st_size
    assert stream.read_bytes() == hand
    assert rep["bpp"] == pytest.approx(len(hand) * 8 / (w * h))
    assert rep["qp"] == 32 and rep["preset"] == "medium"

    subprocess.run([exe, "-hide_banner", "-loglevel", "error", "-i", str(tmp_path / "hand.266"), "-f", "rawvideo",
                    "-pix_fmt", "yuv420p10le", "-y", str(tmp_path / "dec.yuv")], check=True, capture_output=True)
    dec_y = np.frombuffer((tmp_path / "dec.yuv").read_bytes(), "<u2")[:h * w].reshape(h, w).astype(np.float64)
    src_y = np.frombuffer(raw, "<u2")[:h * w].reshape(h, w).astype(np.float64)
    mse = np.mean((dec_y - src_y) ** 2)
    assert rep["psnr_y"] == pytest.approx(10 * math.log10(1023 ** 2 / mse), abs=1e-9)
    assert 30 < rep["psnr_y"] < 50
    assert Image.open(out).size == (w, h)


@needs["vvc"]
def test_rate_matching_lands_closest_not_above(crop):
    src = source_from_array(crop)
    target = 0.5
    r = match_anchor("vvc", src, target)
    assert r.bpp <= target and r.target_bpp == target and r.trace
    assert r.bpp == pytest.approx(r.nbytes * 8 / (96 * 64))
    nxt = encode_anchor("vvc", src, r.qp - 1)        # one QP finer is already above the target
    assert nxt.bpp > target
    c = match_anchor("vvc", src, target, closest=True)
    assert c.qp in (r.qp, r.qp - 1)
    assert abs(c.bpp - target) == min(abs(r.bpp - target), abs(nxt.bpp - target))
    with pytest.raises(BitlensError, match="cannot reach 0.001 bpp"):
        match_anchor("vvc", src, 0.001)


def test_jpeg_rate_matching_and_quality_direction(crop):
    src = source_from_array(crop)
    r = match_anchor("jpeg", src, 1.2)
    assert r.bpp <= 1.2 and encode_anchor("jpeg", src, r.qp + 1).bpp > 1.2
    assert encode_anchor("jpeg", src, 90).bpp > encode_anchor("jpeg", src, 30).bpp


@needs["vvc"]
def test_cache_answers_without_encoding(tmp_path, monkeypatch, crop):
    monkeypatch.setenv("BITLENS_CACHE", str(tmp_path / "c"))
    src = source_from_array(crop)
    first = encode_anchor("vvc", src, 40)
    m1 = match_anchor("vvc", src, 0.4)
    assert not first.cached
    assert list((tmp_path / "c").rglob("*.json")) and list((tmp_path / "c").rglob("*.npz"))

    def boom(*a, **k):
        raise AssertionError("encoded again")
    monkeypatch.setattr(type(ANCHORS["vvc"]), "encode", boom)
    again = encode_anchor("vvc", src, 40)
    assert again.cached and again.data == first.data and again.psnr_y == first.psnr_y
    assert (again.y10 == first.y10).all() and (again.rgb8 == first.rgb8).all()
    m2 = match_anchor("vvc", src, 0.4)
    assert (m2.qp, m2.data) == (m1.qp, m1.data)
    # another preset is another entry: it must encode
    with pytest.raises(AssertionError, match="encoded again"):
        encode_anchor("vvc", src, 40, preset="faster")


def test_cache_concurrent_writers_leave_one_whole_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("BITLENS_CACHE", str(tmp_path))
    data = os.urandom(50_000)
    arrays = dict(y10=np.arange(5000, dtype=np.uint16).reshape(50, 100))

    def writer():
        for _ in range(20):
            assert cache.put("ab" * 32, dict(bytes=len(data)), data, arrays)
    threads = [threading.Thread(target=writer) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    meta, got, arr = cache.get("ab" * 32)
    assert got == data and (arr["y10"] == arrays["y10"]).all() and meta["bytes"] == len(data)
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def _fake_ffmpeg(tmp_path, encoders="libx264", action="exit 0"):
    p = tmp_path / "ffmpeg"
    p.write_text("#!/bin/sh\n"
                 'case "$*" in\n'
                 f'  *-encoders*) echo "Encoders:"; echo " V..... = Video"; echo " ------"; '
                 + "".join(f'echo " V....D {e}  fake encoder"; ' for e in encoders.split()) + ";;\n"
                 '  *-version*) echo "ffmpeg version fake";;\n'
                 f"  *) {action};;\n"
                 "esac\n")
    p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return p


def test_missing_ffmpeg_is_a_clear_error(tmp_path, monkeypatch, crop, capsys):
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(tmp_path / "no-such-ffmpeg"))
    with pytest.raises(BitlensError, match="ffmpeg is not available"):
        encode_anchor("vvc", source_from_array(crop), 32)
    png = tmp_path / "in.png"
    Image.fromarray(crop).save(png)
    assert main(["anchor", "hevc", str(png), "--qp", "30", "-o", str(tmp_path / "o.png")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("bitlens: error: ffmpeg is not available") and err.count("\n") == 1
    assert available_anchors()["vvc"] is not None
    # Pillow codecs do not need ffmpeg
    assert encode_anchor("jpeg", source_from_array(crop), 50).nbytes > 0


def test_missing_encoder_is_a_clear_error(tmp_path, monkeypatch, crop):
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(_fake_ffmpeg(tmp_path, "libx264 libx265")))
    with pytest.raises(BitlensError, match="needs ffmpeg's libvvenc encoder"):
        encode_anchor("vvc", source_from_array(crop), 32, cache=False)
    with pytest.raises(BitlensError, match="libaom-av1"):
        match_anchor("av1", source_from_array(crop), 0.5, cache=False)


def test_encoder_failure_and_timeout_are_clear_errors(tmp_path, monkeypatch, crop):
    src = source_from_array(crop)
    fail = _fake_ffmpeg(tmp_path, "libvvenc", 'echo "[libvvenc] Error: something broke" >&2; exit 3')
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(fail))
    with pytest.raises(BitlensError, match=r"vvc encode \(libvvenc\) failed .*something broke"):
        encode_anchor("vvc", src, 32, cache=False)
    (tmp_path / "slow").mkdir()
    slow = _fake_ffmpeg(tmp_path / "slow", "libvvenc", "exec sleep 5")
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(slow))
    monkeypatch.setattr(ffmpeg, "DEFAULT_TIMEOUT", 0.5)
    with pytest.raises(BitlensError, match="timed out after 0.5 s"):
        encode_anchor("vvc", src, 32, cache=False)


@pytest.mark.parametrize("name", list(ANCHORS))
def test_odd_sizes_come_back_at_their_size(name):
    if AVAILABLE[name] is not None:
        pytest.skip(AVAILABLE[name])
    rgb = sample_crop(33, 47)
    r = encode_anchor(name, source_from_array(rgb))
    assert r.y10.shape == (33, 47) and r.rgb8.shape == (33, 47, 3)
    assert r.bpp == pytest.approx(r.nbytes * 8 / (33 * 47))
    assert 25 < r.psnr_y < 60
    rgb_psnr = 10 * math.log10(255 ** 2 / np.mean((r.rgb8.astype(float) - rgb) ** 2))
    assert rgb_psnr > 22   # colour survives the 4:2:0 round trip


@needs["vvc"]
def test_tiny_and_grayscale_images(crop):
    tiny = encode_anchor("vvc", source_from_array(sample_crop(5, 7)), 30)   # padded to 32x32 inside
    assert tiny.y10.shape == (5, 7) and "padded" in tiny.note
    grey = source_from_array(crop[..., 1])
    r = encode_anchor("vvc", grey, 32)
    assert r.rgb8.shape == (64, 96) and r.psnr_y > 30


def test_cli_anchor_usage_and_input_errors(tmp_path, small_png, capsys):
    out = str(tmp_path / "o.png")
    assert main(["anchor", "vvc", str(small_png), "-o", out]) == 2
    assert main(["anchor", "nope", str(small_png), "--qp", "3", "-o", out]) == 2
    assert main(["anchor", "vvc", str(small_png), "--qp", "99", "-o", out]) == 1
    assert "qp must be an integer from 0 to 63" in capsys.readouterr().err
    assert main(["anchor", "jpeg", str(tmp_path / "missing.png"), "--qp", "50", "-o", out]) == 1
    assert main(["anchor", "jpeg", str(small_png), "--qp", "50", "--preset", "slow", "-o", out]) == 1
    assert "jpeg has no presets" in capsys.readouterr().err
    assert main(["anchor", "jpeg", str(small_png), "--bpp", "1.0", "-o", out, "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert {"bytes", "bpp", "qp", "psnr_y", "ms_ssim"} <= set(rep) and rep["bpp"] <= 1.0
