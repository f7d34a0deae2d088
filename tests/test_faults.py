"""Faults: a failing or out-of-memory request leaves the server healthy with no hooks left
behind; overload gets a 503 at once; shares whose creation succeeded survive SIGKILL."""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient

import circuit_debugger.execution as engine_module  # where every run compiles its hooks
from circuit_debugger.engine import Debugger
from circuit_debugger.server.app import Settings, create_app
from circuit_debugger.server.capacity import Capacity

PROMPT = "When Mary and John went to the store, John gave a drink to"
BODY = {"model": "tiny", "prompt": PROMPT, "target": " Mary", "distractor": " John", "top_k": 10,
        "interventions": [{"node": "L1.H0", "op": "zero"}]}


def n_hooks(m) -> int:
    return sum(len(hp.fwd_hooks) + len(hp.bwd_hooks) for hp in m.hook_points.values())


@pytest.mark.parametrize("error, status, words", [
    (RuntimeError("boom in a hook"), 500, "request id"),  # a 500 carries an id, never the exception's text
    (torch.OutOfMemoryError("CUDA out of memory"), 503, "out of memory"),
])
def test_a_failing_request_leaves_the_server_healthy(tiny, monkeypatch, error, status, words):
    dbg = Debugger([tiny])
    client = TestClient(create_app(Settings(models=[], serve_frontend=False), debugger=dbg, failed={}),
                        raise_server_exceptions=False)
    before = n_hooks(tiny)
    real = engine_module.build_hooks

    def failing(*args, **kwargs):
        def boom(x, hook=None):
            raise error
        return real(*args, **kwargs) + [("blocks.1.hook_resid_pre", boom)]

    monkeypatch.setattr(engine_module, "build_hooks", failing)
    r = client.post("/api/intervene", json={k: v for k, v in BODY.items() if k != "top_k"})
    assert r.status_code == status and words in r.json()["detail"] and "boom" not in r.text, r.text
    assert n_hooks(tiny) == before, "hooks leaked from the failed request"
    monkeypatch.setattr(engine_module, "build_hooks", real)
    assert client.get("/api/health").status_code == 200
    after = client.post("/api/attribute", json=BODY).json()
    fresh = Debugger([tiny]).attribute("tiny", PROMPT, " Mary", " John", top_k=10,
                                       interventions=[{"node": "L1.H0", "op": "zero"}])
    assert after["logit_diff"] == fresh["logit_diff"]
    assert [(n["id"], n["total_effect"]) for n in after["nodes"]] == [(n["id"], n["total_effect"]) for n in fresh["nodes"]]


def test_overload_gets_503_at_once_and_cheap_routes_still_answer():
    app = FastAPI()
    release = asyncio.Event()

    @app.post("/api/slow")
    async def slow():
        await release.wait()
        return {"ok": True}

    @app.get("/api/health")
    async def health():
        return {"status": "ok"}

    gated = Capacity(app, max_pending=2)

    async def main():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gated), base_url="http://t") as c:
            first = [asyncio.create_task(c.post("/api/slow")) for _ in range(2)]
            while gated.pending < 2:
                await asyncio.sleep(0.01)
            t0 = time.perf_counter()
            refused = await c.post("/api/slow")
            waited = time.perf_counter() - t0
            healthy = await c.get("/api/health")
            release.set()
            done = await asyncio.gather(*first)
            return refused, waited, healthy, done

    refused, waited, healthy, done = asyncio.run(main())
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1" and "busy" in refused.json()["detail"]
    assert waited < 1.0 and healthy.status_code == 200
    assert [d.status_code for d in done] == [200, 200] and gated.pending == 0


SERVER = """
import sys, uvicorn
from circuit_debugger.engine import Debugger
from circuit_debugger.server.app import Settings, create_app
app = create_app(Settings(models=[], share_db=sys.argv[1], serve_frontend=False), debugger=Debugger(), failed={})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(db, port) -> subprocess.Popen:
    backend = str(Path(__file__).resolve().parents[1] / "backend")  # this checkout's package, not an installed one
    p = subprocess.Popen([sys.executable, "-c", SERVER, str(db), str(port)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": backend})
    for _ in range(200):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200:
                return p
        except httpx.HTTPError:
            time.sleep(0.05)
    p.kill()
    raise RuntimeError("server did not start")


def test_shares_survive_sigkill_during_a_burst(tmp_path):
    db, port = tmp_path / "shares.sqlite", free_port()
    server = start(db, port)
    created: list = []  # (id, state) of every creation that returned success
    errors = []
    stop = threading.Event()

    def client(k):
        i = 0
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
            while not stop.is_set():
                state = {"v": 1, "prompt": f"client {k} share {i}", "target": " Mary",
                         "interventions": [{"node": f"L0.H{i % 4}", "op": "zero", "enabled": True}]}
                try:
                    r = c.post("/api/shares", json={"state": state})
                except httpx.HTTPError as e:
                    errors.append(type(e).__name__)
                    if server.poll() is not None:
                        return
                    continue
                if r.status_code == 201:
                    created.append((r.json()["id"], r.json()["state"]))
                    assert r.json()["state"]["prompt"] == state["prompt"]
                i += 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    while len(created) < 40:
        time.sleep(0.01)
    os.kill(server.pid, signal.SIGKILL)  # mid-burst: clients are still sending
    server.wait()
    time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join()
    assert errors, "the kill should have cut requests off mid-burst"

    server = start(db, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
            for sid, state in created:
                r = c.get(f"/api/shares/{sid}")
                assert r.status_code == 200, sid
                assert r.json()["state"] == state
    finally:
        server.kill()
        server.wait()
