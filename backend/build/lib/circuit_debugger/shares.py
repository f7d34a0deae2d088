"""Stored investigations: immutable, under unguessable short ids, in SQLite.

A share is written once (INSERT, never UPDATE) and committed with `synchronous=FULL` before
its id is returned, so an id a client has received survives a crash of the server.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from pathlib import Path

from .errors import NotFound, UserError

MAX_BYTES = {"investigations": 256 * 1024, "promptsets": 4 * 1024 * 1024}
ID_BYTES = 12  # 96 random bits -> 16 url-safe characters


class ShareStoreError(RuntimeError):
    """The investigations database cannot be opened (the message names the file)."""


class ShareStore:
    def __init__(self, path: str | Path = ":memory:"):
        self.path = str(path)
        self._lock = threading.Lock()
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            for table in MAX_BYTES:  # investigations and prompt sets: both immutable, both shareable
                self._db.execute(f"CREATE TABLE IF NOT EXISTS {table} (id TEXT PRIMARY KEY, created REAL NOT NULL, "
                                 "version INTEGER NOT NULL, state TEXT NOT NULL) WITHOUT ROWID")
        except (sqlite3.Error, OSError) as e:
            raise ShareStoreError(f"{self.path}: cannot open the investigations database ({e})") from None

    def create(self, state: dict, table: str = "investigations") -> dict:
        text = json.dumps(state, sort_keys=True, separators=(",", ":"))
        limit = MAX_BYTES[table]
        if len(text.encode()) > limit:
            raise UserError(f"too large to store ({len(text.encode())} bytes; at most {limit})", 413)
        created = time.time()
        with self._lock:
            for _ in range(8):
                sid = secrets.token_urlsafe(ID_BYTES)
                try:
                    self._db.execute(f"INSERT INTO {table} VALUES (?, ?, ?, ?)",
                                     (sid, created, int(state.get("v", 1)), text))
                    return {"id": sid, "created": created, "state": json.loads(text)}
                except sqlite3.IntegrityError:  # an id collision: draw again, never overwrite
                    continue
        raise RuntimeError("could not draw a fresh share id")

    def get(self, sid: str, table: str = "investigations") -> dict:
        if table not in MAX_BYTES:
            raise ValueError(table)
        with self._lock:
            row = self._db.execute(f"SELECT created, state FROM {table} WHERE id = ?", (sid,)).fetchone()
        if row is None:
            raise NotFound(f"no {'shared investigation' if table == 'investigations' else 'prompt set'} with id {sid!r}")
        return {"id": sid, "created": row[0], "state": json.loads(row[1])}

    def close(self) -> None:
        with self._lock:
            self._db.close()


def default_share_db() -> str:
    import os

    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "circuit-debugger" / "investigations.sqlite")
