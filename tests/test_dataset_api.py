"""The prompt-set, dataset and circuit routes over HTTP: stored sets are immutable and usable
by id; bad sets and circuits get a 4xx that says what is wrong."""

import pytest
from fastapi.testclient import TestClient

TEMPLATE = {"templates": ["When {IO} and {S} went to the {P}, {S} gave a drink to"],
            "values": {"IO": ["Mary", "John"], "S": ["Mary", "John"], "P": ["store", "park"]},
            "target": " {IO}", "distractor": " {S}"}


@pytest.fixture(scope="module")
def client(dbg):
    from circuit_debugger.server.app import Settings, create_app

    app = create_app(Settings(models=[], serve_frontend=False), debugger=dbg, failed={})
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def test_stored_prompt_set_is_used_by_id(client):
    r = client.post("/api/promptsets", json={"model": "tiny", "spec": {"template": TEMPLATE, "n": 6, "seed": 1}})
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["slots"] == ["IO", "S1", "P", "S2", "END"] and len(made["rows"]) == 6
    assert client.get(f"/api/promptsets/{made['id']}").json() == made
    by_id = client.post("/api/dataset/attribute", json={"model": "tiny", "promptset": {"id": made["id"]}, "top_k": 5}).json()
    inline = client.post("/api/dataset/attribute", json={"model": "tiny", "promptset": {"template": TEMPLATE, "n": 6, "seed": 1},
                                                         "top_k": 5}).json()
    assert by_id["metric_mean"] == inline["metric_mean"] and by_id["nodes"] == inline["nodes"]
    assert len(by_id["prompts"]) == 6 and len(by_id["drill_nodes"]) == len(by_id["prompts"][0]["total"])
    again = client.post("/api/promptsets", json={"model": "tiny", "spec": {"template": TEMPLATE, "n": 6, "seed": 1}}).json()
    assert again["id"] != made["id"]


def test_circuit_and_ablation_routes(client):
    body = {"model": "tiny", "promptset": {"template": TEMPLATE, "n": 8}, "nodes": ["L1.H0", "L0.H1@S2"]}
    r = client.post("/api/circuit/evaluate", json={**body, "n_random": 2, "greedy_steps": 1})
    assert r.status_code == 200, r.text
    out = r.json()
    assert set(out["faithfulness"]) >= {"model", "circuit", "empty", "gap", "fraction", "normalized"}
    assert [x["node"] for x in out["minimality"]] == ["L1.H0", "L0.H1@S2"] and out["cost"]["forwards"] > 0
    a = client.post("/api/dataset/ablate", json={**body, "ablation": "zero"}).json()
    assert len(a["before"]) == len(a["after"]) == 8


@pytest.mark.parametrize("body, status, words", [
    ({"promptset": {}, "nodes": ["L1.H0"]}, 422, "exactly one"),
    ({"promptset": {"builtin": "ioi", "template": TEMPLATE}, "nodes": ["L1.H0"]}, 422, "exactly one"),
    ({"promptset": {"id": "nope-not-here"}, "nodes": ["L1.H0"]}, 404, "prompt set"),
    ({"promptset": {"id": "abc", "builtin": "ioi"}, "nodes": ["L1.H0"]}, 422, "not both"),
    ({"promptset": {"template": TEMPLATE}, "nodes": ["L1.MLP"]}, 422, "heads"),
    ({"promptset": {"template": TEMPLATE}, "nodes": ["L1.H0@XYZ"]}, 422, "slot"),
    ({"promptset": {"template": {**TEMPLATE, "target": " {NOPE}"}}, "nodes": ["L1.H0"]}, 422, "NOPE"),
    ({"promptset": {"text": "{bad json", "format": "jsonl"}, "nodes": ["L1.H0"]}, 422, "JSON"),
    ({"promptset": {"template": TEMPLATE, "n": 600}, "nodes": ["L1.H0"]}, 422, "at most 500"),
])
def test_circuit_errors_are_4xx_with_reasons(client, body, status, words):
    r = client.post("/api/circuit/evaluate", json={"model": "tiny", **body})
    assert r.status_code == status and words in r.json()["detail"], r.text
