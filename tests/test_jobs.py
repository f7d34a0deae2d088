"""Long work as jobs on local worker processes: submit, poll, cancel, time limit; results stored
(readable from another server on the same database) and equal, number for number, to the
immediate routes, also when a worker was SIGKILLed mid-piece (the piece is run again);
interactive requests do not wait."""

import os
import signal
import time

import pytest
from fastapi.testclient import TestClient

from circuit_debugger.engine import Debugger
from circuit_debugger.jobs import LocalExecutor
from circuit_debugger.server.app import Settings, create_app

TEMPLATE = {"templates": ["When {IO} and {S} went to the {P}, {S} gave a drink to",
                          "After {IO} and {S} met at the {P}, {S} handed a book to"],
            "values": {"IO": ["Mary", "John"], "S": ["Mary", "John"], "P": ["store", "park"]},
            "target": " {IO}", "distractor": " {S}"}
SET = {"template": TEMPLATE, "n": 24, "seed": 3}
# a circuit evaluation long enough (many rows, nodes and subsets) to be still running seconds
# after it starts, even on a quiet machine: the tests that cancel it or ask something meanwhile
LONG = {"model": "tiny", "promptset": {**SET, "n": 480}, "nodes": ["L1.H0", "L1.H1", "L0.H0", "L0.H1"],
        "n_random": 100, "greedy_steps": 10}


@pytest.fixture(scope="module")
def executor(tiny_dir):
    ex = LocalExecutor({"tiny": {"name": "tiny", "spec": str(tiny_dir)}}, n=2)
    yield ex
    ex.close()


def make_client(tiny, executor, db, **kw) -> TestClient:
    settings = Settings(models=[], serve_frontend=False, share_db=str(db), job_executor=executor, **kw)
    return TestClient(create_app(settings, debugger=Debugger([tiny]), failed={}), raise_server_exceptions=False)


def wait(c: TestClient, jid: str, until=("done", "failed", "cancelled"), timeout: float = 120) -> dict:
    t0 = time.time()
    while time.time() - t0 < timeout:
        j = c.get(f"/api/jobs/{jid}").json()
        if j["status"] in until:
            return j
        time.sleep(0.05)
    raise AssertionError(f"job {jid} still {j['status']} after {timeout} s")


def timeless(x):
    """A response without its timings (the only fields that may differ between two runs)."""
    if isinstance(x, dict):
        return {k: timeless(v) for k, v in x.items() if k != "elapsed_ms"}
    if isinstance(x, list):
        return [timeless(v) for v in x]
    return x


def same(a: dict, b: dict) -> None:
    assert timeless(a) == timeless(b)


def test_dataset_attribution_job_equals_the_immediate_route_exactly_despite_a_killed_worker(tiny, executor, tmp_path):
    c = make_client(tiny, executor, tmp_path / "db.sqlite", batch_size=5)
    body = {"model": "tiny", "promptset": SET, "top_k": 20, "drill": 5}
    r = c.post("/api/jobs/dataset/attribute", json=body)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] in ("queued", "running") and job["total"] >= 5  # 24 rows in pieces of <= 5
    while len(executor.pids()) < 2:  # fresh workers: one is killed while it loads the model for its first piece
        time.sleep(0.02)
    time.sleep(0.3)
    os.kill(executor.pids()[0], signal.SIGKILL)
    done = wait(c, job["id"])
    assert done["status"] == "done" and done["done"] == done["total"] and done["error"] is None, done
    assert executor.retries >= 1  # the killed worker's piece ran again on a fresh worker
    same(done["result"], c.post("/api/dataset/attribute", json=body).json())
    # the result is stored: another server on the same database reads it
    other = make_client(tiny, executor, tmp_path / "db.sqlite")
    assert other.get(f"/api/jobs/{job['id']}").json()["result"] == done["result"]


def test_ablation_and_circuit_jobs_equal_the_immediate_routes(tiny, executor, tmp_path):
    c = make_client(tiny, executor, tmp_path / "db.sqlite")
    ab = {"model": "tiny", "promptset": SET, "nodes": ["L1.H0", "L0.H1@S2"], "ablation": "mean"}
    ci = {**ab, "n_random": 3, "greedy_steps": 1}
    ja = c.post("/api/jobs/dataset/ablate", json=ab).json()
    jc = c.post("/api/jobs/circuit/evaluate", json=ci).json()
    same(wait(c, ja["id"])["result"], c.post("/api/dataset/ablate", json=ab).json())
    same(wait(c, jc["id"])["result"], c.post("/api/circuit/evaluate", json=ci).json())


def test_bad_jobs_are_refused_at_submission(tiny, executor, tmp_path):
    c = make_client(tiny, executor, tmp_path / "db.sqlite")
    r = c.post("/api/jobs/dataset/ablate", json={"model": "tiny", "promptset": SET, "nodes": ["L9.H0"]})
    assert r.status_code == 422 and "out of range" in r.json()["detail"]
    r = c.post("/api/jobs/dataset/attribute", json={"model": "nope", "promptset": SET})
    assert r.status_code in (404, 422) and "nope" in r.json()["detail"]
    assert c.get("/api/jobs/not-a-job").status_code == 404
    assert c.post("/api/jobs/not-a-job/cancel").status_code == 404


def test_cancel_and_time_limit_stop_a_running_job(tiny, tmp_path):
    ex = LocalExecutor({"tiny": {"name": "tiny", "spec": str(tiny.source)}}, n=1)
    try:
        c = make_client(tiny, ex, tmp_path / "db.sqlite")
        body = LONG
        jid = c.post("/api/jobs/circuit/evaluate", json=body).json()["id"]
        wait(c, jid, until=("running",))
        t0 = time.time()
        assert c.post(f"/api/jobs/{jid}/cancel").json()["cancel"] is True
        j = wait(c, jid, timeout=10)
        assert j["status"] == "cancelled" and j["result"] is None and time.time() - t0 < 5, j
        assert ex.pids() == []  # the worker running it was stopped, not left computing
        # a finished job cannot be cancelled into another state
        assert c.post(f"/api/jobs/{jid}/cancel").json()["status"] == "cancelled"
        limited = make_client(tiny, ex, tmp_path / "db.sqlite", job_time_limit=0.5)
        jid = limited.post("/api/jobs/circuit/evaluate", json=body).json()["id"]
        j = wait(limited, jid, timeout=20)
        assert j["status"] == "failed" and "time limit (0.5 s)" in j["error"], j
    finally:
        ex.close()


def test_interactive_requests_do_not_wait_for_a_job(tiny, executor, tmp_path):
    c = make_client(tiny, executor, tmp_path / "db.sqlite")
    body = LONG
    jid = c.post("/api/jobs/circuit/evaluate", json=body).json()["id"]
    wait(c, jid, until=("running",))
    r = c.post("/api/attribute", json={"model": "tiny", "prompt": "When Mary and John went to the store, John gave",
                                       "target": " Mary", "distractor": " John", "top_k": 5})
    assert r.status_code == 200
    assert c.get(f"/api/jobs/{jid}").json()["status"] == "running"  # answered while the job still ran
    c.post(f"/api/jobs/{jid}/cancel")
    wait(c, jid)


def test_a_job_whose_replica_died_is_reported_failed(tmp_path):
    from circuit_debugger.jobs import JobManager
    from circuit_debugger.jobs.manager import LOST_AFTER_S
    from circuit_debugger.storage import Store

    store = Store(str(tmp_path / "db.sqlite"))
    jid = store.job_create("circuit_evaluate", "tiny", {}, total=1, time_limit=3600)
    store.job_update(jid, status="running")
    other_replica = JobManager(store, Debugger(), executor=None)
    assert other_replica.get(jid)["status"] == "running"  # a fresh heartbeat: still someone's job
    from sqlalchemy import update

    from circuit_debugger.storage.tables import jobs

    with store.engine.begin() as conn:  # its coordinator's last heartbeat, long ago
        conn.execute(update(jobs).where(jobs.c.id == jid).values(updated=time.time() - LOST_AFTER_S - 1))
    j = other_replica.get(jid)
    assert j["status"] == "failed" and "stopped" in j["error"]
