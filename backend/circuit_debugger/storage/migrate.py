"""The start-up schema check and migrations (Alembic).

At start the server (a) refuses a database whose tables carry our names but other columns,
or whose Alembic revision is not one of ours (another application's, or a newer version's):
such a database used to start and then fail every write; (b) adopts a database made before
migrations existed (revision 0001 creates only the share tables it lacks); (c) upgrades to the
newest revision. Several processes may start at once (`serve --workers N`, replicas): on
PostgreSQL an advisory lock serialises them; on SQLite a losing racer retries."""

from __future__ import annotations

import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from .errors import StorageError
from .tables import EXPECTED

MIGRATIONS = Path(__file__).parent / "migrations"
ADVISORY_KEY = 0x43445354  # 'CDST'


def alembic_config(connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def revisions() -> list[str]:
    script = ScriptDirectory.from_config(alembic_config(None))
    return [r.revision for r in script.walk_revisions()]


def head() -> str:
    return ScriptDirectory.from_config(alembic_config(None)).get_current_head()


def current(connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def foreign_tables(connection) -> list[str]:
    """Our table names holding other columns: '<table> (has a, b; expected c, d)'."""
    insp = inspect(connection)
    bad = []
    for name in insp.get_table_names():
        if name in EXPECTED:
            have = [c["name"] for c in insp.get_columns(name)]
            if sorted(have) != sorted(EXPECTED[name]):
                bad.append(f"{name} (has {', '.join(have)}; expected {', '.join(EXPECTED[name])})")
    return bad


def upgrade(engine: Engine, label: str) -> str:
    """Check the schema and migrate it to the newest revision; returns that revision."""
    for attempt in range(5):
        try:
            with engine.connect() as conn:
                if engine.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": ADVISORY_KEY})
                try:
                    _upgrade(conn, label)
                    conn.commit()
                finally:
                    if engine.dialect.name == "postgresql":
                        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_KEY})
                        conn.commit()
                return head()
        except StorageError:
            raise
        except Exception as e:  # another process migrated at the same moment: look again
            if attempt == 4 or "already exists" not in str(e) and "locked" not in str(e):
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _upgrade(conn, label: str) -> None:
    bad = foreign_tables(conn)
    if bad:
        raise StorageError(f"{label}: not a Circuit Debugger database (foreign schema: {'; '.join(bad)}); "
                           "give another database (--database)")
    rev = current(conn)
    known = revisions()
    if rev is not None and rev not in known:
        raise StorageError(f"{label}: the database is at schema revision {rev!r}, which this version does not "
                           f"know (it knows {', '.join(sorted(known))}): another application's database, or one "
                           "written by a newer Circuit Debugger")
    command.upgrade(alembic_config(conn), "head")
