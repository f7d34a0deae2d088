"""Uvicorn's h11 protocol with a deadline for request headers.

Uvicorn (0.54) times out idle keep-alive connections but not a connection that has not yet sent
its request line and headers: a client trickling header bytes (or sending nothing after
connecting) holds a connection forever. Here every connection, and every new request on a
kept-alive one, must deliver its complete headers within `CD_HEADER_TIMEOUT` seconds
(environment, so `serve --workers N` processes inherit it; default 10) or is closed.
The body has its own deadline (`guard.Bodies`).

It also sets TCP_NODELAY on every connection. asyncio sets it only on sockets created with
`proto=IPPROTO_TCP`; `serve --workers N` hands uvicorn's workers a socket it bound itself with
proto 0, so without this every keep-alive response after the first waited for the client's
delayed ACK (Nagle): ~40 ms per request on Linux loopback.
"""

from __future__ import annotations

import os
import socket

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


def set_nodelay(transport) -> None:
    """Send small responses at once (no Nagle wait for the peer's delayed ACK)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # a socket that refuses the option still works, only slower
            pass


def header_timeout() -> float:
    return float(os.environ.get("CD_HEADER_TIMEOUT") or 10)


class GuardedH11Protocol(H11Protocol):
    _header_timer = None

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(header_timeout(), self._header_deadline)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_deadline(self) -> None:
        self._header_timer = None
        # still waiting for (the rest of) a request's headers: no request cycle is running
        if self.conn.their_state is h11.IDLE and (self.cycle is None or self.cycle.response_complete):
            self.transport.close()

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        set_nodelay(transport)
        self._arm_header_timer()

    def connection_lost(self, exc) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:  # the headers are in
            self._disarm_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_timer()  # the next request on this connection gets its own deadline
