"""The `bitlens` entry point: the engine's command line, with `gui` (the default) opening the window."""
from __future__ import annotations

import os
import sys

from codec.cli import main as codec_main


def _launch(image: str | None, bpp: float | None, screenshot: str | None) -> int:
    from .main import run   # Qt is imported only when the window is wanted
    return run(image, bpp, screenshot)


def main(argv: list[str] | None = None) -> int:
    return codec_main(argv, gui=_launch)


def main_exit() -> None:
    """Console-script entry point. A reader that stops reading (`bitlens info x.bln | head -1`) ends
    the output quietly rather than with a traceback."""
    try:
        sys.exit(main())
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # no second error at exit
        sys.exit(1)
