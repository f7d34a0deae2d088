"""Replicas share the storage: two server processes on one database (SQLite file, or a real
PostgreSQL server as in docker-compose); kill -9 of one during a share burst loses nothing
that was acknowledged: every share either replica answered 201 for opens from the survivor."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from test_faults import SERVER, free_port

BACKEND = str(Path(__file__).resolve().parents[1] / "backend")


def start_replicas(db: str, ports: list) -> list:
    """Server processes on one database, started together (each imports torch: ~5-15 s)."""
    procs = [subprocess.Popen([sys.executable, "-c", SERVER, db, str(p)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": BACKEND}) for p in ports]
    for port in ports:
        for _ in range(1200):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        else:
            for p in procs:
                p.kill()
            raise RuntimeError("a replica did not start")
    return procs


def test_a_killed_replica_loses_no_acknowledged_write(db_target):
    ports = [free_port(), free_port()]
    servers = start_replicas(db_target, ports)
    created, errors, stop = [], [], threading.Event()

    def client(k):
        i = 0
        port = ports[k % 2]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
            while not stop.is_set():
                state = {"v": 1, "prompt": f"client {k} share {i}", "target": " Mary"}
                try:
                    r = c.post("/api/shares", json={"state": state})
                except httpx.HTTPError as e:
                    errors.append(type(e).__name__)
                    if k % 2 == 0:
                        return  # its replica is gone
                    continue
                if r.status_code == 201:
                    created.append((r.json()["id"], state["prompt"], port))
                else:
                    errors.append(r.status_code)
                i += 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    try:
        while sum(1 for x in created if x[2] == ports[0]) < 30:
            time.sleep(0.01)
        os.kill(servers[0].pid, signal.SIGKILL)  # mid-burst
        servers[0].wait()
        n = len(created)
        while len(created) < n + 20:  # the survivor keeps acknowledging writes
            time.sleep(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors and all(isinstance(e, str) for e in errors), errors  # cut connections, never a 5xx
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{ports[1]}", timeout=5) as c:
            for sid, prompt, _ in created:
                r = c.get(f"/api/shares/{sid}")
                assert r.status_code == 200 and r.json()["state"]["prompt"] == prompt, (sid, r.status_code)
        assert {p for _, _, p in created} == set(ports)
    finally:
        servers[1].kill()
        servers[1].wait()
