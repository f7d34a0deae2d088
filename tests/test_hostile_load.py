"""Cheap denial of service, tried against a real uvicorn on loopback (bounded in time): clients
trickling bodies hold no admission slot, bodies have a size cap and a deadline, headers have a
deadline, a 500 leaves the keep-alive connection usable, one client cannot take every slot."""

import asyncio
import http.client
import socket
import threading
import time
from contextlib import contextmanager

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from circuit_debugger.engine import Debugger
from circuit_debugger.server.app import Settings, create_app
from circuit_debugger.server.capacity import Capacity
from circuit_debugger.server.protocol import GuardedH11Protocol


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(app, **config):
    """A real uvicorn on a free loopback port (`config`: more uvicorn.Config options)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, http=GuardedH11Protocol,
                                           log_level="critical", lifespan="off", **config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(5)


def make_app(tiny, **kw):
    return create_app(Settings(models=[], serve_frontend=False, **kw), debugger=Debugger([tiny]), failed={})


def read_response(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    return data


def test_trickling_bodies_take_no_admission_slot(tiny, monkeypatch):
    """64 clients sending their bodies 1 byte / 0.2 s (the issue's attack) while the server admits
    4 requests: every ordinary request still answers 200 at once; the tricklers get 408."""
    app = make_app(tiny, max_pending=4, max_pending_per_client=4, body_timeout=2.0)
    body = b'{"model": "tiny", "text": "Mary and John went home"}'
    with serving(app) as port:
        socks, stop = [], threading.Event()
        for _ in range(64):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"POST /api/tokenize HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n" % len(body))
            socks.append(s)

        def trickle():
            for i in range(len(body)):
                if stop.is_set():
                    return
                for s in socks:
                    try:
                        s.send(body[i:i + 1])
                    except OSError:
                        pass
                time.sleep(0.2)

        t = threading.Thread(target=trickle, daemon=True)
        t.start()
        time.sleep(0.5)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
            took = []
            for _ in range(5):
                t0 = time.perf_counter()
                r = c.post("/api/tokenize", json={"model": "tiny", "text": "Mary"})
                took.append(time.perf_counter() - t0)
                assert r.status_code == 200, r.text
        assert max(took) < 1.5, took
        answers = [read_response(s, 4.0) for s in socks]
        stop.set()
        for s in socks:
            s.close()
    assert all(a.startswith(b"HTTP/1.1 408") for a in answers), {a[:40] for a in answers}
    assert all(b"connection: close" in a.lower() for a in answers)


def test_body_size_is_capped_before_reading(tiny):
    app = make_app(tiny, max_body_bytes=1024 * 1024)
    with serving(app) as port:
        s = socket.create_connection(("127.0.0.1", port))
        t0 = time.perf_counter()
        s.sendall(b"POST /api/attribute HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100000000\r\n\r\n")
        head = read_response(s, 3.0)
        s.close()
        assert head.startswith(b"HTTP/1.1 413") and time.perf_counter() - t0 < 2, head[:200]

        def chunks():  # no Content-Length: counted while read
            for _ in range(40):
                yield b" " * 65536

        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
            r = c.post("/api/attribute", content=chunks(), headers={"content-type": "application/json"})
            assert r.status_code == 413 and "1048576 bytes" in r.json()["detail"]
            assert c.post("/api/tokenize", json={"model": "tiny", "text": "Mary"}).status_code == 200


def test_headers_have_a_deadline(tiny, monkeypatch):
    monkeypatch.setenv("CD_HEADER_TIMEOUT", "0.5")
    with serving(make_app(tiny)) as port:
        idle = socket.create_connection(("127.0.0.1", port))
        slow = socket.create_connection(("127.0.0.1", port))
        slow.sendall(b"POST /api/tokenize HTTP/1.1\r\nHost: local")
        t0 = time.perf_counter()
        for s in (idle, slow):
            s.settimeout(3)
            assert s.recv(100) == b"", "the server kept a connection that sent no complete headers"
            s.close()
        assert time.perf_counter() - t0 < 2.5
        # a kept-alive connection serves requests as before
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
            assert [c.get("/api/health").status_code for _ in range(3)] == [200] * 3


def test_a_500_keeps_the_connection_usable(tiny):
    dbg = Debugger([tiny])
    real = dbg.tokenize

    def sometimes_broken(model, text, kind="prompt"):
        if text == "boom":
            raise RuntimeError("boom")
        return real(model, text, kind)

    dbg.tokenize = sometimes_broken
    app = create_app(Settings(models=[], serve_frontend=False), debugger=dbg, failed={})
    with serving(app) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("POST", "/api/tokenize", body=b'{"model": "tiny", "text": "boom"}',
                     headers={"content-type": "application/json"})
        r = conn.getresponse()
        body = r.read()
        assert r.status == 500 and b"boom" not in body
        closing = (r.getheader("connection") or "").lower() == "close"
        sock = conn.sock
        conn.request("POST", "/api/tokenize", body=b'{"model": "tiny", "text": "Mary"}',
                     headers={"content-type": "application/json"})
        r2 = conn.getresponse()
        assert r2.status == 200 and r2.read()
        assert closing or conn.sock is sock, "the server dropped the connection after the 500 without saying so"
        conn.close()


def slow_app():
    app = FastAPI()
    release = asyncio.Event()

    @app.post("/api/slow")
    async def slow():
        await release.wait()
        return {"ok": True}

    return app, release


def test_one_client_cannot_take_every_slot():
    app, release = slow_app()
    gated = Capacity(app, max_pending=10, per_client=2)

    async def main():
        a = httpx.AsyncClient(transport=httpx.ASGITransport(app=gated, client=("10.0.0.1", 1)), base_url="http://t")
        b = httpx.AsyncClient(transport=httpx.ASGITransport(app=gated, client=("10.0.0.2", 1)), base_url="http://t")
        first = [asyncio.create_task(a.post("/api/slow")) for _ in range(2)]
        while gated.pending < 2:
            await asyncio.sleep(0.01)
        third = await a.post("/api/slow")
        other = asyncio.create_task(b.post("/api/slow"))
        while gated.pending < 3:
            await asyncio.sleep(0.01)
        release.set()
        done = await asyncio.gather(*first, other)
        await a.aclose()
        await b.aclose()
        return third, done

    third, done = asyncio.run(main())
    assert third.status_code == 503 and "this client" in third.json()["detail"] and third.headers["retry-after"]
    assert [d.status_code for d in done] == [200, 200, 200] and gated.pending == 0 and not gated.by_client


def test_mcp_tool_calls_count_against_admission():
    app, release = slow_app()

    @app.post("/mcp")
    async def mcp():
        await release.wait()
        return {"jsonrpc": "2.0"}

    gated = Capacity(app, max_pending=1)

    async def main():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gated), base_url="http://t") as c:
            first = asyncio.create_task(c.post("/mcp"))
            while gated.pending < 1:
                await asyncio.sleep(0.01)
            refused = await c.post("/api/slow")
            release.set()
            return refused, await first

    refused, first = asyncio.run(main())
    assert refused.status_code == 503 and first.status_code == 200 and gated.pending == 0


def test_rate_limit_per_client_answers_429():
    app, release = slow_app()
    release.set()
    gated = Capacity(app, max_pending=10, rate_per_minute=3)

    async def main():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gated, client=("10.0.0.1", 1)),
                                     base_url="http://t") as a, \
                httpx.AsyncClient(transport=httpx.ASGITransport(app=gated, client=("10.0.0.2", 1)),
                                  base_url="http://t") as b:
            return [(await a.post("/api/slow")) for _ in range(4)], await b.post("/api/slow")

    mine, other = asyncio.run(main())
    assert [r.status_code for r in mine] == [200, 200, 200, 429] and other.status_code == 200
    assert 1 <= int(mine[-1].headers["retry-after"]) <= 21 and "3 a minute" in mine[-1].json()["detail"]
