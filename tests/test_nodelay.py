"""`serve --workers N` gives uvicorn's workers a socket bound with proto 0, on which asyncio
never sets TCP_NODELAY: keep-alive responses then wait ~40 ms for the client's delayed ACK.
The server's protocol sets it on every connection; checked here on the server side of a
connection accepted from exactly such a socket (uvicorn's `Config.bind_socket`)."""

import socket
import threading
import time

import httpx
import uvicorn
from fastapi import FastAPI

from circuit_debugger.server.protocol import GuardedH11Protocol


def test_connections_from_a_proto0_socket_get_nodelay():
    seen = []

    class Recording(GuardedH11Protocol):
        def connection_made(self, transport):
            super().connection_made(transport)
            sock = transport.get_extra_info("socket")  # read now: the socket closes with the connection
            seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    app = FastAPI()
    app.get("/ping")(lambda: {"ok": True})
    config = uvicorn.Config(app, host="127.0.0.1", port=0, http=Recording, log_level="critical", lifespan="off")
    sock = config.bind_socket()  # what `uvicorn.run(..., workers=N)` shares with its worker processes
    assert sock.proto == 0 and sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        port = sock.getsockname()[1]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
            for _ in range(3):  # one keep-alive connection
                assert c.get("/ping").json() == {"ok": True}
        assert len(seen) == 1 and seen[0] != 0
    finally:
        server.should_exit = True
        thread.join(5)
