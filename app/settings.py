"""Settings remembered between runs (QSettings).

`app_settings()` is the user's settings (organisation "Bitlens"), or an INI file named by the
environment variable BITLENS_SETTINGS (tests and benchmarks use a temporary one, so they never touch
the user's settings). Lists and dicts are stored as JSON strings: QSettings' INI format does not keep
the type of a one-element list.
"""
from __future__ import annotations

import json
import os

from PySide6.QtCore import QSettings

MAX_RECENT = 10


def app_settings() -> QSettings:
    path = os.environ.get("BITLENS_SETTINGS")
    if path:
        return QSettings(path, QSettings.Format.IniFormat)
    return QSettings("Bitlens", "Bitlens")


class Settings:
    """Typed access to a QSettings."""

    def __init__(self, qs: QSettings):
        self.qs = qs

    def get(self, key: str, default=None, kind=None):
        v = self.qs.value(key, None)
        if v is None:
            return default
        if kind is bool:
            return v if isinstance(v, bool) else str(v).lower() in ("1", "true", "yes")
        if kind is not None:
            try:
                return kind(v)
            except (TypeError, ValueError):
                return default
        return v

    def set(self, key: str, value) -> None:
        self.qs.setValue(key, value)

    def get_json(self, key: str, default=None):
        v = self.qs.value(key, None)
        if v is None:
            return default
        try:
            return json.loads(v)
        except (TypeError, ValueError):
            return default

    def set_json(self, key: str, value) -> None:
        self.qs.setValue(key, json.dumps(value))

    def recent(self) -> list[str]:
        return [p for p in self.get_json("recent", []) if isinstance(p, str)]

    def add_recent(self, path: str) -> list[str]:
        path = os.path.abspath(path)
        items = [path] + [p for p in self.recent() if p != path]
        self.set_json("recent", items[:MAX_RECENT])
        return items[:MAX_RECENT]

    def sync(self) -> None:
        self.qs.sync()
