"""Storage faults answer, never crash: a database locked by another process is a 503 with
Retry-After within the busy timeout while reads go on; an unwritable `-shm` file, a foreign
schema or an unknown revision stop the start with a message (no SIGBUS); corrupt pages make the
shares on them a 500 naming the damage while new writes go on, and `db check` reports them."""

import json
import os
import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from circuit_debugger.engine import Debugger
from circuit_debugger.server.app import Settings, create_app
from circuit_debugger.storage import Store, StorageError
from circuit_debugger.storage.check import check

BACKEND = str(Path(__file__).resolve().parents[1] / "backend")
HOLD_SQLITE = """
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("BEGIN IMMEDIATE")  # the write lock, held until stdin closes
c.execute("INSERT INTO investigations VALUES ('held-by-other', 1.0, 1, '{}')")
print("locked", flush=True)
sys.stdin.read()
"""
HOLD_PG = """
import sys, psycopg
c = psycopg.connect(sys.argv[1].replace("postgresql+psycopg", "postgresql"))
c.execute("LOCK TABLE investigations IN EXCLUSIVE MODE")  # writers wait, readers do not
print("locked", flush=True)
sys.stdin.read()
"""


def client_for(target: str, timeout: float = 1.0) -> TestClient:
    app = create_app(Settings(models=[], share_db=target, db_timeout=timeout, serve_frontend=False),
                     debugger=Debugger(), failed={})
    return TestClient(app, raise_server_exceptions=False)


def test_a_locked_database_answers_503_in_bounded_time_and_reads_go_on(db_target):
    c = client_for(db_target)
    old = c.post("/api/shares", json={"state": {"v": 1, "prompt": "before the lock"}}).json()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_SQLITE if "://" not in db_target else HOLD_PG, db_target],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        t0 = time.perf_counter()
        r = c.post("/api/shares", json={"state": {"v": 1, "prompt": "during the lock"}})
        waited = time.perf_counter() - t0
        assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
        assert "busy" in r.json()["detail"] and db_target not in r.text
        assert waited < 3.0, waited  # the busy timeout (1 s), not sqlite's default or forever
        t0 = time.perf_counter()
        again = c.get(f"/api/shares/{old['id']}")
        assert again.status_code == 200 and again.json()["state"] == old["state"]
        assert time.perf_counter() - t0 < 0.5  # a reader does not wait for the writer
    finally:
        holder.stdin.close()
        holder.wait(10)
    r = c.post("/api/shares", json={"state": {"v": 1, "prompt": "after the lock"}})
    assert r.status_code == 201 and c.get(f"/api/shares/{r.json()['id']}").status_code == 200


def serve(target: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "circuit_debugger.cli", "serve", "--database", target, "--port", "1",
                           *extra], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": BACKEND})


def make_unwritable(p: Path) -> None:
    """As root chmod does not stop a write: use the immutable flag, or a directory in its place."""
    p.write_bytes(b"")
    if os.geteuid() != 0:
        p.chmod(0o444)
    elif subprocess.run(["chattr", "+i", str(p)], capture_output=True).returncode != 0:
        p.unlink()
        p.mkdir()


def test_an_unwritable_shm_file_is_refused_at_start_not_sigbus(tmp_path):
    db = tmp_path / "shares.sqlite"
    Store(str(db)).close()
    shm = Path(f"{db}-shm")
    make_unwritable(shm)
    try:
        with pytest.raises(StorageError, match="shares.sqlite-shm: SQLite's -shm file is not"):
            Store(str(db))
        r = serve(str(db))
        assert r.returncode == 1 and "-shm file is not" in r.stderr, (r.returncode, r.stderr[-2000:])
    finally:
        subprocess.run(["chattr", "-i", str(shm)], capture_output=True)


def test_a_foreign_schema_stops_the_server_at_start(tmp_path):
    db = tmp_path / "other-app.sqlite"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE investigations (id INTEGER PRIMARY KEY, title TEXT, body BLOB)")
    r = serve(str(db))
    assert r.returncode == 1 and "not a Circuit Debugger database (foreign schema: investigations" in r.stderr, r.stderr


def corrupt_leaves(db: Path, count: int) -> None:
    """Overwrite the cells of `count` B-tree leaf pages from the middle of the file (the
    damage a bad sector does to stored rows; interior pages are left whole)."""
    size = 4096
    with open(db, "r+b") as f:
        data = f.read()
        n = len(data) // size
        leaves = [p for p in range(1, n) if data[p * size] == 0x0A]  # 0x0A: an index b-tree leaf (WITHOUT ROWID)
        middle = len(leaves) // 2
        for page in leaves[middle:middle + count]:
            f.seek(page * size + 8)
            f.write(random.Random(page).randbytes(size - 16))


def test_corrupt_pages_name_the_damage_new_writes_go_on_and_db_check_reports(tmp_path):
    db = tmp_path / "shares.sqlite"
    Store(str(db)).close()
    made = [{"id": f"share-{i:05d}", "state": {"v": 1, "prompt": f"share {i} " + "x" * 200}} for i in range(600)]
    with sqlite3.connect(db) as conn:  # one transaction (a create per share would fsync 600 times)
        conn.executemany("INSERT INTO investigations VALUES (?, 1.0, 1, ?)",
                         [(m["id"], json.dumps(m["state"])) for m in made])
    conn.close()
    pages = db.stat().st_size // 4096
    assert pages > 30 and not Path(f"{db}-wal").exists()
    corrupt_leaves(db, 3)
    c = client_for(str(db))
    codes = {}
    for m in made:
        r = c.get(f"/api/shares/{m['id']}")
        codes[r.status_code] = codes.get(r.status_code, 0) + 1
        if r.status_code == 200:
            assert r.json()["state"]["prompt"] == m["state"]["prompt"]
        else:
            assert r.status_code == 500 and "damaged" in r.json()["detail"] and "db check" in r.json()["detail"], r.text
            assert str(tmp_path) not in r.text
    assert set(codes) == {200, 500} and codes[200] > 400, codes  # the damage is local
    fresh = [c.post("/api/shares", json={"state": {"v": 1, "prompt": f"new {i}"}}) for i in range(30)]
    assert [r.status_code for r in fresh] == [201] * 30, [r.text for r in fresh if r.status_code != 201]
    assert all(c.get(f"/api/shares/{r.json()['id']}").status_code == 200 for r in fresh)
    lines, ok = check(str(db))
    assert not ok and any("integrity check:" in x and "problem" in x for x in lines), lines
    r = subprocess.run([sys.executable, "-m", "circuit_debugger.cli", "db", "check", "--database", str(db)],
                       capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": BACKEND})
    assert r.returncode == 1 and "DAMAGED" in r.stdout, r.stdout


def test_db_check_passes_a_healthy_database(db_target):
    s = Store(db_target)
    s.create({"v": 1})
    s.job_create("dataset_attribute", "m", {}, 1, 10)
    lines, ok = check(db_target)
    assert ok and "investigations: 1 rows" in lines and "jobs: 1 rows" in lines, lines
    eng = create_engine(db_target if "://" in db_target else f"sqlite:///{db_target}")
    with eng.begin() as conn:  # a record that is not JSON (written by hand) is reported
        conn.execute(text("INSERT INTO investigations VALUES ('bad', 1.0, 1, 'not json')"))
    eng.dispose()
    lines, ok = check(db_target)
    assert not ok and "  investigations bad: not valid JSON" in lines, lines
