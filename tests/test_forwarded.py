"""`serve --forwarded-allow-ips`: behind a reverse proxy, per-client limits count the client the
proxy names in X-Forwarded-For, and only when the proxy is the trusted address; a spoofed
header from anyone else (loopback included, which uvicorn's own default would trust) is
ignored. Real uvicorn, built with the options `serve` passes it; loopback only (127.0.0.2
plays the proxy)."""

import httpx
import pytest

from circuit_debugger.cli import parser
from circuit_debugger.server.cli_security import proxy_options
from test_hostile_load import make_app, serving

BODY = {"model": "tiny", "text": "Mary and John"}


def options(*flags: str) -> dict:
    ap = parser()
    return proxy_options(ap, ap.parse_args(["serve", *flags]))


def statuses(port: int, source: str, forwarded: list[str]) -> list[int]:
    """One POST per X-Forwarded-For value, each on a new connection from `source`."""
    out = []
    for xff in forwarded:
        transport = httpx.HTTPTransport(local_address=source)
        with httpx.Client(transport=transport, base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            out.append(c.post("/api/tokenize", json=BODY, headers={"X-Forwarded-For": xff}).status_code)
    return out


def test_only_the_trusted_proxy_names_the_client(tiny):
    app = make_app(tiny, rate_limit=2)  # 2 requests a minute per client: the third is 429
    with serving(app, **options("--forwarded-allow-ips", "127.0.0.2")) as port:
        # an untrusted peer cannot pose as three clients: it is one, limited as one
        assert statuses(port, "127.0.0.1", ["203.0.113.1", "203.0.113.2", "203.0.113.3"]) == [200, 200, 429]
        # through the trusted proxy each client has its own allowance
        assert statuses(port, "127.0.0.2", ["198.51.100.1", "198.51.100.1", "198.51.100.2", "198.51.100.1"]) == \
            [200, 200, 200, 429]
        # a client's own X-Forwarded-For, passed on by the proxy before the address it saw, changes nothing:
        # the rightmost untrusted address counts
        assert statuses(port, "127.0.0.2", ["1.1.1.1, 198.51.100.7", "2.2.2.2, 198.51.100.7",
                                             "3.3.3.3, 198.51.100.7"]) == [200, 200, 429]


def test_without_the_flag_no_peer_is_believed(tiny, monkeypatch):
    monkeypatch.delenv("CD_FORWARDED_ALLOW_IPS", raising=False)
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    app = make_app(tiny, rate_limit=2)
    with serving(app, **options()) as port:  # uvicorn's default would trust 127.0.0.1's header
        assert statuses(port, "127.0.0.1", ["203.0.113.1", "203.0.113.2", "203.0.113.3"]) == [200, 200, 429]


@pytest.mark.parametrize("bad", ["*", "proxy.local", "127.0.0.1,nope", ","])
def test_nonsense_addresses_stop_the_start(bad, capsys):
    with pytest.raises(SystemExit):
        options("--forwarded-allow-ips", bad)
    assert "--forwarded-allow-ips" in capsys.readouterr().err


def test_networks_and_lists_are_accepted(monkeypatch):
    assert options("--forwarded-allow-ips", "172.28.0.10, 10.0.0.0/8") == {
        "proxy_headers": True, "forwarded_allow_ips": ["172.28.0.10", "10.0.0.0/8"]}
    monkeypatch.setenv("CD_FORWARDED_ALLOW_IPS", "172.28.0.10")
    assert options()["forwarded_allow_ips"] == ["172.28.0.10"]
