"""Graph routes: export to circuit-tracer's / Neuronpedia's JSON and import back; the graph of
an intervened model; options validation."""

import json

import pytest
import torch
from fastapi.testclient import TestClient
from pydantic import BaseModel

from test_graph_granular import PROMPT, dbg_mixed, model_mixed  # noqa: F401  (fixtures)


@pytest.fixture(scope="module")
def client(dbg_mixed):  # noqa: F811
    from circuit_debugger.server.app import Settings, create_app

    return TestClient(create_app(Settings(models=[]), debugger=dbg_mixed))


class TheirNode(BaseModel):
    """The node fields circuit-tracer's graph_models.Node declares (types as there)."""
    node_id: str
    feature: int
    layer: str
    ctx_idx: int
    feature_type: str
    token_prob: float
    is_target_logit: bool
    run_idx: int
    reverse_ctx_idx: int
    jsNodeId: str
    clerp: str
    influence: float | None
    activation: float | None


def test_export_matches_their_schema_and_reimports_identical(client):
    body = {"model": "tiny-mixed", "prompt": PROMPT, "target": " Mary", "distractor": " John",
            "attn": ["ov", "heads"], "mlp": ["transcoder", "neurons"], "node_threshold": 0.9}
    g = client.post("/api/graph", json=body).json()
    ids = [n["id"] for n in g["nodes"]]
    pins, group = ids[:3], {"label": "movers", "ids": ids[3:5]}
    r = client.post("/api/graph/export", json={"graph": g, "pins": pins, "supernodes": [group],
                                               "notes": {ids[0]: "look here"}, "slug": "ioi"})
    assert r.status_code == 200, r.text
    x = r.json()
    assert set(x) == {"metadata", "qParams", "nodes", "links"}
    assert {"slug", "scan", "transcoder_list", "prompt_tokens", "prompt", "node_threshold"} <= set(x["metadata"])
    assert {"pinnedIds", "supernodes", "linkType", "clickedId", "sg_pos"} <= set(x["qParams"])
    for n in x["nodes"]:
        TheirNode(**n)
    node_ids = [n["node_id"] for n in x["nodes"]]
    assert len(set(node_ids)) == len(node_ids)
    assert all(set(l) == {"source", "target", "weight"} and l["source"] in node_ids and l["target"] in node_ids
               for l in x["links"]) and len(x["links"]) == len(g["edges"])
    tc = next(n for n in x["nodes"] if n["feature_type"] == "cross layer transcoder")
    assert tc["node_id"] == f"{tc['layer']}_{tc['feature']}_{tc['ctx_idx']}"
    emb = next(n for n in x["nodes"] if n["feature_type"] == "embedding")
    assert emb["node_id"] == f"E_{g['token_ids'][emb['ctx_idx']]}_{emb['ctx_idx']}"
    assert [n["is_target_logit"] for n in x["nodes"]].count(True) == 1
    assert x["qParams"]["supernodes"][0][0] == "movers" and len(x["qParams"]["pinnedIds"]) == 3
    back = client.post("/api/graph/import", content=json.dumps(x), headers={"content-type": "application/json"})
    assert back.status_code == 200, back.text
    b = back.json()
    assert b["graph"] == g
    assert b["pins"] == pins and b["supernodes"] == [group] and b["notes"] == {ids[0]: "look here"}


def test_import_a_circuit_tracer_file(client):
    """A file as circuit-tracer writes it (no extra fields): features, errors, tokens, a logit."""
    node = lambda **k: dict({"token_prob": 0.0, "is_target_logit": False, "run_idx": 0, "reverse_ctx_idx": 0,
                             "clerp": "", "influence": 0.5, "activation": 1.0}, **k)
    data = {"metadata": {"slug": "x", "scan": "gemma", "transcoder_list": [], "prompt_tokens": ["<bos>", "a", "b"],
                         "prompt": "ab", "node_threshold": 0.8},
            "qParams": {"pinnedIds": ["1_7_2"], "supernodes": [["grp", "1_7_2", "0_0_1"]], "linkType": "both",
                        "clickedId": "", "sg_pos": ""},
            "nodes": [node(node_id="1_7_2", feature=7, layer="1", ctx_idx=2, feature_type="cross layer transcoder",
                           jsNodeId="1_7-0"),
                      node(node_id="0_0_1", feature=-1, layer="0", ctx_idx=1, feature_type="mlp reconstruction error",
                           jsNodeId="0_1-0"),
                      node(node_id="E_5_1", feature=1, layer="E", ctx_idx=1, feature_type="embedding", jsNodeId="E_5-1"),
                      node(node_id="3_9_2", feature=9, layer="3", ctx_idx=2, feature_type="logit", is_target_logit=True,
                           token_prob=0.4, jsNodeId="L_9-2", clerp='Output "b"')],
            "links": [{"source": "E_5_1", "target": "1_7_2", "weight": 0.3},
                      {"source": "0_0_1", "target": "1_7_2", "weight": -0.1},
                      {"source": "1_7_2", "target": "3_9_2", "weight": 2.0}]}
    r = client.post("/api/graph/import", json=data)
    assert r.status_code == 200, r.text
    b = r.json()
    assert [n["id"] for n in b["graph"]["nodes"]] == ["L1.T7@2", "L0.TERR@1", "EMB@1", "TARGET"]
    assert {(e["source"], e["target"], e["weight"]) for e in b["graph"]["edges"]} == {
        ("EMB@1", "L1.T7@2", 0.3), ("L0.TERR@1", "L1.T7@2", -0.1), ("L1.T7@2", "TARGET", 2.0)}
    assert b["pins"] == ["L1.T7@2"] and b["supernodes"] == [{"label": "grp", "ids": ["L1.T7@2", "L0.TERR@1"]}]
    bad = client.post("/api/graph/import", json={"nodes": []})
    assert bad.status_code == 422 and "not a circuit-tracer" in bad.json()["detail"]


def test_graph_of_the_intervened_model(client, model_mixed):  # noqa: F811
    """A head zeroed: the graph's target is the intervened run's logit difference, and the
    change sits in an intervention node at that layer."""
    m = model_mixed
    base = {"model": "tiny-mixed", "prompt": PROMPT, "target": " Mary", "distractor": " John",
            "node_threshold": 1.0, "edge_threshold": 1.0}
    iv = [{"node": "L1.H0", "op": "zero"}]
    clean = client.post("/api/graph", json=base).json()
    r = client.post("/api/graph", json=dict(base, interventions=iv))
    assert r.status_code == 200, r.text
    g = r.json()
    ran = client.post("/api/intervene", json={"model": "tiny-mixed", "prompt": PROMPT, "interventions": iv,
                                              "target": " Mary", "distractor": " John"}).json()
    assert g["interventions"] == ["zero(L1.H0)"] and "intervened" in g["frozen"]
    assert g["target"]["value"] != pytest.approx(clean["target"]["value"], abs=1e-4)
    assert any(n["kind"] == "intervention" and n["layer"] == 1 for n in g["nodes"])
    a, b = m.codec.output_token(" Mary"), m.codec.output_token(" John")
    logits = m.run(m.tokens_tensor(m.tokenize(PROMPT)), [("blocks.1.attn.hook_z", lambda x, hook: x * torch.tensor(
        [0.0] + [1.0] * (x.shape[2] - 1))[None, None, :, None])])[0, -1]
    assert g["target"]["value"] == pytest.approx(float(logits[a] - logits[b]), abs=1e-4)
    assert ran  # the intervene route accepts the same intervention
    for bad in ([{"node": "L1.RESID", "op": "zero"}], [{"node": "L0.H1", "op": "patch"}]):
        r = client.post("/api/graph", json=dict(base, interventions=bad))
        assert r.status_code == 422, r.text


def test_graph_options_are_validated(client):
    base = {"model": "tiny-mixed", "prompt": PROMPT, "target": " Mary"}
    assert client.post("/api/graph", json=dict(base, attn=["heads"])).status_code == 422
    assert client.post("/api/graph", json=dict(base, attn="bogus")).status_code == 422
    assert client.post("/api/graph", json=dict(base, pruning="other")).status_code == 422
    ok = client.post("/api/graph", json=dict(base, pruning="ours", attn="heads", mlp="neurons"))
    assert ok.status_code == 200 and ok.json()["pruning"] == "ours"
    assert ok.json()["qk"] and len(json.dumps(ok.json())) < 1_000_000


def test_export_refuses_malformed_graphs(client):
    g = {"attention": [], "completeness": 0.8, "edge_threshold": 0.8, "edges": [], "elapsed_ms": 0.8, "model": "m",
         "n_active_latents": 1, "n_latents_kept": 1, "node_threshold": 0.8, "replacement_score": 0.8, "target": {},
         "tokens": ["a"], "nodes": [{"activation": 0.0, "id": "", "influence": 0.0, "kind": ""}]}
    r = client.post("/api/graph/export", json={"graph": g})
    assert r.status_code == 422 and "unknown kind" in r.json()["detail"]
    g["nodes"] = [{"activation": 0.0, "id": "L0.T1@0", "influence": 0.0, "kind": "transcoder", "position": 0}]
    r = client.post("/api/graph/export", json={"graph": g})
    assert r.status_code == 422 and "integer position and layer" in r.json()["detail"]


def test_import_refuses_malformed_rows(client):
    data = {"metadata": {"prompt_tokens": []}, "nodes": [{"node_id": "x", "cd": {"id": "x"}}], "links": []}
    r = client.post("/api/graph/import", json=data)
    assert r.status_code == 422 and "graph file" in r.json()["detail"]
    data["nodes"] = [{"node_id": "x", "cd": {"id": "x", "kind": "embed", "position": 0}}]
    r = client.post("/api/graph/import", json=data)
    assert r.status_code == 422 and "not a usable graph file" in r.json()["detail"]
