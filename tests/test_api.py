"""The HTTP API over the tiny model: contract, errors (4xx with a message, never 5xx), caching."""

import math

import pytest
from fastapi.testclient import TestClient

PROMPT = "When Mary and John went to the store, John gave a drink to"


@pytest.fixture(scope="module")
def client(dbg):
    from circuit_debugger.server.app import Settings, create_app

    app = create_app(Settings(models=[]), debugger=dbg, failed={"broken": "x/config.json: file not found"})
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def attr(**kw):
    body = {"model": "tiny", "prompt": PROMPT, "target": " Mary", "distractor": " John", "top_k": 20}
    body.update(kw)
    return body


def test_health_models_openapi(client):
    assert client.get("/api/health").json() == {"status": "ok", "models": ["tiny"]}
    models = client.get("/api/models").json()
    assert models["models"][0]["n_layers"] == 2 and models["failed"] == {"broken": "x/config.json: file not found"}
    spec = client.get("/openapi.json").json()
    for route in ["/api/attribute", "/api/trace", "/api/intervene", "/api/attention", "/api/logit-lens", "/api/tokenize"]:
        assert route in spec["paths"], route


def test_attribute_response(client):
    r = client.post("/api/attribute", json=attr(verify_top=3))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["tokens"][0] == "<|endoftext|>" and len(body["nodes"]) >= 20
    for n in body["nodes"]:
        assert {"id", "activation", "direct_effect", "total_effect"} <= set(n)
    assert sum(1 for n in body["nodes"] if n.get("exact_effect") is not None) == 3
    assert abs(body["sum_check"]["residual"]) < 1e-5
    assert body.get("baseline_logit_diff") is None


def test_attribute_with_interventions_and_toggle(client):
    on = client.post("/api/attribute", json=attr(interventions=[{"node": "L0.H1", "op": "zero"}])).json()
    off = client.post("/api/attribute", json=attr(interventions=[{"node": "L0.H1", "op": "zero", "enabled": False}])).json()
    clean = client.post("/api/attribute", json=attr()).json()
    assert on["baseline_logit_diff"] == pytest.approx(clean["logit_diff"])
    assert on["logit_diff"] != clean["logit_diff"]
    assert off["logit_diff"] == clean["logit_diff"] and off.get("baseline_logit_diff") is None


def test_inspection_routes(client):
    tok = client.post("/api/tokenize", json={"model": "tiny", "text": "John gave"}).json()
    assert tok["tokens"][0] == "<|endoftext|>" and "".join(tok["tokens"][1:]) == "John gave"
    assert tok["tokens"][-1] == " gave" and len(tok["token_ids"]) == len(tok["tokens"])
    att = client.post("/api/attention", json={"model": "tiny", "prompt": PROMPT, "layer": 1, "head": 2}).json()
    row = att["heads"]["L1.H2"][5]
    assert sum(row) == pytest.approx(1.0, abs=1e-5) and all(x == 0 for x in row[6:])
    lens = client.post("/api/logit-lens", json={"model": "tiny", "node": "L1.N4", "k": 5}).json()
    assert len(lens["promoted"]) == 5 and lens["promoted"][0]["value"] >= lens["promoted"][-1]["value"]
    lens2 = client.post("/api/logit-lens", json={"model": "tiny", "node": "L0.H1", "prompt": PROMPT}).json()
    assert lens2["source"].startswith("write at position")
    iv = client.post("/api/intervene", json={"model": "tiny", "prompt": PROMPT, "target": " Mary", "distractor": " John",
                                             "interventions": [{"node": "L1.MLP", "op": "scale", "value": 0.0}]}).json()
    assert iv["change"] == pytest.approx(iv["logit_diff"] - iv["baseline_logit_diff"])


BAD = [
    ("/api/attribute", attr(model="nope"), 404, "unknown model 'nope'"),
    ("/api/attribute", attr(prompt=""), 422, "prompt"),
    ("/api/attribute", attr(prompt="   "), 422, "prompt must be a non-empty string"),
    ("/api/attribute", attr(prompt="Mary " * 300), 413, "at most"),
    ("/api/attribute", attr(target="Mary John"), 422, "tokenizes into"),
    ("/api/attribute", attr(distractor=" Mary"), 422, "same token"),
    ("/api/attribute", attr(position=99), 422, "position 99 out of range"),
    ("/api/attribute", attr(top_k=10**9), 422, "top_k"),
    ("/api/attribute", attr(verify_top=1000), 422, "verify_top"),
    ("/api/attribute", attr(interventions=[{"node": "L9.H0", "op": "zero"}]), 422, "layer 9 out of range"),
    ("/api/attribute", attr(interventions=[{"node": "L0.H9", "op": "zero"}]), 422, "head 9 out of range"),
    ("/api/attribute", attr(interventions=[{"node": "Lx", "op": "zero"}]), 422, "unknown node id"),
    ("/api/attribute", attr(interventions=[{"node": "L0.H1", "op": "explode"}]), 422, "op"),
    ("/api/attribute", attr(interventions=[{"node": "L0.H1", "op": "scale"}]), 422, "needs a finite 'value'"),
    ("/api/attribute", attr(interventions=[{"node": "L0.H1", "op": "add", "vector": [1.0]}]), 422, "must have 8 numbers"),
    ("/api/attribute", attr(interventions=[{"node": "L0.H1", "op": "patch"}]), 422, "needs a counterfactual_prompt"),
    ("/api/attribute", attr(interventions=[{"node": "L0.H1", "op": "mean"}]), 422, "no reference corpus"),
    ("/api/attribute", attr(interventions=[{"node": "L0.H1", "op": "patch"}], counterfactual_prompt="Mary went"), 422,
     "same token length"),
    ("/api/attribute", attr(interventions=[{"node": "L0.H1", "op": "zero", "positions": [40]}]), 422, "positions [40] out of range"),
    ("/api/attribute", attr(interventions=[{"node": "L0.H1@2", "op": "zero", "positions": [3]}]), 422, "either as"),
    ("/api/attribute", attr(extra_field=1), 422, "extra_field"),
    ("/api/trace", {"model": "tiny", "prompt": PROMPT, "target": {"kind": "attention", "node": "L1.H0", "query": 2, "key": 5}},
     422, "causal"),
    ("/api/attention", {"model": "tiny", "prompt": PROMPT, "layer": 7}, 422, "layer 7 out of range"),
    ("/api/logit-lens", {"model": "tiny", "node": "L0.H1"}, 422, "needs a prompt"),
    ("/api/tokenize", {"model": "tiny"}, 422, "text"),
]


@pytest.mark.parametrize("route,body,status,msg", BAD)
def test_bad_input_is_a_clear_4xx(client, route, body, status, msg):
    r = client.post(route, json=body)
    assert r.status_code == status, r.text
    assert msg in r.json()["detail"]


@pytest.mark.parametrize("raw", [
    '{"model":"tiny","prompt":"Mary","target":" Mary","interventions":[{"node":"L0.H1","op":"scale","value":NaN}]}',
    '{"model":"tiny","prompt":"Mary","target":" Mary","interventions":[{"node":"L0.N1","op":"add","vector":[Infinity]}]}',
    '{"model":"tiny","prompt":"Mary","target":',
    '[1,2,3]',
])
def test_non_finite_and_malformed_json(client, raw):
    r = client.post("/api/attribute", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text


def test_huge_scale_gives_4xx_not_nan(client):
    body = attr(interventions=[{"node": f"L{l}.MLP", "op": "scale", "value": 1e6} for l in range(2)] +
                [{"node": "EMB", "op": "scale", "value": 1e6}, {"node": "L0.RESID", "op": "scale", "value": 1e6},
                 {"node": "L2.RESID", "op": "scale", "value": 1e6}])
    r = client.post("/api/attribute", json=body)
    assert r.status_code in (200, 422), r.text
    if r.status_code == 200:
        assert all(math.isfinite(n["total_effect"]) for n in r.json()["nodes"] if n["total_effect"] is not None)


def test_repeated_request_does_not_recompute(client, dbg, monkeypatch):
    body = attr(prompt="The cat sat on the mat and the dog sat on the", target=" rug", distractor=" mat")
    first = client.post("/api/attribute", json=body).json()
    calls = []
    m = dbg.model("tiny")
    original = m.run
    monkeypatch.setattr(m, "run", lambda *a, **k: calls.append(1) or original(*a, **k))
    again = client.post("/api/attribute", json=body).json()
    assert again == first and calls == []
    # toggling an intervention on reuses the cached clean pass for the baseline: one forward
    client.post("/api/attribute", json={**body, "interventions": [{"node": "L0.H2", "op": "zero"}]})
    assert len(calls) == 1
