"""Explanation mining as a job: progress in miner batches, cancel part-way, submit again, and
the mining resumes from its checkpoint to the same final state (checkpoint tensors and every
row of the explanation store but its timestamps) as one uninterrupted run; the corpus and the
output folder are the server's, never a client's path."""

import sqlite3

import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import load_file

from circuit_debugger.engine import Debugger
from circuit_debugger.jobs import LocalExecutor, mining
from circuit_debugger.server.app import Settings, create_app
from helpers import job_client, wait_job as wait

REQ = {"model": "tiny", "corpus": "c.txt", "tokens": 800, "ctx": 8, "seed": 5}


@pytest.fixture(scope="module")
def executor(tiny_dir):
    ex = LocalExecutor({"tiny": {"name": "tiny", "spec": str(tiny_dir)}}, n=1)
    yield ex
    ex.close()


def client(tiny, executor, root):
    return job_client(tiny, executor, root, lines=600)






def final_state(root):
    (folder,) = (root / "jobs").iterdir()
    ckpt = mining.latest(folder)
    db = sqlite3.connect(folder / "explanations.sqlite")
    tables = {}
    for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall():
        cols = [c[1] for c in db.execute(f"PRAGMA table_info({t})") if c[1] != "created"]  # a timestamp
        if t != "meta":
            tables[t] = sorted(map(repr, db.execute(f"SELECT {', '.join(cols)} FROM {t}")))
    return load_file(str(ckpt / "state.safetensors")), tables


def test_cancelled_mining_resumes_to_the_same_state(tiny, executor, tmp_path, monkeypatch):
    monkeypatch.setattr(mining, "CHUNK_BATCHES", 1)
    a = client(tiny, executor, tmp_path / "a")
    ref = wait(a, a.post("/api/jobs/explanations/mine", json=REQ).json()["id"])
    assert ref["status"] == "done", ref
    assert ref["done"] == ref["total"] > 3 and ref["result"]["explained"] > 0

    b = client(tiny, executor, tmp_path / "b")
    jid = b.post("/api/jobs/explanations/mine", json=REQ).json()["id"]
    twice = b.post("/api/jobs/explanations/mine", json=REQ)  # one writer per job folder
    assert twice.status_code == 409 and jid in twice.json()["detail"], twice.text
    wait(b, jid, until=("running",), cond=lambda j: j["done"] >= 2)
    b.post(f"/api/jobs/{jid}/cancel")
    cut = wait(b, jid)
    assert cut["status"] == "cancelled" and 2 <= cut["done"] < cut["total"], cut
    again = b.post("/api/jobs/explanations/mine", json=REQ).json()
    assert again["id"] != jid
    seen = wait(b, again["id"], until=("running", "done"), cond=lambda j: j["done"] > 0)
    assert seen["done"] >= cut["done"]  # continued from the checkpoint, not from zero
    done = wait(b, again["id"])
    assert done["status"] == "done", done
    assert {k: v for k, v in done["result"].items() if k not in ("bytes", "store")} == \
        {k: v for k, v in ref["result"].items() if k not in ("bytes", "store")}

    (sa, ta), (sb, tb) = final_state(tmp_path / "a"), final_state(tmp_path / "b")
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert ta == tb and sum(map(len, ta.values())) > 0


def test_paths_are_the_servers(tiny, executor, tmp_path):
    c = client(tiny, executor, tmp_path)
    for bad in ("../c.txt", "/etc/passwd", "corpora/c.txt", "missing.txt"):
        r = c.post("/api/jobs/explanations/mine", json={**REQ, "corpus": bad})
        assert r.status_code == 422 and "corpora folder" in r.json()["detail"], (bad, r.text)
    assert c.post("/api/jobs/explanations/mine", json={**REQ, "out": "/tmp/x"}).status_code == 422
    off = TestClient(create_app(Settings(models=[], serve_frontend=False, job_executor=executor),
                                debugger=Debugger([tiny]), failed={}), raise_server_exceptions=False)
    assert off.post("/api/jobs/explanations/mine", json=REQ).status_code == 409
