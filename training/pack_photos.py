"""JPEG copies (quality 95, no chroma subsampling) of the training photos for a GPU machine.

The lent GPU machine receives only the repository, at most 64 MiB of it: the 49 PNG photos take
84 MB, these copies 29 MB. v4 was trained on them (`train.py --data .gpudata`).

    python training/pack_photos.py ../shared/data/train-photos .gpudata
    python training/pack_photos.py ../shared/data/train-photos ../shared/data/debian-photos .gpudata

(the second with the 34 photos of training/debian_photos.py, 62 MB of PNG: 46 MB of copies for the 83)
"""
from __future__ import annotations

import glob
import os
import sys

from PIL import Image


def main() -> None:
    *sources, dst = sys.argv[1:]
    os.makedirs(dst, exist_ok=True)
    paths = [p for src in sources for p in sorted(glob.glob(os.path.join(src, "*.png")))]
    for path in paths:
        name = os.path.splitext(os.path.basename(path))[0] + ".jpg"
        Image.open(path).convert("RGB").save(os.path.join(dst, name), "JPEG", quality=95, subsampling=0)
    print(f"{len(paths)} photos -> {dst}")


if __name__ == "__main__":
    main()
