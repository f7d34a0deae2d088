"""Checks on an SQLite database's files before it is opened.

SQLite in WAL mode maps the `-shm` file into memory; when that file cannot be written (or is
truncated under a running server) the process dies of SIGBUS, which no exception handler can
catch. So the server refuses at start, with a message, when the `-shm`/`-wal` files exist and
are not writable regular files, or when the folder does not let it create them."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import StorageError


def check_files(path: str) -> None:
    db = Path(path)
    folder = db.parent
    folder.mkdir(parents=True, exist_ok=True)
    for extra in (Path(f"{db}-wal"), Path(f"{db}-shm")):
        if not os.path.lexists(extra):
            continue
        if not extra.is_file():
            raise StorageError(f"{extra}: SQLite's {extra.name[len(db.name):]} file is not a regular file; "
                               "move it away (only when no other process uses the database)")
        try:
            with open(extra, "r+b"):
                pass
        except OSError as e:
            raise StorageError(f"{extra}: SQLite's {extra.name[len(db.name):]} file is not writable by the server "
                               f"({e.strerror}); fix its permissions (SQLite would die of SIGBUS on it)") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StorageError(f"{folder}: the database's folder is not writable (SQLite creates its -wal and -shm files "
                           "there)")
