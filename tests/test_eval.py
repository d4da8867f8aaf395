"""`bitlens eval` on a folder of tiny images (ours, JPEG, VVC), its files and failure rows; MS-SSIM."""
import csv
import json
import numpy as np
import pytest
from PIL import Image

from codec.anchors import available_anchors
from codec.cli import main
from codec.errors import BitlensError
from codec.evaluate import EvalConfig, _row, bd_rates, mean_curves, run_eval
from codec.metrics import ms_ssim

from .conftest import sample_crop

HAS_VVC = available_anchors()["vvc"] is None


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("BITLENS_CACHE", str(tmp_path_factory.getbasetemp() / "eval-cache"))


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "images"
    d.mkdir()
    Image.fromarray(sample_crop(64, 96)).save(d / "a.png")
    Image.fromarray(sample_crop(48, 80, 300, 330)).save(d / "b.png")   # textured: ours reaches 0.9 and 1.5
    (d / "broken.png").write_bytes(b"\x89PNG but not really")
    (d / "notes.txt").write_text("not an image, ignored")
    return d


@pytest.mark.skipif(not HAS_VVC, reason="ffmpeg with libvvenc not available")
def test_eval_ours_jpeg_vvc_writes_everything(folder, tmp_path, capsys):
    out = tmp_path / "out"
    # 0.02 bpp is below what any codec reaches on images this small: failure rows, not a crash
    assert main(["eval", str(folder), "--codecs", "ours,jpeg,vvc", "--bpp", "0.02,0.9,1.5", "--out", str(out),
                 "--json"]) == 0
    cap = capsys.readouterr()
    printed = json.loads(cap.out)
    assert "eval: done" in cap.err and "a ours @ 0.9" in cap.err     # progress on stderr

    res = json.loads((out / "results.json").read_text())
    assert printed["rows"] == res["rows"]
    rows = res["rows"]
    assert len(rows) == 3 * 3 * 3
    for key in ("image", "codec", "target_bpp", "bpp", "psnr_y", "ms_ssim", "encode_seconds", "ok", "error"):
        assert key in rows[0]
    ok = [r for r in rows if r["ok"]]
    assert {(r["image"], r["codec"]) for r in ok} >= {(i, c) for i in "ab" for c in ("ours", "jpeg", "vvc")}
    for r in ok:
        assert r["bpp"] <= r["target_bpp"] and 0 < r["ms_ssim"] <= 1 and r["psnr_y"] > 10
        assert (out / r["stream"]).stat().st_size == r["bytes"]
        assert Image.open(out / r["recon"]).size == {"a": (96, 64), "b": (80, 48)}[r["image"]]
    assert all(not r["ok"] and r["error"] for r in rows if r["image"] == "broken")
    assert all(not r["ok"] and "0.02" in r["error"] for r in rows if r["image"] != "broken" and r["target_bpp"] == 0.02)
    assert set(res["bd_rate_vs_vvc"]) == {"ours", "jpeg"}   # too few points here: None, with a note
    assert res["bd_rate_per_image"]["a"]["ours"] is None and res["bd_rate_notes"]["a"]["ours"]

    with open(out / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == len(rows)
    assert (out / "bd_rate.csv").read_text().startswith("image,ours,jpeg")
    assert "| image | ours | jpeg |" in (out / "bd_rate.md").read_text()
    plot = Image.open(out / "rd.png")
    assert plot.size[0] > 400 and len(np.unique(np.asarray(plot.convert("RGB")).reshape(-1, 3), axis=0)) > 4


def test_eval_in_parallel_gives_bd_rate(folder, tmp_path, capsys):
    out = tmp_path / "out"
    res = run_eval(folder, out, EvalConfig(codecs=("jpeg", "webp"), targets=(0.8, 1.2, 1.8, 2.6), jobs=2),
                   progress=lambda m: None)
    # webp plays the anchor's part through the same code path as vvc (BD-rate needs vvc by name)
    assert len(res.rows) == 3 * 2 * 4 and len(res.failures) == 8
    assert {r["image"] for r in res.failures} == {"broken"}
    per, notes, mean = bd_rates([dict(r, codec={"webp": "vvc"}.get(r["codec"], r["codec"])) for r in res.rows],
                                ("vvc", "jpeg"))
    assert per["a"]["jpeg"] is not None and per["b"]["jpeg"] is not None, notes
    assert mean["jpeg"] == pytest.approx((per["a"]["jpeg"] + per["b"]["jpeg"]) / 2)
    assert mean["jpeg"] > 0   # WebP needs fewer bits than JPEG for the same PSNR-Y
    assert json.loads((out / "results.json").read_text())["failures"] == 8


def test_eval_errors(tmp_path, folder, capsys):
    assert main(["eval", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 1
    assert "no such folder" in capsys.readouterr().err
    assert main(["eval", str(folder), "--codecs", "ours,h264", "--out", str(tmp_path / "o")]) == 1
    assert "unknown codec 'h264'" in capsys.readouterr().err
    assert main(["eval", str(folder), "--bpp", "0.1,x", "--out", str(tmp_path / "o")]) == 1
    assert main(["eval", str(folder), "--jobs", "x"]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BitlensError, match="no image files"):
        run_eval(empty, tmp_path / "o")


def test_ms_ssim_properties():
    y = (np.asarray(Image.fromarray(sample_crop(192, 192)).convert("L"), dtype=np.float64) * 1023 / 255).round()
    assert ms_ssim(y, y) == 1.0
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 1, y.shape)
    vals = [ms_ssim(y, np.clip(np.round(y + s * noise), 0, 1023)) for s in (2, 8, 32, 96)]
    assert all(a > b for a, b in zip(vals, vals[1:])) and vals[0] > 0.99 and vals[-1] < 0.95
    assert ms_ssim(y, y * 0.5) < 1          # luminance change only shows at the coarsest scale's l term
    assert 0 < ms_ssim(y[:9, :13], y[:9, :13] + 4) < 1       # tiny planes: fewer scales, still defined
    with pytest.raises(BitlensError):
        ms_ssim(y, y[:10])


def test_mean_curves_mark_means_over_only_the_images_reaching_a_rate():
    # x265 reaching 0.06 bpp on one image of two: its mean there is that image's alone, so marked
    rows = [_row(img, c, t, ok=True, bpp=t * f, psnr_y=30 + t + f)
            for img, f in (("a", 0.9), ("b", 0.8)) for c in ("vvc", "hevc") for t in (0.06, 0.12)
            if not (img == "b" and c == "hevc" and t == 0.06)]
    rows += [_row("b", "hevc", 0.06, error="cannot reach"), _row("broken", "vvc", 0.06, error="not an image")]
    curves, partial = mean_curves(rows, ("vvc", "hevc"))
    assert curves["vvc"] == [pytest.approx((0.06 * 0.85, 30.91)), pytest.approx((0.12 * 0.85, 30.97))]
    assert curves["hevc"][0] == pytest.approx((0.054, 30.96)) and partial["vvc"] == {}
    assert partial["hevc"] == {curves["hevc"][0]: "1/2"}     # the unreadable image counts for none
