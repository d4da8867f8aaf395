"""Rate–distortion plots drawn with Pillow (no matplotlib): curves of (bpp, PSNR-Y) points, one colour
per codec, with axes, ticks, grid and a legend. Used by `bitlens eval` and available to the GUI's
report export."""
from __future__ import annotations

import math
import os

from PIL import Image, ImageDraw, ImageFont

COLOURS = {"ours": (214, 39, 40), "vvc": (31, 119, 180), "hevc": (44, 160, 44), "av1": (148, 103, 189),
           "jpeg": (255, 127, 14), "webp": (140, 86, 75)}
_SPARE = [(23, 190, 207), (188, 189, 34), (227, 119, 194), (127, 127, 127)]


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def nice_ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    """About n round-numbered ticks covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks, t = [], start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 10))
        t += step
    if ticks[-1] < hi:
        ticks.append(round(t, 10))
    return ticks


def _label(v: float) -> str:
    return f"{v:g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.1e}"


def rd_plot(curves: dict[str, list[tuple[float, float]]], path: str | os.PathLike, title: str = "",
            xlabel: str = "rate [bpp]", ylabel: str = "PSNR-Y [dB]", size: tuple[int, int] = (960, 640),
            partial: dict[str, dict[tuple[float, float], str]] | None = None) -> None:
    """Draw curves {name: [(x, y), ...]} (sorted by x, NaNs skipped) and save a PNG. `partial`
    {name: {(x, y): label}}: points that are means over only some of the images, drawn hollow with
    their label (e.g. '9/24') and explained under the legend."""
    from .images import write_atomic

    clean = {k: sorted((x, y) for x, y in pts if math.isfinite(x) and math.isfinite(y))
             for k, pts in curves.items()}
    clean = {k: v for k, v in clean.items() if v}
    W, H = size
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    f, fs, ft = _font(16), _font(14), _font(20)
    left, right, top, bottom = 80, 30, 50 if title else 25, 60
    x0, x1, y0, y1 = left, W - right, top, H - bottom
    xs = [x for v in clean.values() for x, _ in v] or [0.0, 1.0]
    ys = [y for v in clean.values() for _, y in v] or [0.0, 1.0]
    xt = nice_ticks(min(0.0, min(xs)), max(xs))
    pad = max(0.5, 0.05 * (max(ys) - min(ys)))
    yt = nice_ticks(min(ys) - pad, max(ys) + pad)
    xlo, xhi, ylo, yhi = xt[0], xt[-1], yt[0], yt[-1]

    def px(x, y):
        return (x0 + (x - xlo) / (xhi - xlo) * (x1 - x0), y1 - (y - ylo) / (yhi - ylo) * (y1 - y0))

    for t in xt:
        X, _ = px(t, ylo)
        d.line([(X, y0), (X, y1)], fill=(225, 225, 225))
        d.text((X, y1 + 6), _label(t), fill="black", font=fs, anchor="ma")
    for t in yt:
        _, Y = px(xlo, t)
        d.line([(x0, Y), (x1, Y)], fill=(225, 225, 225))
        d.text((x0 - 6, Y), _label(t), fill="black", font=fs, anchor="rm")
    d.rectangle([x0, y0, x1, y1], outline="black")
    d.text(((x0 + x1) / 2, H - 8), xlabel, fill="black", font=f, anchor="md")
    ylab = Image.new("RGBA", (300, 24), (255, 255, 255, 0))
    ImageDraw.Draw(ylab).text((150, 12), ylabel, fill="black", font=f, anchor="mm")
    ylab = ylab.rotate(90, expand=True)
    img.paste(ylab, (8, int((y0 + y1) / 2 - ylab.height / 2)), ylab)
    if title:
        d.text((W / 2, 12), title, fill="black", font=ft, anchor="ma")

    spare = iter(_SPARE * 4)
    legend = []
    for name, pts in clean.items():
        colour = COLOURS.get(name) or next(spare)
        p = [px(x, y) for x, y in pts]
        if len(p) > 1:
            d.line(p, fill=colour, width=3, joint="curve")
        few = (partial or {}).get(name, {})
        for (x, y), (X, Y) in zip(pts, p):
            label = few.get((x, y))
            d.ellipse([X - 5, Y - 5, X + 5, Y + 5], fill="white" if label else colour,
                      outline=colour if label else "black", width=2 if label else 1)
            if label:
                d.text((X + 8, Y + 4), label, fill=colour, font=fs, anchor="la")
        legend.append((name, colour))
    note = "hollow: mean over the images that reach the rate" if any((partial or {}).values()) else ""
    lx, ly = x1 - (330 if note else 150), y1 - 12 - 24 * (len(legend) + bool(note))
    if legend:
        d.rectangle([lx - 10, ly - 8, x1 - 10, y1 - 10], fill="white", outline=(160, 160, 160))
    for i, (name, colour) in enumerate(legend):
        Y = ly + 24 * i + 8
        d.line([(lx, Y), (lx + 30, Y)], fill=colour, width=3)
        d.text((lx + 40, Y), name, fill="black", font=f, anchor="lm")
    if note:
        d.text((lx, ly + 24 * len(legend) + 8), note, fill="black", font=fs, anchor="lm")
    write_atomic(path, lambda fh: img.save(fh, format="PNG"))
