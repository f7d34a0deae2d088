"""The storage layer against both backends: SQLite (embedded) and a real PostgreSQL server.
Shares are insert-only and read back identical; jobs move through their states; the schema is
created and migrated by Alembic, old databases are adopted and foreign ones refused at start."""

import threading

import pytest
from sqlalchemy import create_engine, text

from circuit_debugger.errors import NotFound, UserError
from circuit_debugger.storage import Store, StorageError
from circuit_debugger.storage.migrate import head


def raw(target: str):
    """A plain engine on the same database (no schema check, no migrations)."""
    return create_engine(target if "://" in target else f"sqlite:///{target}")


def test_shares_round_trip_and_survive_reopening(db_target):
    s = Store(db_target)
    made = [s.create({"v": 1, "prompt": f"p{i}", "nested": {"k": [i, None, 1.5]}}) for i in range(5)]
    ps = s.create({"name": "set", "rows": [{"prompt": "a"}]}, "promptsets")
    assert len({m["id"] for m in made}) == 5 and all(len(m["id"]) == 16 for m in made)
    s.close()
    again = Store(db_target)
    for m in made:
        assert again.get(m["id"]) == {"id": m["id"], "created": m["created"], "state": m["state"]}
    assert again.get(ps["id"], "promptsets")["state"]["name"] == "set"
    with pytest.raises(NotFound):
        again.get(ps["id"])  # a prompt set is not an investigation
    with pytest.raises(UserError) as e:
        again.create({"v": 1, "blob": "x" * 300_000})
    assert e.value.status == 413
    assert again.revision == head()


def test_concurrent_writers_lose_nothing(db_target):
    s = Store(db_target)
    made, errors = [], []

    def writer(k):
        for i in range(20):
            try:
                made.append(s.create({"v": 1, "who": k, "i": i}))
            except Exception as e:  # noqa: BLE001 - counted and asserted below
                errors.append(repr(e))

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(made) == 120
    assert all(s.get(m["id"])["state"] == m["state"] for m in made)


def test_job_lifecycle(db_target):
    s = Store(db_target)
    jid = s.job_create("dataset_attribute", "tiny", {"top_k": 5}, total=4, time_limit=60)
    j = s.job_get(jid)
    assert (j["status"], j["done"], j["total"], j["cancel"], j["result"]) == ("queued", 0, 4, False, None)
    assert j["request"] == {"top_k": 5} and j["deadline"] > j["created"]
    assert s.job_update(jid, status="running", done=2)
    assert s.job_update(jid, status="done", done=4, result={"x": [1.25, 2]})
    assert s.job_get(jid)["result"] == {"x": [1.25, 2]}
    assert not s.job_update(jid, status="failed", error="late")  # a finished job stays finished
    assert s.job_get(jid)["status"] == "done"
    # cancelling: a queued job is cancelled at once; a running one is flagged for its coordinator
    q = s.job_create("circuit_evaluate", "tiny", {}, total=1, time_limit=60)
    assert s.job_cancel(q)["status"] == "cancelled"
    r = s.job_create("circuit_evaluate", "tiny", {}, total=1, time_limit=60)
    s.job_update(r, status="running")
    assert s.job_cancel(r)["cancel"] is True and s.job_flags(r)[0] is True
    assert not s.job_update(q, status="done", result={"late": True}) and s.job_get(q)["result"] is None
    with pytest.raises(NotFound):
        s.job_get("nope")


def test_a_database_made_before_migrations_is_adopted(db_target):
    eng = raw(db_target)
    with eng.begin() as c:  # the schema the server wrote before Alembic (shares only)
        c.execute(text("CREATE TABLE investigations (id TEXT PRIMARY KEY, created REAL NOT NULL, "
                       "version INTEGER NOT NULL, state TEXT NOT NULL)"))
        c.execute(text("INSERT INTO investigations VALUES ('old-share-0001', 1.0, 1, :s)"), {"s": '{"v":1,"prompt":"old"}'})
    eng.dispose()
    s = Store(db_target)
    assert s.get("old-share-0001")["state"] == {"v": 1, "prompt": "old"}
    assert s.get(s.create({"v": 1}, "promptsets")["id"], "promptsets")  # the missing table was created
    assert s.job_get(s.job_create("k", "m", {}, 1, 10))["status"] == "queued"
    assert s.revision == head()


def test_a_foreign_schema_is_refused_at_start(db_target):
    eng = raw(db_target)
    with eng.begin() as c:
        c.execute(text("CREATE TABLE investigations (id INTEGER PRIMARY KEY, body TEXT)"))
    eng.dispose()
    with pytest.raises(StorageError, match=r"foreign schema: investigations \(has id, body"):
        Store(db_target)


def test_an_unknown_schema_revision_is_refused_at_start(db_target):
    Store(db_target).close()
    eng = raw(db_target)
    with eng.begin() as c:
        c.execute(text("UPDATE alembic_version SET version_num = 'f00dcafe'"))
    eng.dispose()
    with pytest.raises(StorageError, match="revision 'f00dcafe'"):
        Store(db_target)
