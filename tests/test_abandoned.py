"""An abandoned long request stops: a client that leaves a circuit evaluation no longer holds
the model (a new attribution is answered at once), and every such request has a server-side
time limit (503 naming it). Real server on loopback, tiny model."""

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from test_faults import free_port

BACKEND = str(Path(__file__).resolve().parents[1] / "backend")
SERVER = """
import sys, uvicorn
from circuit_debugger.engine import Debugger
from circuit_debugger.loading import load_model
from circuit_debugger.server.app import Settings, create_app
dbg = Debugger([load_model(sys.argv[1], name="tiny")])
app = create_app(Settings(models=[], serve_frontend=False, request_time_limit=float(sys.argv[3])), debugger=dbg, failed={})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""
TEMPLATE = {"templates": ["When {IO} and {S} went to the {P}, {S} gave a drink to"],
            "values": {"IO": ["Mary", "John"], "S": ["Mary", "John"], "P": ["store", "park"]},
            "target": " {IO}", "distractor": " {S}"}
LONG = {"model": "tiny", "promptset": {"template": TEMPLATE, "n": 300}, "nodes": [f"L{l}.N{i}" for l in (0, 1) for i in range(8)],
        "n_random": 100, "greedy_steps": 10}


def test_an_abandoned_evaluation_frees_the_model_and_requests_have_a_time_limit(tiny_dir):
    port, limit = free_port(), 4.0
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(tiny_dir), str(port), str(limit)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": BACKEND})
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(1200):
            try:
                if httpx.get(f"{base}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        # the time limit: the evaluation is stopped, the answer names the limit (this also shows it runs > 4 s)
        t0 = time.perf_counter()
        r = httpx.post(f"{base}/api/circuit/evaluate", json=LONG, timeout=60)
        took = time.perf_counter() - t0
        assert r.status_code == 503 and "time limit for a request (4 s)" in r.json()["detail"], r.text
        assert took < limit + 10, took
        # abandoned after 1 s: the model is free again well before the evaluation's 4 s would be up
        try:
            httpx.post(f"{base}/api/circuit/evaluate", json=LONG, timeout=1.0)
            raise AssertionError("the evaluation should still be running after 1 s")
        except httpx.ReadTimeout:
            pass
        t0 = time.perf_counter()
        a = httpx.post(f"{base}/api/attribute", timeout=30, json={
            "model": "tiny", "prompt": "When John and Mary went to the park, Mary gave a ball to",
            "target": " John", "distractor": " Mary", "top_k": 5})
        waited = time.perf_counter() - t0
        assert a.status_code == 200 and waited < 2.5, waited  # not queued behind the abandoned evaluation
    finally:
        server.kill()
        server.wait()
