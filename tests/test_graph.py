"""Attribution graphs and latent connections, checked against an independent frozen model:
the real model run through TransformerBridge with hooks that freeze every LN scale, every
attention pattern and each transcoder's error, and hold latents at given values."""

import random

import pytest
import torch
from fastapi.testclient import TestClient

from circuit_debugger.autoencoders import load_onto
from circuit_debugger.autoencoders.graph import capture
from circuit_debugger.engine import Debugger
from circuit_debugger.loading import load_model
from test_autoencoders import random_tensors, write_saelens_folder

PROMPT = "When Mary and John went to the store, John gave a drink to"


@pytest.fixture(scope="module")
def model_tc(tiny_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("tcs")
    for l in range(2):
        write_saelens_folder(root / f"tc{l}", random_tensors(32, 32, 30 + l), {
            "architecture": "standard", "hook_name": f"blocks.{l}.ln2.hook_normalized",
            "hook_name_out": f"blocks.{l}.hook_mlp_out"})
    m = load_model(str(tiny_dir), name="tiny-tc")
    assert load_onto(m, root) == {}
    return m


@pytest.fixture(scope="module")
def dbg_tc(model_tc):
    return Debugger([model_tc])


def bridge_frozen(m, ids, frozen, emb, pos, acts, errs):
    """Reads (latent pre-activations per layer, logits) of the frozen model, via hooks."""
    L = m.shape.n_layers
    fixed = {f"blocks.{l}.ln{i}.hook_scale": (frozen.s1 if i == 1 else frozen.s2)[l][None] for l in range(L) for i in (1, 2)}
    fixed["ln_final.hook_scale"] = frozen.sf[None]
    fixed.update({f"blocks.{l}.attn.hook_pattern": frozen.patterns[l][None] for l in range(L)})
    fixed["hook_embed"], fixed["hook_pos_embed"] = emb[None], pos[None]
    reads = {}
    hooks = [(k, (lambda v: lambda x, hook: v)(v)) for k, v in fixed.items()]
    for l in range(L):
        ae = m.autoencoders.transcoders[l]
        hooks.append((f"blocks.{l}.ln2.hook_normalized",
                      (lambda l, ae: lambda x, hook: reads.setdefault(l, x[0] @ ae.W_enc + ae.b_enc) is None or x)(l, ae)))
        hooks.append((f"blocks.{l}.hook_mlp_out",
                      (lambda l, ae: lambda x, hook: (acts[l] @ ae.W_dec + ae.b_dec + errs[l])[None])(l, ae)))
    logits = m.run(m.tokens_tensor(ids), hooks)[0]
    return reads, logits


def test_frozen_model_reproduces_the_real_model(model_tc, dbg_tc):
    from circuit_debugger.autoencoders.graph import forward_leaves, make_leaves

    ids = model_tc.tokenize(PROMPT)
    f = capture(model_tc, ids)
    pres, final = forward_leaves(f, make_leaves(f))
    real = dbg_tc.clean_pass(model_tc, ids)
    for l in range(2):
        assert torch.allclose(torch.relu(pres[l]), real[f"tc:{l}"][0], atol=1e-5)
    ld = dbg_tc.attribute("tiny-tc", PROMPT, " Mary", " John", top_k=1)["logit_diff"]
    a, b = model_tc.codec.output_token(" Mary"), model_tc.codec.output_token(" John")
    u = model_tc.W.W_U[:, a] - model_tc.W.W_U[:, b]
    assert float(final[-1].detach() @ u + model_tc.W.b_U[a] - model_tc.W.b_U[b]) == pytest.approx(ld, abs=1e-5)
    reads, _ = bridge_frozen(model_tc, ids, f, f.emb, f.pos, f.acts, f.errs)
    for l in range(2):
        assert torch.allclose(reads[l], pres[l], atol=1e-5)


def test_every_edge_equals_perturbation_in_the_frozen_model(model_tc, dbg_tc):
    """Zero the edge's source in the hook-frozen real model: the destination's read drops by the edge."""
    g = dbg_tc.graph("tiny-tc", PROMPT, " Mary", " John", node_threshold=1.0, edge_threshold=1.0)
    ids = model_tc.tokenize(PROMPT)
    f = capture(model_tc, ids)
    a, b = model_tc.codec.output_token(" Mary"), model_tc.codec.output_token(" John")
    base_reads, base_logits = bridge_frozen(model_tc, ids, f, f.emb, f.pos, f.acts, f.errs)

    def read(reads, logits, node_id):
        if node_id == "TARGET":
            return float(logits[-1, a] - logits[-1, b])
        layer, rest = node_id[1:].split(".T")
        i, p = rest.split("@")
        return float(reads[int(layer)][int(p), int(i)])

    edges = g["edges"]
    sample = [e for e in edges if e["target"] == "TARGET"] + random.Random(0).sample(edges, min(40, len(edges)))
    assert len(sample) > 20
    for e in sample:
        emb, pos = f.emb.clone(), f.pos.clone()
        acts, errs = [x.clone() for x in f.acts], [x.clone() for x in f.errs]
        s = e["source"]
        name, p = s.split("@")
        p = int(p)
        if name == "EMB":
            emb[p] = 0
        elif name == "POS":
            pos[p] = 0
        elif name.endswith("TERR"):
            errs[int(name[1:].split(".")[0])][p] = 0
        else:
            layer, i = name[1:].split(".T")
            acts[int(layer)][p, int(i)] = 0
        reads, logits = bridge_frozen(model_tc, ids, f, emb, pos, acts, errs)
        change = read(base_reads, base_logits, e["target"]) - read(reads, logits, e["target"])
        assert change == pytest.approx(e["weight"], abs=1e-4), e


def test_latent_inputs_sum_to_preactivation(model_tc, dbg_tc):
    from circuit_debugger.autoencoders.graph import forward_leaves, make_leaves

    c = dbg_tc.latent_inputs("tiny-tc", PROMPT, "L1.T7@9", k=1000)
    assert c["sum_of_contributions"] + c["bias"] == pytest.approx(c["pre_activation"], abs=1e-5)
    assert sum(r["contribution"] for r in c["contributions"]) == pytest.approx(c["sum_of_contributions"], abs=1e-4)
    # the bias is what is left with every source at zero, computed independently
    f = capture(model_tc, model_tc.tokenize(PROMPT))
    leaves = {k: torch.zeros_like(v) for k, v in make_leaves(f).items()}
    pres, _ = forward_leaves(f, leaves)
    assert float(pres[1][9, 7]) == pytest.approx(c["bias"], abs=1e-5)
    kinds = {r["kind"] for r in c["contributions"]}
    assert {"embed", "transcoder"} <= kinds and c["heads"]


def test_graph_pruning_and_scores(dbg_tc):
    full = dbg_tc.graph("tiny-tc", PROMPT, " Mary", " John", node_threshold=1.0, edge_threshold=1.0)
    pruned = dbg_tc.graph("tiny-tc", PROMPT, " Mary", " John", node_threshold=0.5, edge_threshold=0.9)
    # at threshold 1 every latent with a path to the target stays: all latents at the target's
    # position in the last layer read straight into it
    last = {f"L1.T{i}@14" for i in range(48)}
    active_last = {n["id"] for n in full["nodes"] if n["id"] in last}
    into_target = {e["source"] for e in full["edges"] if e["target"] == "TARGET"}
    assert active_last and active_last <= into_target
    assert pruned["n_latents_kept"] < full["n_latents_kept"] <= full["n_active_latents"]
    assert len(pruned["edges"]) < len(full["edges"])
    for g in (full, pruned):
        assert 0 <= g["completeness"] <= 1 and 0 <= g["replacement_score"] <= 1
        ids = {n["id"] for n in g["nodes"]}
        assert "TARGET" in ids and all(e["source"] in ids and e["target"] in ids for e in g["edges"])
        assert not any(e["target"].split("@")[0].endswith(("TERR",)) or e["target"].startswith(("EMB", "POS"))
                       for e in g["edges"]), "embeddings and errors have no inputs"
    # edges into the target plus its bias sum to the target's value in the unpruned graph
    target = next(n for n in full["nodes"] if n["id"] == "TARGET")
    into = sum(e["weight"] for e in full["edges"] if e["target"] == "TARGET")
    assert into + target["bias"] == pytest.approx(full["target"]["value"], abs=1e-4)


def test_weights_only_connections(model_tc, dbg_tc):
    w = dbg_tc.latent_weights("tiny-tc", "L1.T3", k=5)
    ae0, ae1 = model_tc.autoencoders.transcoders[0], model_tc.autoencoders.transcoders[1]
    e = ae1.W_enc[:, 3] - ae1.W_enc[:, 3].mean()
    best = w["upstream_direct"][0]
    j = int(best["node"].split(".T")[1])
    assert best["value"] == pytest.approx(float((ae0.W_dec[j] - ae0.W_dec[j].mean()) @ e), abs=1e-5)
    assert len(w["de_embedding"]) == 5 and w["upstream_via_heads"] and w["logits_promoted"]


def test_graph_routes(dbg_tc, dbg):
    from circuit_debugger.server.app import Settings, create_app

    c = TestClient(create_app(Settings(models=[]), debugger=dbg_tc))
    r = c.post("/api/graph", json={"model": "tiny-tc", "prompt": PROMPT, "target": " Mary", "distractor": " John"})
    assert r.status_code == 200, r.text
    assert r.json()["nodes"][-1]["id"] == "TARGET" or any(n["id"] == "TARGET" for n in r.json()["nodes"])
    assert c.post("/api/latent/inputs", json={"model": "tiny-tc", "prompt": PROMPT, "node": "L1.T3@4"}).status_code == 200
    assert c.post("/api/latent/weights", json={"model": "tiny-tc", "node": "L0.T3"}).status_code == 200
    bad = c.post("/api/latent/weights", json={"model": "tiny-tc", "node": "L0.N3"})
    assert bad.status_code == 422 and "transcoder latents" in bad.json()["detail"]
    c2 = TestClient(create_app(Settings(models=[]), debugger=dbg))
    # without transcoders the MLPs are neurons in the graph; asking for transcoders is a 422
    neurons = c2.post("/api/graph", json={"model": "tiny", "prompt": PROMPT, "target": " Mary"})
    assert neurons.status_code == 200 and any(n["kind"] == "neuron" for n in neurons.json()["nodes"])
    none = c2.post("/api/graph", json={"model": "tiny", "prompt": PROMPT, "target": " Mary", "mlp": "transcoder"})
    assert none.status_code == 422 and "has no transcoder" in none.json()["detail"]


def test_hand_propagated_edges_equal_autograd(model_tc):
    """The fast backward walk (used by graphs) equals autograd through the frozen model."""
    from circuit_debugger.autoencoders.graph import (edges_into, edges_linear, forward_leaves, logit_direction,
                                                     make_leaves, sources)

    f = capture(model_tc, model_tc.tokenize(PROMPT))
    srcs = sources(f)
    leaves = make_leaves(f)
    L, H, seq = 2, model_tc.shape.n_heads, len(f.ids)
    gates = torch.ones(L, H, seq, requires_grad=True)
    pres, final = forward_leaves(f, leaves, gates)
    u, b = logit_direction(model_tc, model_tc.codec.output_token(" Mary"), model_tc.codec.output_token(" John"))
    picks = [(1, 9, int(i)) for i in (f.acts[1][9] > 0).nonzero().flatten()[:5]] + \
            [(0, 4, int(i)) for i in (f.acts[0][4] > 0).nonzero().flatten()[:3]]
    reads = torch.stack([pres[l][p, i] for l, p, i in picks] + [final[seq - 1] @ u + b])
    want, extra = edges_into(f, srcs, reads, leaves, {"gates": gates})
    outs: list = []
    with torch.no_grad():
        forward_leaves(f, make_leaves(f), heads=outs)
    got, heads = edges_linear(f, picks + [("target", seq - 1, u)], outs)
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(heads, extra["gates"], atol=1e-5)
