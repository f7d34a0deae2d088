"""Stored investigations and prompt sets: the share part of the storage layer (`storage/`),
kept under its old names for callers and tests."""

from __future__ import annotations

from pathlib import Path

from .storage import Store as ShareStore  # noqa: F401
from .storage import StorageError as ShareStoreError  # noqa: F401


def default_share_db() -> str:
    import os

    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "circuit-debugger" / "investigations.sqlite")
