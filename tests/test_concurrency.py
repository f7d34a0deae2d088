"""Hooks are state on a shared model: concurrent requests with different interventions must
give exactly what they give one at a time. A real server on loopback, hammered by an async
client; the expected answers come from a separate debugger with nothing cached."""

import asyncio
import socket
import threading
import time

import httpx
import pytest
import uvicorn

PROMPTS = ["When Mary and John went to the store, John gave a drink to",
           "After Tom and Anna met at the school, Tom handed a book to"]
CF = ["When Alice and Bob went to the store, Bob gave a drink to",
      "After Sam and Rose met at the school, Sam handed a book to"]


def requests(tiny):
    out = []
    ivs = [[], [{"node": "L0.H1", "op": "zero"}], [{"node": "L1.H2", "op": "patch"}],
           [{"node": "L0.N5", "op": "scale", "value": 3.0}], [{"node": "L1.MLP", "op": "zero", "positions": [4]}],
           [{"node": "L0.RESID", "op": "add", "vector": [0.1] * tiny.shape.d_model}],
           [{"node": "L0.H0", "op": "zero"}, {"node": "L1.N3", "op": "scale", "value": -1.0}]]
    for i, iv in enumerate(ivs):
        for j, (p, cf) in enumerate(zip(PROMPTS, CF)):
            target, distractor = (" Mary", " John") if j == 0 else (" Anna", " Tom")
            if any(x["op"] == "patch" for x in iv) and len(tiny.tokenize(cf)) != len(tiny.tokenize(p)):
                continue
            body = {"model": "tiny", "prompt": p, "target": target, "distractor": distractor, "interventions": iv,
                    "counterfactual_prompt": cf, "top_k": 30, "verify_top": 2 if i % 2 else 0}
            out.append(("/api/attribute", body))
            out.append(("/api/intervene", {k: body[k] for k in ("model", "prompt", "target", "distractor",
                                                                  "interventions", "counterfactual_prompt")}))
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny):
    from circuit_debugger.engine import Debugger
    from circuit_debugger.server.app import Settings, create_app

    port = free_port()
    app = create_app(Settings(models=[]), debugger=Debugger([tiny], cache_size=4))
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    th.join(10)


def test_concurrent_requests_equal_sequential(server, tiny):
    from circuit_debugger.engine import Debugger
    from circuit_debugger.server.app import Settings, create_app
    from fastapi.testclient import TestClient

    reqs = requests(tiny) * 3  # repeats hit the cache under concurrency too

    async def hammer():
        async with httpx.AsyncClient(base_url=server, timeout=120) as c:
            sem = asyncio.Semaphore(16)

            async def one(route, body):
                async with sem:
                    return (await c.post(route, json=body))

            return await asyncio.gather(*[one(r, b) for r, b in reqs])

    got = asyncio.run(hammer())
    assert all(r.status_code == 200 for r in got), [r.text for r in got if r.status_code != 200][:2]
    alone = TestClient(create_app(Settings(models=[]), debugger=Debugger([tiny], cache_size=1)))
    for (route, body), r in zip(reqs, got):
        want = alone.post(route, json=body).json()
        g = r.json()
        for d in (g, want):
            d.pop("elapsed_ms", None)
        assert g == want, (route, body["interventions"])
