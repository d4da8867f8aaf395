"""`bitlens gui IMAGE --bpp T --screenshot OUT.png` renders after the first full comparison and exits."""
import os
import subprocess
import sys

import numpy as np
from PIL import Image

from .guiconf import _gui_env, tiny_png  # noqa: F401


def test_gui_screenshot_from_the_command_line(tiny_png, tmp_path):
    out = tmp_path / "shot.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    p = subprocess.run([sys.executable, "-m", "app", "gui", str(tiny_png), "--bpp", "1.0", "--screenshot",
                        str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    with Image.open(out) as im:
        assert im.width >= 1000 and im.height >= 600
        px = np.asarray(im.convert("RGB").resize((64, 36))).reshape(-1, 3)
    assert len({tuple(p) for p in px}) > 20      # not a blank window
