import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "resources" / "samples" / "endeavour.png"
KODAK = ROOT.parent / "shared" / "data" / "kodak"


@pytest.fixture(scope="session")
def codec():
    import torch

    from codec.engine import LearnedCodec
    torch.set_num_threads(2)
    return LearnedCodec.load()


def sample_crop(h: int, w: int, y0: int = 180, x0: int = 300) -> np.ndarray:
    """A crop of the bundled sample photo as uint8 RGB."""
    from PIL import Image
    a = np.asarray(Image.open(SAMPLE).convert("RGB"))
    return a[y0:y0 + h, x0:x0 + w].copy()


@pytest.fixture
def small_rgb() -> np.ndarray:
    return sample_crop(72, 100)


@pytest.fixture
def small_png(tmp_path, small_rgb) -> Path:
    from PIL import Image
    p = tmp_path / "small.png"
    Image.fromarray(small_rgb).save(p)
    return p
