"""The ffmpeg binary that `imageio-ffmpeg` ships (or the one `IMAGEIO_FFMPEG_EXE` names), run as a
subprocess with a timeout. Every failure (no binary, encoder not built in, non-zero exit, timeout)
becomes a one-line BitlensError that says which."""
from __future__ import annotations

import os
import subprocess
from functools import lru_cache

from ..errors import BitlensError

DEFAULT_TIMEOUT = float(os.environ.get("BITLENS_FFMPEG_TIMEOUT", "600"))


def ffmpeg_exe() -> str:
    """Path of the ffmpeg executable; BitlensError when there is none."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise BitlensError("ffmpeg is not available: the imageio-ffmpeg package is not installed") from None
    try:
        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError:
        raise BitlensError("ffmpeg is not available: imageio-ffmpeg found no ffmpeg binary "
                           "(set IMAGEIO_FFMPEG_EXE to one)") from None
    if not os.path.isfile(exe) or not os.access(exe, os.X_OK):
        raise BitlensError(f"ffmpeg is not available: {exe} is not an executable file")
    return exe


def run(args: list[str], *, input: bytes | None = None, timeout: float | None = None,
        what: str = "ffmpeg") -> bytes:
    """Run `ffmpeg ARGS` (stdin from `input`), return stdout; errors name `what` and ffmpeg's last line."""
    exe = ffmpeg_exe()
    timeout = DEFAULT_TIMEOUT if timeout is None else timeout
    try:
        p = subprocess.run([exe, *args], input=input, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BitlensError(f"{what} timed out after {timeout:g} s") from None
    except OSError as exc:
        raise BitlensError(f"{what} could not run {exe}: {exc.strerror or exc}") from None
    if p.returncode != 0:
        raise BitlensError(f"{what} failed (ffmpeg exit status {p.returncode}): {_last_line(p.stderr)}")
    return p.stdout


def _last_line(stderr: bytes) -> str:
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    # prefer the most specific error line over ffmpeg's generic closing words
    for ln in reversed(lines):
        if "error" in ln.lower() and "conversion failed" not in ln.lower():
            return ln
    return lines[-1] if lines else "no message"


@lru_cache(maxsize=8)
def _encoders(exe: str) -> frozenset[str]:
    out = run(["-hide_banner", "-encoders"], timeout=60, what="ffmpeg -encoders")
    names = set()
    for line in out.decode("utf-8", "replace").splitlines():
        parts = line.split()
        # rows look like " V....D libvvenc   libvvenc H.266 / VVC"; the legend rows start with "V....." too
        if len(parts) >= 2 and len(parts[0]) == 6 and parts[0][0] in "VAS" and parts[1] != "=":
            names.add(parts[1])
    return frozenset(names)


def encoders() -> frozenset[str]:
    """Names of the encoders this ffmpeg was built with."""
    return _encoders(ffmpeg_exe())


def has_encoder(name: str) -> bool:
    try:
        return name in encoders()
    except BitlensError:
        return False


def require_encoder(name: str, purpose: str) -> None:
    exe = ffmpeg_exe()
    if name not in _encoders(exe):
        raise BitlensError(f"{purpose} needs ffmpeg's {name} encoder, which {exe} was not built with")


@lru_cache(maxsize=8)
def _version(exe: str) -> str:
    out = run(["-hide_banner", "-version"], timeout=60, what="ffmpeg -version")
    first = out.decode("utf-8", "replace").splitlines()
    return first[0].strip() if first else "ffmpeg unknown version"


def version() -> str:
    """ffmpeg's version line (part of every anchor cache key)."""
    return _version(ffmpeg_exe())
