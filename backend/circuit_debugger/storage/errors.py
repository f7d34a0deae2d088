"""What the storage layer raises. `StorageError` stops the server at start with a message
naming the database; the other two are answers to one request: busy (503, retry) and damaged
(500 naming the damage; `circuit-debugger db check` says more)."""

from __future__ import annotations


class StorageError(RuntimeError):
    """The database cannot be used at all (the message names it and says why)."""


class StorageBusy(RuntimeError):
    """Another process holds the database (or every connection is taken): retry shortly."""

    retry_after = 1


class StorageDamaged(RuntimeError):
    """The stored data is damaged (e.g. corrupt SQLite pages)."""
