"""The storage layer: shares, prompt sets, jobs and job results in one database, SQLite
(embedded, default) or PostgreSQL (`--database postgresql://...`), schema managed by Alembic."""

from .errors import StorageBusy, StorageDamaged, StorageError
from .store import Store, open_store

__all__ = ["Store", "StorageBusy", "StorageDamaged", "StorageError", "open_store"]
