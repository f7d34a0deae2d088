"""Load test: concurrent clients with a realistic mix against a real server on loopback.

    .venv/bin/python benchmarks/load_test.py [--clients 16] [--duration 60] [--single 20] [--think 0] [--seed 0]
                                             [--workers 1]

1. starts `circuit-debugger serve` (default model; --workers N server processes sharing one
   SQLite database) from this checkout on a free loopback port;
2. one client alone, back to back, for --single seconds: the single-client latencies;
3. --clients clients for --duration seconds, each drawing from the same mix: attribute with
   and without interventions (some on fresh prompts nobody asked before), traces, node
   details (activations, attention, logit lens, explanations), share create and open;
   with --think S each client pauses a random exponential time of mean S seconds between
   requests (people reading the answer); 0 = back to back (a stress test);
4. a second, fresh server answers every distinct request alone, and each response under load
   must be identical to it (timings and share ids aside).
Prints p50/p95 latency, throughput, errors, mismatches and p95(load) / p95(single); exits 1 on
any error or mismatch. Everything stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))
from circuit_debugger.server.schemas import InvestigationState  # noqa: E402
NAMES = ["Mary", "John", "Alice", "Tom", "Sarah", "James", "Anna", "Peter", "Lucy", "Mark", "Emma", "Adam"]
PLACES = ["store", "park", "school", "office", "farm", "station"]
OBJECTS = ["drink", "book", "ball", "gift"]
VOLATILE = {"elapsed_ms", "id", "created"}


def ioi(rng: random.Random) -> tuple[str, str, str]:
    a, b = rng.sample(NAMES, 2)
    return (f"When {a} and {b} went to the {rng.choice(PLACES)}, {b} gave a {rng.choice(OBJECTS)} to", f" {a}", f" {b}")


def make_mix(seed: int):
    """A callable drawing one (method, path, body) per call; a fixed pool of popular prompts
    plus fresh ones, as many users looking at shared investigations and a few typing new ones."""
    pool_rng = random.Random(seed)
    pool = [ioi(pool_rng) for _ in range(8)]
    ivs = [[{"node": "L1.H3", "op": "zero"}], [{"node": "L1.H0", "op": "mean"}],
           [{"node": "L0.H0", "op": "scale", "value": 0.5}], [{"node": "L2.N331", "op": "zero"}]]

    def draw(rng: random.Random):
        p, a, b = ioi(rng) if rng.random() < 0.15 else rng.choice(pool)
        kind = rng.choices(["attr", "attr_iv", "trace", "detail", "share"], [30, 25, 10, 25, 10])[0]
        if kind == "attr":
            return "POST", "/api/attribute", {"prompt": p, "target": a, "distractor": b}
        if kind == "attr_iv":
            return "POST", "/api/attribute", {"prompt": p, "target": a, "distractor": b, "interventions": rng.choice(ivs)}
        if kind == "trace":
            return "POST", "/api/trace", {"prompt": p, "target": {"kind": "attention", "node": "L1.H3", "key": 10,
                                                                   "through": rng.choice(["query", "key"])}}
        if kind == "detail":
            node = rng.choice(["L1.H3", "L1.H0", "L0.N5", "L2.N331"])
            which = rng.choice(["activations", "attention", "lens", "explanation"])
            if which == "activations" or (which == "attention" and ".N" in node):
                return "POST", "/api/activations", {"prompt": p, "node": node}
            if which == "attention":
                return "POST", "/api/attention", {"prompt": p, "layer": int(node[1]), "head": int(node.split("H")[1])}
            if which == "lens":
                return "POST", "/api/logit-lens", {"node": node, "prompt": p}
            return "GET", f"/api/explanations/default/node/{node}", None
        state = {"v": 1, "prompt": p, "target": a, "distractor": b, "interventions": [{**rng.choice(ivs)[0], "enabled": True}]}
        return "POST", "/api/shares", {"state": state}

    return draw


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, db: str, workers: int = 1) -> subprocess.Popen:
    import os

    env = {**os.environ, "PYTHONPATH": str(ROOT / "backend")}  # this checkout's package, not an installed one
    p = subprocess.Popen([sys.executable, "-m", "circuit_debugger.cli", "serve", "--host", "127.0.0.1", "--port",
                          str(port), "--database", db, "--workers", str(workers)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200:
                return p
        except httpx.HTTPError:
            time.sleep(0.1)
    p.kill()
    raise SystemExit("server did not start")


def stop(p: subprocess.Popen) -> None:
    """Kill the server and, with --workers, its worker processes (one process group)."""
    import os
    import signal

    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait()


def strip(x):
    if isinstance(x, dict):
        return {k: strip(v) for k, v in x.items() if k not in VOLATILE}
    if isinstance(x, list):
        return [strip(v) for v in x]
    return x


async def run_clients(base: str, n: int, seconds: float, draw, seed: int, log: list, think: float = 0.0):
    deadline = time.perf_counter() + seconds

    async def one(k: int):
        rng = random.Random(seed * 1000 + k)
        async with httpx.AsyncClient(base_url=base, timeout=120) as c:
            while time.perf_counter() < deadline:
                method, path, body = draw(rng)
                t0 = time.perf_counter()
                try:
                    r = await c.request(method, path, json=body)
                    status, data = r.status_code, r.json()
                except (httpx.HTTPError, ValueError) as e:
                    status, data = 0, {"detail": repr(e)}
                log.append((method, path, body, status, time.perf_counter() - t0, data))
                if think:
                    await asyncio.sleep(min(rng.expovariate(1 / think), 10 * think))
                if path == "/api/shares" and status == 201:
                    t0 = time.perf_counter()
                    r = await c.get(f"/api/shares/{data['id']}")
                    log.append(("GET", "/api/shares/{id}", body, r.status_code, time.perf_counter() - t0, r.json()))

    await asyncio.gather(*(one(k) for k in range(n)))


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000 if xs else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--single", type=float, default=20)
    ap.add_argument("--think", type=float, default=0.0, help="mean pause between a client's requests (s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1, help="server processes (serve --workers) under test")
    a = ap.parse_args()
    draw = make_mix(a.seed)
    tmp = tempfile.mkdtemp(prefix="cd-load-")
    port = free_port()
    server = start_server(port, f"{tmp}/load.sqlite", a.workers)
    base = f"http://127.0.0.1:{port}"
    try:
        single: list = []
        asyncio.run(run_clients(base, 1, a.single, draw, a.seed + 1, single))  # back to back: the service time
        load: list = []
        t0 = time.perf_counter()
        asyncio.run(run_clients(base, a.clients, a.duration, draw, a.seed + 2, load, a.think))
        wall = time.perf_counter() - t0
    finally:
        stop(server)

    # every distinct request, asked alone of a fresh server, must give the same answer
    port2 = free_port()
    ref_server = start_server(port2, f"{tmp}/ref.sqlite")
    mismatches, compared = [], 0
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port2}", timeout=120) as c:
            alone: dict = {}
            for method, path, body, status, _, data in single + load:
                if path.startswith("/api/shares"):  # shares: the stored state must be what was sent, defaults filled
                    if status in (200, 201) and data["state"] != InvestigationState(**body["state"]).model_dump(mode="json"):
                        mismatches.append((path, body))
                    compared += status in (200, 201)
                    continue
                key = json.dumps([method, path, body], sort_keys=True)
                if key not in alone:
                    r = c.request(method, path, json=body)
                    alone[key] = (r.status_code, strip(r.json()))
                compared += 1
                if alone[key] != (status, strip(data)):
                    mismatches.append((path, body))
    finally:
        stop(ref_server)

    errors = [(p, s, d.get("detail")) for _, p, _, s, _, d in single + load if s not in (200, 201)]
    lat1 = [x[4] for x in single]
    latn = [x[4] for x in load]
    fresh = len({json.dumps(x[2], sort_keys=True) for x in load})
    print(f"single client: {len(single)} requests in {a.single:.0f} s, p50 {pct(lat1, .5):.1f} ms, p95 {pct(lat1, .95):.1f} ms")
    print(f"server processes: {a.workers}")
    print(f"{a.clients} clients (think {a.think} s): {len(load)} requests in {wall:.1f} s = {len(load) / wall:.1f} req/s, "
          f"p50 {pct(latn, .5):.1f} ms, p95 {pct(latn, .95):.1f} ms, p99 {pct(latn, .99):.1f} ms ({fresh} distinct requests)")
    print(f"p95(load) / p95(single) = {pct(latn, .95) / pct(lat1, .95):.2f}   (goal <= 3 with 16 clients on 2 workers)")
    by_route: dict = {}
    for _, p, _, _, dt, _ in load:
        by_route.setdefault(p if not p.startswith("/api/explanations") else "/api/explanations/...", []).append(dt)
    for p, xs in sorted(by_route.items()):
        print(f"  {p:28s} n={len(xs):5d}  p50 {pct(xs, .5):7.1f} ms  p95 {pct(xs, .95):7.1f} ms")
    print(f"errors: {len(errors)}   responses compared with the same request alone: {compared}, mismatches: {len(mismatches)}")
    for e in errors[:5]:
        print("  error:", e)
    for m in mismatches[:5]:
        print("  mismatch:", m)
    sys.exit(1 if errors or mismatches else 0)


if __name__ == "__main__":
    main()
