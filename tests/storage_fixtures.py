"""A real PostgreSQL server for the storage tests (Debian's `postgresql` package; no mocks),
started once per session on a unix socket only, and one fresh database per test."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("CD_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _as_postgres(cmd: str) -> None:
    if os.geteuid() == 0:
        subprocess.run(["su", "postgres", "-c", cmd], check=True, capture_output=True, timeout=60)
    else:
        subprocess.run(cmd, shell=True, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def postgres_server():
    """Yields a SQLAlchemy URL of the server's admin database; stops the server at the end."""
    if not (PG_BIN / "initdb").exists():
        pytest.fail(f"{PG_BIN}/initdb is missing: install Debian's postgresql (scripts/test.sh does: "
                    "apt-get install -y postgresql)")
    base = Path(tempfile.mkdtemp(prefix="cd-pg-", dir="/tmp"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")
    import socket

    with socket.socket() as s:  # a free port number (the server listens on a unix socket only)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _as_postgres(f"{PG_BIN}/initdb -D {data} -A trust -U pg")
    _as_postgres(f"{PG_BIN}/pg_ctl -D {data} -w -t 30 -l {base}/log "
                 f"-o \"-p {port} -k {sock} -c listen_addresses='' -c fsync=on\" start")
    try:
        yield f"postgresql+psycopg://pg@/postgres?host={sock}&port={port}"
    finally:
        _as_postgres(f"{PG_BIN}/pg_ctl -D {data} -m immediate -w stop")
        shutil.rmtree(base, ignore_errors=True)


def fresh_postgres_db(admin_url: str) -> str:
    from sqlalchemy import create_engine, text

    name = "t_" + uuid.uuid4().hex[:12]
    eng = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text(f"CREATE DATABASE {name}"))
    eng.dispose()
    return admin_url.replace("/postgres?", f"/{name}?")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_target(request, tmp_path):
    """A fresh database of each backend: an SQLite file path, or a PostgreSQL URL."""
    if request.param == "sqlite":
        return str(tmp_path / "store.sqlite")
    return fresh_postgres_db(request.getfixturevalue("postgres_server"))
