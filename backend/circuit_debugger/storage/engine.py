"""Opening the database: an SQLite file (embedded default) or a PostgreSQL URL, as a
SQLAlchemy engine configured so that acknowledged writes are durable and waits are bounded."""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager

from sqlalchemy import create_engine, event, exc
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import StaticPool

from .errors import StorageBusy, StorageDamaged
from .sqlite_files import check_files


def is_url(target: str) -> bool:
    return "://" in target


def label(target: str) -> str:
    """The database as shown in messages (a URL without its password)."""
    if not is_url(target):
        return target
    return make_url(target).render_as_string(hide_password=True)


def make_engine(target: str, busy_timeout: float) -> Engine:
    """`target`: a file path, ':memory:', 'sqlite:///PATH' or 'postgresql://...'.

    SQLite: WAL (readers never wait for a writer), synchronous=FULL (a committed insert
    survives a crash or power loss), and a busy timeout of `busy_timeout` seconds after which
    a locked database is answered 503, not waited on. PostgreSQL: psycopg 3, the same bound as
    lock_timeout and on waiting for a pooled connection."""
    if target.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        url = make_url(target).set(drivername="postgresql+psycopg")
        ms = int(busy_timeout * 1000)
        return create_engine(url, pool_size=8, max_overflow=24, pool_timeout=busy_timeout, pool_pre_ping=True,
                             connect_args={"connect_timeout": max(1, int(busy_timeout) + 1),
                                           "options": f"-c lock_timeout={ms}"})
    if target.startswith("sqlite:///"):
        target = target[len("sqlite:///"):]
    elif is_url(target):
        raise ValueError(f"unsupported database URL {label(target)!r} (use a file path or postgresql://...)")
    if target == ":memory:":
        eng = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        check_files(target)
        eng = create_engine(f"sqlite:///{target}", pool_size=8, max_overflow=24, pool_timeout=busy_timeout,
                            connect_args={"timeout": busy_timeout, "check_same_thread": False})

    @event.listens_for(eng, "connect")
    def _pragmas(dbapi_conn, _record):
        cur = dbapi_conn.cursor()
        if target != ":memory:":
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.close()

    return eng


BUSY_WORDS = ("database is locked", "database table is locked", "lock timeout", "could not obtain lock",
              "canceling statement due to lock timeout", "too many clients", "connection refused",
              "could not connect", "server closed the connection", "is the server running")
DAMAGE_WORDS = ("malformed", "file is not a database", "disk i/o error", "corrupt")


@contextmanager
def translated():
    """Turn driver errors into StorageBusy / StorageDamaged (other errors pass unchanged)."""
    try:
        yield
    except exc.TimeoutError:  # every pooled connection is taken and none came back in time
        raise StorageBusy("the database is busy (no free connection); retry shortly") from None
    except exc.DBAPIError as e:
        text = str(e.orig).lower() if e.orig is not None else str(e).lower()
        if any(w in text for w in BUSY_WORDS) or e.connection_invalidated:
            raise StorageBusy("the database is busy (locked by another process or unreachable); retry shortly") from None
        if isinstance(e.orig, sqlite3.DatabaseError) and any(w in text for w in DAMAGE_WORDS):
            raise StorageDamaged(f"the database is damaged ({e.orig}); run `circuit-debugger db check`") from None
        raise
