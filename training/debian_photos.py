"""Fetch more training photos from Debian wallpaper packages (never Kodak).

The 49 photos of ../shared/data/train-photos are few for a model trained for hours. Debian's main
archive (DFSG-free, redistributable) holds wallpaper packages with photographs among drawn and
rendered art; the files below are the photographs, picked by eye from a contact sheet of every
image in these packages (bookworm, 2026-11-27): lomiri-wallpapers-16.04 and -20.04 (Ubuntu Touch,
files named by their photographers), mate-backgrounds (nature/) and plasma-workspace-wallpapers.
Drawn, rendered and abstract images were left out (all of gnome-backgrounds, sway-backgrounds,
ukui-wallpapers, mate's abstract/ and desktop/, most of Plasma's).

Each photo is downscaled with Lanczos so that its longer side is at most `--max-side` pixels (the
training photos are 1-1.3 Mpixel, made the same way from larger JPEGs: the downscaling also removes
the JPEG artefacts) and written as PNG, with SOURCES.md naming the package, its version and the file.

    python training/debian_photos.py --out ../shared/data/debian-photos
"""
from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tempfile

from PIL import Image

# package -> files (relative to its root) that are photographs
PHOTOS: dict[str, list[str]] = {
    "lomiri-wallpapers-16.04": [f"usr/share/backgrounds/{n}.jpg" for n in (
        "Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "Picture_0B_by_freespace", "Picture_1A_by_freespace",
        "Wine_by_Jakkub_Mede", "aitzgorri_by_Aitzol_Berasategi", "analogpattern_by_Peter_Nerlich",
        "free_by_Peter_Nerlich", "friends_by_Aitzol_Berasategi", "greentock_by_Peter_Nerlich",
        "life_by_Aitzol_Berasategi", "picosdeeuropa_by_Aitzol_Berasategi", "seeding_by_Clements_Engelhardt",
        "sunset_by_Aitzol_Berasategi")],
    "lomiri-wallpapers-20.04": ["usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg"],
    "mate-backgrounds": [f"usr/share/backgrounds/mate/nature/{n}.jpg" for n in (
        "Blinds", "Dune", "Garden", "LadyBird", "RainDrops", "Storm", "TwoWings", "Wood", "YellowFlower")],
    "plasma-workspace-wallpapers": [f"usr/share/wallpapers/{n}/contents/images/2560x1600.jpg" for n in (
        "BytheWater", "ColdRipple", "ColorfulCups", "EveningGlow", "FallenLeaf", "Grey", "Kite",
        "OneStandsOut", "Path", "summer_1am")],
}


def extract(package: str, work: str) -> tuple[str, str]:
    """Download a package (apt-get download) and unpack it; returns (root folder, version)."""
    subprocess.run(["apt-get", "download", package], cwd=work, check=True, capture_output=True)
    deb = glob.glob(os.path.join(work, f"{package}_*.deb"))[0]
    root = os.path.join(work, package)
    subprocess.run(["dpkg", "-x", deb, root], check=True)
    version = subprocess.run(["dpkg-deb", "-f", deb, "Version"], check=True, capture_output=True,
                             text=True).stdout.strip()
    return root, version


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="../shared/data/debian-photos")
    ap.add_argument("--max-side", type=int, default=1536)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    sources = ["Photographs from Debian (bookworm) wallpaper packages, downscaled with Lanczos to at most "
               f"{args.max_side} pixels on the longer side by training/debian_photos.py. Each package's "
               "copyright file (usr/share/doc/<package>/copyright) gives the licence.", ""]
    n = 0
    with tempfile.TemporaryDirectory() as work:
        for package, files in PHOTOS.items():
            try:
                root, version = extract(package, work)
            except (subprocess.CalledProcessError, IndexError) as exc:
                sys.exit(f"debian_photos: cannot fetch {package}: {exc}")
            for rel in files:
                im = Image.open(os.path.join(root, rel)).convert("RGB")
                scale = min(1.0, args.max_side / max(im.size))
                if scale < 1:
                    im = im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS)
                n += 1
                name = f"deb{n:03d}.png"
                im.save(os.path.join(args.out, name))
                sources.append(f"* {name}: {package} {version}, /{rel} ({im.width}x{im.height})")
    with open(os.path.join(args.out, "SOURCES.md"), "w") as f:
        f.write("\n".join(sources) + "\n")
    print(f"{n} photos -> {args.out}")


if __name__ == "__main__":
    main()
