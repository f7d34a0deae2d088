"""Replicas and server-owned job folders, on SQLite and on a real PostgreSQL server: two apps
(each its own job manager, as two server processes have) on one database and one job root.
One job writes a folder: the other replica's submission is a 409 naming it; a cancel sent to
either replica frees it; a dead replica's lock (its job's heartbeat stale) is taken over.
A finished mining job's store is served by the replica that ran it, by the other one and
after a restart, with no restart needed. `db check` counts a table without a JSON column."""

import threading

import pytest
from sqlalchemy import create_engine, text

from helpers import job_client, paced_executor, wait_job as wait
from circuit_debugger.errors import UserError
from circuit_debugger.jobs import training
from circuit_debugger.storage import Store
from circuit_debugger.storage.check import check

TRAIN = {"model": "tiny", "kind": "sae", "layers": [1], "latents": 8, "steps": 90, "batch": 2, "corpus": "c.txt",
         "ctx": 8, "tokens": 300, "eval_tokens": 60, "seed": 1}
MINE = {"model": "tiny", "corpus": "c.txt", "tokens": 400, "ctx": 8, "seed": 5}


@pytest.fixture(scope="module")
def executor(tiny_dir):
    ex = paced_executor({"tiny": {"name": "tiny", "spec": str(tiny_dir)}})  # a cancel lands mid-job
    yield ex
    ex.close()


def replica(tiny, executor, root, db):
    """One server on the shared database and job root (its own Debugger and job manager)."""
    return job_client(tiny, executor, root, lines=300, share_db=db)






def raw(db):
    return create_engine(db if "://" in db else f"sqlite:///{db}")


def test_one_writer_per_job_folder_across_replicas(db_target, tiny, executor, tmp_path, monkeypatch):
    monkeypatch.setattr(training, "CHUNK_STEPS", 3)  # 30 paced chunks: still running when the cancel is read
    a, b = replica(tiny, executor, tmp_path, db_target), replica(tiny, executor, tmp_path, db_target)
    first = a.post("/api/jobs/autoencoders/train", json=TRAIN)
    assert first.status_code == 202, first.text
    jid = first.json()["id"]
    other = b.post("/api/jobs/autoencoders/train", json=TRAIN)  # the other replica: the lock is in the database
    assert other.status_code == 409 and jid in other.json()["detail"], other.text
    assert b.post(f"/api/jobs/{jid}/cancel").status_code == 200  # a cancel sent to the other replica
    assert wait(a, jid)["status"] == "cancelled"
    again = b.post("/api/jobs/autoencoders/train", json=TRAIN)  # freed: the other replica may write it now
    assert again.status_code == 202, again.text
    eng = raw(db_target)
    with eng.connect() as conn:
        ((folder, holder),) = conn.execute(text("SELECT folder, job FROM job_locks")).all()
    assert holder == again.json()["id"]
    done = wait(a, holder)
    assert done["status"] == "done", done

    # a replica that died holding the lock: its job is still 'running' but its heartbeat stops
    s = Store(db_target)
    dead = s.job_create_locked("train_autoencoders", "tiny", TRAIN, 1, 3600, folder, stale_after=60)
    s.job_update(dead, status="running")
    r = a.post("/api/jobs/autoencoders/train", json=TRAIN)
    assert r.status_code == 409 and dead in r.json()["detail"], r.text  # alive as far as anyone can tell
    with eng.begin() as conn:  # a minute without a heartbeat
        conn.execute(text("UPDATE jobs SET updated = updated - 61 WHERE id = :j"), {"j": dead})
    took = b.post("/api/jobs/autoencoders/train", json=TRAIN)
    assert took.status_code == 202, took.text
    lost = a.get(f"/api/jobs/{dead}").json()
    assert lost["status"] == "failed" and "stopped" in lost["error"], lost
    with eng.connect() as conn:
        assert conn.execute(text("SELECT job FROM job_locks")).all() == [(took.json()["id"],)]
    resumed = wait(b, took.json()["id"])  # every step was done: only the write runs again
    assert resumed["status"] == "done" and resumed["result"]["metrics"] == done["result"]["metrics"], resumed
    with eng.connect() as conn:  # a finished job frees its folder
        assert conn.execute(text("SELECT job FROM job_locks")).all() == []
    eng.dispose()
    s.close()


def test_concurrent_submissions_one_wins(db_target):
    stores = [Store(db_target), Store(db_target)]  # two replicas' connections
    won, refused, other = [], [], []

    def submit(k):
        try:
            won.append(stores[k % 2].job_create_locked("mine_explanations", "tiny", {"k": k}, 1, 60, "f1", 60))
        except UserError as e:
            refused.append((e.status, e.message))
        except Exception as e:  # noqa: BLE001 - asserted empty below
            other.append(repr(e))

    threads = [threading.Thread(target=submit, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert other == [] and len(won) == 1 and len(refused) == 7, (won, refused, other)
    assert all(status == 409 and won[0] in msg for status, msg in refused)
    stores[0].job_update(won[0], status="done")  # a finished holder's folder is free
    nxt = stores[1].job_create_locked("mine_explanations", "tiny", {}, 1, 60, "f1", 60)
    assert nxt != won[0] and stores[0].job_get(won[0])["status"] == "done"
    stores[1].job_unlock("f1", nxt)
    assert stores[0].job_create_locked("mine_explanations", "tiny", {}, 1, 60, "f1", 60)
    for s in stores:
        s.close()


def test_mined_store_is_served_without_restart(db_target, tiny, executor, tmp_path):
    a, b = replica(tiny, executor, tmp_path, db_target), replica(tiny, executor, tmp_path, db_target)
    before = b.get("/api/explanations/tiny/node/L0.H0")
    assert before.status_code == 404 and "no explanations database" in before.json()["detail"]
    jid = a.post("/api/jobs/explanations/mine", json=MINE).json()["id"]
    assert wait(a, jid)["status"] == "done"
    for who in (a, b, replica(tiny, executor, tmp_path, db_target)):  # ran it, another replica, after a restart
        r = who.get("/api/explanations/tiny/node/L0.H0")
        assert r.status_code == 200, r.text
        assert r.json()["id"] == "L0.H0" and r.json()["model"] == "tiny"


def test_db_check_reads_a_table_without_json(db_target):
    s = Store(db_target)
    s.job_create_locked("train_autoencoders", "tiny", {"a": 1}, 1, 60, "somefolder", 60)
    s.close()
    lines, ok = check(db_target)
    assert ok, lines
    assert "job_locks: 1 rows" in lines and "jobs: 1 rows" in lines, lines
