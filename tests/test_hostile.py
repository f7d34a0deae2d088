"""Hostile input gets a 4xx that says what was wrong, never a 5xx; types are strict; every
status is in the OpenAPI schema; limits have one source (the flags); CORS and Host checks.
(Slow clients and connections: test_hostile_load.py; access tokens: test_access.py.)"""

import logging

import pytest
from fastapi.testclient import TestClient

from circuit_debugger.engine import Debugger
from circuit_debugger.nodes import parse_node
from circuit_debugger.server.app import Settings, create_app

PROMPT = "When Mary and John went to the store, John gave a drink to"
BIG = "9" * 5000


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """A stand-in built UI, so the static routes reach the filesystem."""
    d = tmp_path_factory.mktemp("dist")
    (d / "index.html").write_text("<!doctype html><title>app</title>")
    (d / "assets").mkdir()
    (d / "assets" / "app.js").write_text("console.log(1)")
    return d


@pytest.fixture(scope="module")
def client(tiny, dist):
    app = create_app(Settings(models=[], frontend_dir=str(dist)), debugger=Debugger([tiny]), failed={})
    return TestClient(app, raise_server_exceptions=False)


def no_internals(r):
    assert r.status_code < 500, (r.status_code, r.text[:300])
    assert "Error" not in r.text and "/work" not in r.text and "site-packages" not in r.text, r.text[:300]


@pytest.mark.parametrize("node", [f"L0.N{BIG}", f"L{BIG}.H0", f"L1.H3@{BIG}", "L١.H٣", "L1.H٣", "L１.H3", "L0.N" + "9" * 10])
def test_huge_and_unicode_numbers_in_node_ids_are_4xx_on_every_route(client, node):
    calls = [
        ("post", "/api/attribute", {"model": "tiny", "prompt": PROMPT, "target": " Mary",
                                    "interventions": [{"node": node, "op": "zero"}]}),
        ("post", "/api/logit-lens", {"model": "tiny", "node": node}),
        ("post", "/api/trace", {"model": "tiny", "prompt": PROMPT, "target": {"kind": "neuron", "node": node}}),
        ("post", "/api/activations", {"model": "tiny", "prompt": PROMPT, "node": node}),
        ("get", f"/api/explanations/tiny/node/{node}", None),
        ("post", "/api/explain", {"model": "tiny", "node": node}),
        ("post", "/api/dataset/ablate", {"model": "tiny", "nodes": [node[:100]], "promptset": {
            "rows": [{"prompt": PROMPT, "target": " Mary", "distractor": " John"}]}}),
    ]
    for method, path, body in calls:
        r = client.post(path, json=body) if method == "post" else client.get(path)
        no_internals(r)
        assert 400 <= r.status_code < 500, (path, r.status_code, r.text[:200])


def test_parse_node_takes_ascii_digits_only():
    assert str(parse_node("L1.H3@7")) == "L1.H3@7"
    for bad in ["L١.H٣", "L1.H٣", "L１.H3", "L1.N" + "1" * 10, "L1.H3" + " " * 100]:
        with pytest.raises(Exception) as e:
            parse_node(bad)
        assert type(e.value).__name__ == "UserError"


@pytest.mark.parametrize("text", ["[" * 100_000, "{\"a\":" * 50_000, '{"prompt": "x", "target": "y", "slots": {"S": ' + BIG + "}}",
                                  '{"prompt": ["x"], "target": " y"}', '{"prompt": "x y", "target": " y", "slots": {"S": true}}',
                                  '{"prompt": "\\ud800 x", "target": " y"}',  # a lone surrogate: JSON allows it
                                  '{"prompt": "x y", "target": " y", "slots": {"\\ud800": 0}}'])
def test_hostile_jsonl_prompt_sets_are_422(client, text):
    r = client.post("/api/promptsets", json={"model": "tiny", "spec": {"text": text, "format": "jsonl"}})
    no_internals(r)
    assert r.status_code == 422 and ("line 1" in r.json()["detail"] or "row 1" in r.json()["detail"]), r.text[:300]


def test_hostile_csv_prompt_sets_are_422(client):
    r = client.post("/api/promptsets", json={"model": "tiny", "spec": {"format": "csv",
                                                                       "text": 'prompt,target\n"' + "a" * 200_000 + '", b\n'}})
    no_internals(r)  # csv's own field limit (a 500 before) or the token limit: a 4xx either way
    assert 400 <= r.status_code < 500, r.text[:300]
    r = client.post("/api/promptsets", json={"model": "tiny", "spec": {"format": "csv",
                                                                       "text": "\ufeffprompt,target\nMary and John, Mary\n"}})
    assert r.status_code == 201 and r.json()["rows"][0]["target"] == " Mary", r.text  # a BOM is not part of the header


@pytest.mark.parametrize("path", ["/s/%00", "/index.html%00.js", "/s/" + "a" * 4100, "/assets/%00", "/assets/" + "a" * 4100,
                                  "/x/%01/y", "/" + "b/" * 1500])
def test_hostile_paths_are_4xx_without_the_install_path(client, path):
    r = client.get(path)
    no_internals(r)
    assert 400 <= r.status_code < 500


def test_the_ui_still_serves_its_pages(client):
    assert client.get("/s/abc123").text.startswith("<!doctype html>")
    assert client.get("/assets/app.js").text == "console.log(1)"


def test_get_on_a_post_route_is_405_with_allow(client):
    r = client.get("/api/attribute")
    assert r.status_code == 405 and r.headers["allow"] == "POST", r.text
    r = client.get("/api/effects")  # a route of an included router (FastAPI keeps those nested)
    assert r.status_code == 405 and r.headers["allow"] == "POST", r.text
    assert client.get("/api/no-such-route").status_code == 404
    bare = TestClient(create_app(Settings(models=[], serve_frontend=False), debugger=Debugger(), failed={}))
    assert bare.get("/api/attribute").status_code == 405


def test_a_500_carries_a_request_id_and_no_internals(tiny, caplog):
    dbg = Debugger([tiny])
    client = TestClient(create_app(Settings(models=[], serve_frontend=False), debugger=dbg, failed={}),
                        raise_server_exceptions=False)

    def broken(*a, **k):
        raise RuntimeError("secret detail at /opt/install/path")

    dbg.tokenize = broken
    with caplog.at_level(logging.ERROR, logger="circuit_debugger.server"):
        r = client.post("/api/tokenize", json={"model": "tiny", "text": "Mary"})
    assert r.status_code == 500
    rid = r.json()["request_id"]
    assert len(rid) >= 12 and r.headers["x-request-id"] == rid and rid in r.json()["detail"]
    assert "secret" not in r.text and "/opt" not in r.text and "RuntimeError" not in r.text
    logged = [rec for rec in caplog.records if rid in rec.getMessage()]
    assert logged and "secret detail" in "".join(str(rec.exc_info[1]) for rec in logged if rec.exc_info)


@pytest.mark.parametrize("route, body", [
    ("/api/attribute", {"prompt": PROMPT, "target": " Mary", "position": False}),
    ("/api/attribute", {"prompt": PROMPT, "target": " Mary", "top_k": "100"}),
    ("/api/attribute", {"prompt": PROMPT, "target": " Mary", "top_k": 1000.0}),
    ("/api/attribute", {"prompt": PROMPT, "target": " Mary", "verify_top": True}),
    ("/api/attention", {"prompt": PROMPT, "layer": 0, "head": False}),
    ("/api/attention", {"prompt": PROMPT, "layer": "0"}),
    ("/api/logit-lens", {"node": "L0.N1", "k": 5.0}),  # L0.N1 with k=5 answers 200
    ("/api/intervene", {"prompt": PROMPT, "interventions": [{"node": "L0.H1", "op": "zero", "positions": [True]}]}),
    ("/api/intervene", {"prompt": PROMPT, "interventions": [{"node": "L0.H1", "op": "zero", "enabled": "yes"}]}),
    ("/api/shares", {"state": {"top_k": False}}),
])
def test_strict_types_refuse_coercion(client, route, body):
    r = client.post(route, json={"model": "tiny", **body} if route != "/api/shares" else body)
    assert r.status_code == 422, (route, body, r.text[:200])


def test_floats_still_take_integers(client):
    r = client.post("/api/intervene", json={"model": "tiny", "prompt": PROMPT,
                                            "interventions": [{"node": "L0.H1", "op": "scale", "value": 2}]})
    assert r.status_code == 200, r.text


def test_every_status_is_in_the_openapi_schema(client):
    schema = client.get("/openapi.json").json()
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            missing = {"400", "401", "408", "413", "422", "429", "500", "503"} - set(op["responses"])
            assert not missing, (method, path, missing)


def test_limits_have_one_source(tiny):
    """--max-reference-prompts 1000 admits 300 prompts, --max-graph-latents 20000 admits 6000; the
    schema states the configured caps; beyond them the engine says which limit."""
    settings = Settings(models=[], serve_frontend=False, max_reference_prompts=1000, max_graph_latents=20000, max_top_k=40)
    from circuit_debugger.server.app import limits_of

    client = TestClient(create_app(settings, debugger=Debugger([tiny], limits=limits_of(settings)), failed={}))
    refs = ["Mary and John went home"] * 300
    r = client.post("/api/intervene", json={"model": "tiny", "prompt": PROMPT, "reference_prompts": refs,
                                            "interventions": [{"node": "L0.H1", "op": "mean"}]})
    assert r.status_code == 200, r.text[:300]
    r = client.post("/api/intervene", json={"model": "tiny", "prompt": PROMPT, "reference_prompts": refs * 4,
                                            "interventions": [{"node": "L0.H1", "op": "mean"}]})
    assert r.status_code == 422 and "1000" in r.json()["detail"]
    r = client.post("/api/graph", json={"model": "tiny", "prompt": PROMPT, "target": " Mary", "max_latents": 6000})
    assert r.status_code == 200, r.text  # admitted: without transcoders the graph is built on neurons
    r = client.post("/api/graph", json={"model": "tiny", "prompt": PROMPT, "target": " Mary", "max_latents": 20001})
    assert r.status_code == 422 and "20000" in r.text
    for route in ("/api/attribute", "/api/dataset/attribute"):
        body = {"model": "tiny", "prompt": PROMPT, "target": " Mary", "top_k": 41} if route == "/api/attribute" else \
            {"model": "tiny", "top_k": 41, "promptset": {"rows": [{"prompt": PROMPT, "target": " Mary"}]}}
        r = client.post(route, json=body)
        assert r.status_code == 422 and "40" in r.json()["detail"], r.text
    s = client.get("/openapi.json").json()["components"]["schemas"]
    assert any(b.get("maxItems") == 1000 for b in s["InterveneRequest"]["properties"]["reference_prompts"]["anyOf"])
    assert s["GraphRequest"]["properties"]["max_latents"]["maximum"] == 20000
    assert s["DatasetAttributeRequest"]["properties"]["top_k"]["maximum"] == 40


@pytest.mark.parametrize("argv, words", [
    (["--max-pending", "0"], "--max-pending: must be at least 1"),
    (["--max-top-k", "-5"], "--max-top-k: must be at least 1"),
    (["--max-tokens", "0"], "--max-tokens: must be at least 1"),
    (["--max-reference-prompts", "many"], "expected a whole number"),
    (["--body-timeout", "nan"], "--body-timeout: must be at least"),
])
def test_nonsense_limits_are_refused_at_start(argv, words, capsys):
    from circuit_debugger.cli import parser

    with pytest.raises(SystemExit):
        parser().parse_args(["serve", *argv])
    assert words in capsys.readouterr().err


def test_nonsense_limits_from_the_environment_are_refused_too(monkeypatch, capsys):
    from circuit_debugger.cli import parser

    monkeypatch.setenv("CD_MAX_PENDING", "0")
    with pytest.raises(SystemExit):
        parser().parse_args(["serve"])
    assert "--max-pending: must be at least 1" in capsys.readouterr().err


def test_cors_is_same_origin_by_default_and_widens_with_the_flag(tiny):
    def app(**kw):
        return TestClient(create_app(Settings(models=[], serve_frontend=False, **kw), debugger=Debugger([tiny]), failed={}))

    default = app()
    r = default.get("/api/health", headers={"origin": "http://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    pre = default.options("/api/attribute", headers={"origin": "http://evil.example", "access-control-request-method": "POST"})
    assert pre.status_code == 400 and "access-control-allow-origin" not in pre.headers
    dev = default.options("/api/attribute", headers={"origin": "http://localhost:5173", "access-control-request-method": "POST"})
    assert dev.status_code == 200 and dev.headers["access-control-allow-origin"] == "http://localhost:5173"
    for method in ("DELETE", "PUT", "PATCH"):
        r = default.options("/api/attribute", headers={"origin": "http://localhost:5173", "access-control-request-method": method})
        assert r.status_code == 400 and method not in r.headers.get("access-control-allow-methods", "")
    wide = app(cors_origins=["https://lab.example"])
    r = wide.get("/api/health", headers={"origin": "https://lab.example"})
    assert r.headers["access-control-allow-origin"] == "https://lab.example"


def test_host_header_is_checked_against_dns_rebinding(tiny):
    from circuit_debugger.server.cli_security import default_allowed_hosts

    from circuit_debugger.cli import parser, settings_from
    from circuit_debugger.server.cli_security import before_serving

    ap = parser()
    a = ap.parse_args(["serve", "--host", "127.0.0.1"])
    settings = settings_from(ap, a)
    before_serving(a, settings)  # what `serve` does: the names of the bound address
    hosts = settings.allowed_hosts
    assert hosts == default_allowed_hosts("127.0.0.1")
    client = TestClient(create_app(Settings(models=[], serve_frontend=False, allowed_hosts=hosts),
                                   debugger=Debugger([tiny]), failed={}), base_url="http://localhost:8000")
    assert client.get("/api/health").status_code == 200
    for host in ("127.0.0.1:8000", "[::1]:8000", "LOCALHOST"):
        assert client.get("/api/health", headers={"host": host}).status_code == 200, host
    for host in ("attacker.example", "attacker.example:8000", "localhost.attacker.example", ""):
        r = client.get("/api/health", headers={"host": host})
        assert r.status_code == 400 and "--allowed-hosts" in r.json()["detail"], host
    assert default_allowed_hosts("0.0.0.0") == ["*"]
    assert "lab.example" in default_allowed_hosts("lab.example")
    wild = TestClient(create_app(Settings(models=[], serve_frontend=False, allowed_hosts=["*.lab.example"]),
                                 debugger=Debugger([tiny]), failed={}), base_url="http://a.lab.example")
    assert wild.get("/api/health").status_code == 200
    assert wild.get("/api/health", headers={"host": "evil.example"}).status_code == 400


def test_a_failing_llm_endpoint_is_a_502_without_its_address(monkeypatch):
    from circuit_debugger.explanations.build import REPO_EXPLANATIONS
    from circuit_debugger.loading import load_model

    db = REPO_EXPLANATIONS / "default.sqlite"
    if not db.exists():
        pytest.skip("no explanations database for the default model")
    dbg = Debugger([load_model("default")])
    dbg.attach_explanations("default", db)
    monkeypatch.setenv("CD_LLM_BASE_URL", "http://127.0.0.1:9/secret-internal")
    client = TestClient(create_app(Settings(models=[], serve_frontend=False), debugger=dbg, failed={}))
    r = client.post("/api/explain", json={"model": "default", "node": "L0.N1", "explainer": "llm"})
    assert r.status_code == 502, r.text
    assert "secret-internal" not in r.text and "127.0.0.1" not in r.text and "refused" not in r.text.lower()


def test_the_limit_defaults_agree_everywhere(monkeypatch):
    """One table (the `serve` flags) gives Settings its defaults; the engine's own Limits agree."""
    from circuit_debugger.cli import parser, settings_from
    from circuit_debugger.engine import Limits
    from circuit_debugger.server.app import limits_of

    for name in ("CD_MAX_TOP_K", "CD_MAX_GRAPH_LATENTS", "CD_MAX_REFERENCE_PROMPTS", "CD_MAX_TOKENS", "CD_MAX_PENDING"):
        monkeypatch.delenv(name, raising=False)
    ap = parser()
    from_flags = settings_from(ap, ap.parse_args(["serve"]))
    plain = Settings()
    for field in ("max_tokens", "max_top_k", "max_graph_latents", "max_reference_prompts", "max_pending",
                  "max_pending_per_client", "rate_limit", "cache_size", "max_body_bytes", "body_timeout"):
        assert getattr(from_flags, field) == getattr(plain, field), field
    assert limits_of(plain) == Limits()
