"""The database schema (SQLAlchemy Core): what the Alembic migrations build and what the
store checks at start. Shares and prompt sets are insert-only; jobs are the one table whose
rows change (status, progress, result); job_locks holds one row per job folder being written."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Float, Integer, MetaData, Table, Text

metadata = MetaData()

SHARE_TABLES = ("investigations", "promptsets")


def _immutable(name: str) -> Table:
    return Table(name, metadata,
                 Column("id", Text, primary_key=True),
                 Column("created", Float, nullable=False),
                 Column("version", Integer, nullable=False),
                 Column("state", Text, nullable=False),
                 sqlite_with_rowid=False)


investigations = _immutable("investigations")
promptsets = _immutable("promptsets")

jobs = Table("jobs", metadata,
             Column("id", Text, primary_key=True),
             Column("kind", Text, nullable=False),  # 'dataset_attribute', 'dataset_ablate', 'circuit_evaluate'
             Column("model", Text, nullable=False),
             Column("status", Text, nullable=False),  # queued, running, done, failed, cancelled
             Column("created", Float, nullable=False),
             Column("updated", Float, nullable=False),  # the coordinator's heartbeat
             Column("deadline", Float, nullable=False),  # server-side time limit (epoch seconds)
             Column("done", Integer, nullable=False),  # units of work finished ...
             Column("total", Integer, nullable=False),  # ... of this many
             Column("cancel", Boolean, nullable=False),  # asked to stop (by any replica)
             Column("request", Text, nullable=False),  # the submitted request, JSON
             Column("error", Text),
             Column("result", Text))  # JSON, once done

# one writer per server-owned job folder (mining, training), across replicas: the row names
# the job writing it; the lock is free once that job has finished or its heartbeat
# (jobs.updated) is stale, i.e. its replica died (see Store.job_create_locked)
job_locks = Table("job_locks", metadata,
                  Column("folder", Text, primary_key=True),  # the folder's key under <mining_dir>/jobs
                  Column("job", Text, nullable=False),  # the job holding it
                  Column("acquired", Float, nullable=False))

# columns each table must have for this version of the code (the start-up schema check)
EXPECTED = {t.name: [c.name for c in t.columns] for t in metadata.sorted_tables}
