"""Who may use it: access tokens (hashed at rest) or a trusted proxy's identity header cover the
API, /mcp and share creation; the UI's pages, health and share reads stay open; per-identity
limits; the warning for a public address without access control."""

import logging

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from circuit_debugger.engine import Debugger
from circuit_debugger.server.access import AccessConfigError, add_token, read_token_file, token_hash
from circuit_debugger.server.app import Settings, create_app

STATE = {"state": {"prompt": "Mary and John", "target": " Mary"}}


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    path = tmp_path_factory.mktemp("auth") / "tokens"
    alice, bob = add_token(path, "alice"), add_token(path, "bob")
    return path, alice, bob


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    d = tmp_path_factory.mktemp("dist")
    (d / "index.html").write_text("<!doctype html><title>app</title>")
    (d / "assets").mkdir()
    (d / "assets" / "app.js").write_text("1")
    return d


def app_with(tiny, dist, **kw):
    app = create_app(Settings(models=[], frontend_dir=str(dist), **kw), debugger=Debugger([tiny]), failed={})

    mcp = FastAPI()  # stands in for the MCP endpoint mounted at /mcp

    @mcp.post("/")
    def rpc():
        return {"jsonrpc": "2.0"}

    app.mount("/mcp", mcp)
    return app


def test_the_token_file_keeps_hashes_only(tokens):
    path, alice, bob = tokens
    text = path.read_text()
    assert alice not in text and bob not in text and token_hash(alice) in text
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert read_token_file(path) == {token_hash(alice): "alice", token_hash(bob): "bob"}
    plain = path.parent / "plain"
    plain.write_text(f"alice {alice}\n")
    with pytest.raises(AccessConfigError, match="hashes, not tokens"):
        read_token_file(plain)
    with pytest.raises(AccessConfigError, match="cannot read"):
        read_token_file(path.parent / "missing")


def test_tokens_guard_the_api_mcp_and_share_creation(tiny, dist, tokens):
    path, alice, _ = tokens
    client = TestClient(app_with(tiny, dist, auth_token_file=str(path)))
    shared = client.post("/api/shares", json=STATE, headers={"authorization": f"Bearer {alice}"})
    assert shared.status_code == 201
    closed = [("post", "/api/tokenize", {"model": "tiny", "text": "Mary"}), ("post", "/api/shares", STATE),
              ("get", "/api/models", None), ("post", "/mcp/", {}), ("get", "/api/promptsets/abc", None),
              ("get", "/api/explanations/tiny/node/L0.N1", None)]
    for method, url, body in closed:
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": alice}, {"x-forwarded-user": "eve"}):
            r = client.request(method, url, json=body, headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer"), (url, headers, r.text)
        ok = client.request(method, url, json=body, headers={"authorization": f"Bearer {alice}"})
        assert ok.status_code != 401, (url, ok.text)
    opened = ["/api/health", f"/api/shares/{shared.json()['id']}", "/", "/s/abc", "/assets/app.js", "/openapi.json"]
    for url in opened:
        assert client.get(url).status_code == 200, url


def test_trusted_identity_header(tiny, dist):
    client = TestClient(app_with(tiny, dist, identity_header="X-Forwarded-User"))
    assert client.post("/api/tokenize", json={"model": "tiny", "text": "Mary"}).status_code == 401
    r = client.post("/api/tokenize", json={"model": "tiny", "text": "Mary"}, headers={"x-forwarded-user": "alice"})
    assert r.status_code == 200
    assert "X-Forwarded-User" in client.post("/api/tokenize", json={}).json()["detail"]


def test_limits_are_per_identity(tiny, dist, tokens):
    """Two identities behind one address (a proxy) each get their own rate."""
    path, alice, bob = tokens
    client = TestClient(app_with(tiny, dist, auth_token_file=str(path), rate_limit=2))

    def ask(token):
        return client.post("/api/tokenize", json={"model": "tiny", "text": "Mary"},
                           headers={"authorization": f"Bearer {token}"}).status_code

    assert [ask(alice), ask(alice), ask(alice)] == [200, 200, 429]
    assert ask(bob) == 200


def test_off_by_default_and_a_public_address_warns(tiny, dist, caplog):
    assert TestClient(app_with(tiny, dist)).post("/api/tokenize", json={"model": "tiny", "text": "Mary"}).status_code == 200
    from circuit_debugger.cli import parser
    from circuit_debugger.server.cli_security import before_serving

    for host, warns in [("127.0.0.1", False), ("0.0.0.0", True), ("::", True), ("localhost", False)]:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="circuit_debugger.server"):
            before_serving(parser().parse_args(["serve", "--host", host]))
        assert ("without access control" in caplog.text) == warns, host
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="circuit_debugger.server"):
        before_serving(parser().parse_args(["serve", "--host", "0.0.0.0", "--auth-token-file", "x"]))
    assert "without access control" not in caplog.text


def test_token_command_and_settings_from_flags(tmp_path, capsys, monkeypatch):
    from circuit_debugger.cli import main, parser, settings_from

    file = tmp_path / "tokens"
    main(["token", "carol", "--file", str(file)])
    token = capsys.readouterr().out.strip()
    assert token.startswith("cdt_") and read_token_file(file) == {token_hash(token): "carol"}
    ap = parser()
    s = settings_from(ap, ap.parse_args(["serve", "--auth-token-file", str(file), "--trust-identity-header", "X-User",
                                         "--max-body-mb", "2", "--rate-limit", "30", "--allowed-hosts", "lab.example"]))
    assert (s.auth_token_file, s.identity_header, s.max_body_bytes, s.rate_limit, s.allowed_hosts) == \
        (str(file), "X-User", 2 * 1024 * 1024, 30, ["lab.example"])
    assert "*" not in s.cors_origins and "http://localhost:5173" in s.cors_origins


def test_the_schema_says_which_operations_need_a_token(tiny, dist, tokens):
    path, alice, _ = tokens
    schema = TestClient(app_with(tiny, dist, auth_token_file=str(path))).get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    ops = schema["paths"]
    assert ops["/api/attribute"]["post"]["security"] == [{"bearer": []}]
    assert ops["/api/shares"]["post"]["security"] == [{"bearer": []}]
    assert "security" not in ops["/api/health"]["get"] and "security" not in ops["/api/shares/{share_id}"]["get"]
    plain = TestClient(app_with(tiny, dist)).get("/openapi.json").json()
    assert "securitySchemes" not in plain.get("components", {})
