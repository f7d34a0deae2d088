"""Traces of hook_z-SAE and MLP-output-SAE latents, and the latent routes (inputs, weights) for
cross-layer transcoders and transcoders reading hook_resid_mid (issue 15).

References are computed here from the tensors the test wrote and the HuggingFace model's own
activations (plain torch hooks); the frozen model for latent inputs is the independent one in
test_graph_dictionaries."""

import pytest
import torch
from fastapi.testclient import TestClient

from circuit_debugger.autoencoders import load_onto
from circuit_debugger.engine import Debugger
from circuit_debugger.errors import UserError
from circuit_debugger.loading import load_model
from circuit_debugger.server.app import Settings, create_app
from test_formats import PROMPT, jumprelu, saelens_folder
from test_graph_dictionaries import Reference, clt_mid, hf_pair, tc_mid  # noqa: F401 (fixtures)

POS = 6
SCALE = 1.7  # the MLP-out SAE's norm_scaling_factor


@pytest.fixture(scope="module")
def sites(tiny_dir, tmp_path_factory):
    """hook_z SAEs on both layers, a JumpReLU MLP-output SAE (inputs scaled) on layer 1 and a
    residual SAE entering layer 1."""
    root = tmp_path_factory.mktemp("sites")
    m = load_model(str(tiny_dir), name="sites")
    hz = m.shape.n_heads * m.shape.d_head
    t = {l: saelens_folder(root / f"z{l}", hz, 700 + 10 * l, {"architecture": "standard", "apply_b_dec_to_input": True,
                                                            "hook_name": f"blocks.{l}.attn.hook_z"}) for l in range(2)}
    t["res"] = saelens_folder(root / "res", 32, 730, {"architecture": "standard", "hook_name": "blocks.1.hook_resid_pre"})
    t["mlp"] = saelens_folder(root / "mlp", 32, 720, {"architecture": "jumprelu", "hook_name": "blocks.1.hook_mlp_out",
                                                      "normalize_activations": "expected_average_only_in",
                                                      "norm_scaling_factor": SCALE}, threshold=True)
    assert load_onto(m, root) == {}
    return m, t, Debugger([m])


def hf_acts(hf_model, m, layer):
    """The HF model's own z (before c_proj), MLP post-activations and MLP output at `layer`."""
    blk = hf_model.transformer.h[layer]
    rec = {}
    hooks = [blk.attn.c_proj.register_forward_pre_hook(lambda mod, a: rec.__setitem__("z", a[0][0])),
             blk.mlp.act.register_forward_hook(lambda mod, a, o: rec.__setitem__("post", o[0])),
             blk.mlp.register_forward_hook(lambda mod, a, o: rec.__setitem__("out", o[0]))]
    with torch.no_grad():
        hf_model(torch.tensor([m.tokenize(PROMPT)]))
    for h in hooks:
        h.remove()
    return rec


@pytest.mark.parametrize("opts", [{}, {"attn_basis": "saes"}])
def test_hook_z_latent_trace_is_its_heads_z(sites, hf_model, opts):
    """A hook_z latent's pre-activation = Σ_h z_h · W_enc[h-slice] + const: each head of its layer
    writes it directly (nothing else does), act×grad equals that for a linear read, and the sum closes
    — also when that layer's own SAE is spliced (attn_basis 'saes')."""
    m, t, dbg = sites
    z = hf_acts(hf_model, m, 1)["z"][POS]  # [H·d_head]
    q = t[1]
    live = (torch.relu((z - q["b_dec"]) @ q["W_enc"] + q["b_enc"]) > 0).nonzero().flatten().tolist()
    i = live[0]
    r = dbg.trace("sites", PROMPT, {"kind": "latent", "node": f"L1.S{i}", "position": POS}, top_k=None, **opts)
    assert r["value"] == pytest.approx(float((z - q["b_dec"]) @ q["W_enc"][:, i] + q["b_enc"][i]), abs=1e-5)
    assert abs(r["sum_check"]["residual"]) < 1e-5
    rows = {n["id"]: n for n in r["nodes"]}
    e = m.shape.d_head
    for h in range(m.shape.n_heads):
        want = float(z[h * e:(h + 1) * e] @ q["W_enc"][h * e:(h + 1) * e, i])
        assert rows[f"L1.H{h}"]["direct_effect"] == pytest.approx(want, abs=1e-5)
        assert rows[f"L1.H{h}"]["total_effect"] == pytest.approx(want, abs=1e-5)
    others = [n for n in r["nodes"] if not n["id"].startswith("L1.H") and n["id"] != "L1.ATTN"]
    assert len(others) > 10 and all(n["direct_effect"] == 0 for n in others)
    assert rows["L1.ATTN"]["direct_effect"] == pytest.approx(r["value"] - r["bias_terms"]["readout.bias"], abs=1e-5)


def test_mlp_output_latent_trace_is_its_neurons(sites, hf_model):
    """An MLP-output SAE latent reads the MLP output: its layer's neurons write it through W_out
    (plus b_out); each neuron's direct effect equals its exact zero-ablation effect."""
    m, t, dbg = sites
    a = hf_acts(hf_model, m, 1)
    q = t["mlp"]
    pre = (SCALE * a["out"][POS] - q["b_dec"]) @ q["W_enc"] + q["b_enc"]
    i = int(pre.abs().argmax())
    r = dbg.trace("sites", PROMPT, {"kind": "latent", "node": f"L1.T{i}", "position": POS}, top_k=None, verify_top=20)
    assert r["value"] == pytest.approx(float(pre[i]), abs=1e-4)
    assert abs(r["sum_check"]["residual"]) < 1e-5
    W_out = hf_model.transformer.h[1].mlp.c_proj.weight.detach()  # [d_mlp, d]
    u = SCALE * q["W_enc"][:, i]
    rows = {n["id"]: n for n in r["nodes"]}
    for n in range(0, m.shape.d_mlp, 17):
        assert rows[f"L1.N{n}"]["direct_effect"] == pytest.approx(float(a["post"][POS, n] * (W_out[n] @ u)), abs=1e-5)
    assert r["bias_terms"]["L1.MLP.bias"] == pytest.approx(float(hf_model.transformer.h[1].mlp.c_proj.bias.detach() @ u), abs=1e-5)
    assert rows["L1.H0"]["direct_effect"] == 0 and rows["L0.N0"]["direct_effect"] == 0
    neurons = [n for n in r["nodes"] if "exact_effect" in n and n["kind"] == "neuron" and n["layer"] == 1]
    assert neurons
    for n in neurons:
        assert n["exact_effect"] == pytest.approx(n["direct_effect"], abs=1e-4)


def test_traces_of_the_new_latents_over_http(sites):
    m, _, dbg = sites
    c = TestClient(create_app(Settings(models=[]), debugger=dbg))
    for node in ("L0.S2", "L1.T3"):
        r = c.post("/api/trace", json={"model": "sites", "prompt": PROMPT,
                                       "target": {"kind": "latent", "node": node, "position": POS}})
        assert r.status_code == 200, r.text
        assert abs(r.json()["sum_check"]["residual"]) < 1e-5


@pytest.mark.parametrize("fixture", ["clt_mid", "tc_mid"])
def test_latent_inputs_sum_to_the_preactivation_and_equal_removal(request, hf_pair, fixture):
    """Every source's contribution into a CLT / resid_mid-transcoder latent equals the change of its
    read when that source is removed in the independent frozen model; contributions + bias = the read."""
    m, dicts, dbg = request.getfixturevalue(fixture)
    ids = m.tokenize(PROMPT)
    ref = Reference(hf_pair, ids, ["ov", "ov"], ["transcoder", "transcoder"], dicts)
    base, _ = ref.run(ref.src)
    node = max((k for k in base if k.startswith("L1.T")), key=lambda k: abs(base[k]))
    out = dbg.latent_inputs(m.name, PROMPT, node, k=1000)
    assert out["pre_activation"] == pytest.approx(base[node], abs=1e-4)
    assert out["sum_of_contributions"] + out["bias"] == pytest.approx(out["pre_activation"], abs=1e-5)
    assert sum(c["contribution"] for c in out["contributions"]) == pytest.approx(out["sum_of_contributions"], abs=1e-4)
    zero, _ = ref.run({k: torch.zeros_like(v) for k, v in ref.src.items()})
    assert out["bias"] == pytest.approx(zero[node], abs=1e-4)
    kinds = {c["kind"] for c in out["contributions"]}
    assert {"embed", "transcoder", "transcoder_error"} <= kinds
    for c in out["contributions"][:6] + [c for c in out["contributions"] if c["kind"] == "transcoder"][:3]:
        reads, _ = ref.run(ref.without(c["source"]))
        assert base[node] - reads[node] == pytest.approx(c["contribution"], abs=1e-4), c
    assert out["heads"] and all(h["head"].startswith(("L0.H", "L1.H")) for h in out["heads"])
    http = TestClient(create_app(Settings(models=[]), debugger=dbg)).post(
        "/api/latent/inputs", json={"model": m.name, "prompt": PROMPT, "node": node, "k": 5})
    assert http.status_code == 200 and http.json()["pre_activation"] == pytest.approx(out["pre_activation"])


def test_latent_weights_of_a_clt_latent(clt_mid):
    """By weights alone: a layer-0 CLT latent reaches a layer-1 latent (raw hook_resid_mid read)
    through its write into MLP 0 only, W_dec_0[j, 0]·W_enc_1[i]; its logit lens sums its writes into
    both MLPs."""
    m, dicts, dbg = clt_mid
    t = dicts["mlp"]
    i = 3
    w = dbg.latent_weights(m.name, f"L1.T{i}", k=5)
    top = w["upstream_direct"][0]
    j = int(top["node"].split(".T")[1])
    assert top["node"].startswith("L0.T")
    assert top["value"] == pytest.approx(float(t[0]["W_dec_0"][j, 0] @ t[1]["W_enc_1"][i]), abs=1e-5)
    assert abs(top["value"]) == pytest.approx(float((t[0]["W_dec_0"][:, 0] @ t[1]["W_enc_1"][i]).abs().max()), abs=1e-5)
    w0 = dbg.latent_weights(m.name, f"L0.T{j}", k=5)
    down = w0["downstream"][0]
    assert abs(down["value"]) == pytest.approx(float((t[0]["W_dec_0"][j, 0] @ t[1]["W_enc_1"].T).abs().max()), abs=1e-5)
    W = m.W
    d = t[0]["W_dec_0"][j].sum(0)
    lens = ((d - d.mean()) * W.ln["ln_final"][0]) @ W.W_U
    assert w0["logits_promoted"][0]["value"] == pytest.approx(float(lens.max()), abs=1e-4)


def test_latent_weights_of_a_resid_mid_transcoder_and_refusals(tc_mid, sites):
    m, dicts, dbg = tc_mid
    t = dicts["mlp"]
    w = dbg.latent_weights(m.name, "L1.T5", k=5)
    assert abs(w["upstream_direct"][0]["value"]) == pytest.approx(float((t[0]["W_dec"] @ t[1]["W_enc"][5]).abs().max()),
                                                                  abs=1e-5)
    ms, _, dbs = sites
    with pytest.raises(UserError, match="hook_mlp_out"):
        dbs.latent_weights("sites", "L1.T2")
    with pytest.raises(UserError, match="transcoder latents"):
        dbs.latent_inputs("sites", PROMPT, "L1.S2@3")


def test_node_values_take_the_residual_basis(sites):
    """/api/node-values (the node panel's numbers) splices the residual SAEs when asked, and for a
    residual latent whatever is asked: its row is the table's row."""
    m, _, dbg = sites
    c = TestClient(create_app(Settings(models=[]), debugger=dbg))
    table = dbg.attribute("sites", PROMPT, " Mary", " John", top_k=None, resid_basis="saes")
    rows = {n["id"]: n for n in table["nodes"]}
    q = {"model": "sites", "prompt": PROMPT, "target": " Mary", "distractor": " John"}
    for node, basis in (("L1.R3", "none"), ("L1.RERR", "saes"), ("L0.H1", "saes")):
        r = c.post("/api/node-values", json=dict(q, node=node, resid_basis=basis))
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["resid_basis"] == "saes"
        assert got["row"]["direct_effect"] == pytest.approx(rows[node]["direct_effect"], abs=1e-6)
        assert got["row"]["total_effect"] == pytest.approx(rows[node]["total_effect"], abs=1e-6)
    assert rows["L0.H1"]["direct_effect"] == 0  # upstream of the residual SAE: the basis changed the row
    plain = c.post("/api/node-values", json=dict(q, node="L0.H1")).json()
    assert plain["resid_basis"] == "none" and plain["row"]["direct_effect"] != 0
    bad = c.post("/api/node-values", json=dict(q, node="L0.H1", resid_basis="latents"))
    assert bad.status_code == 422
    # the node panel's logit lens of the residual error: its write on this prompt (was a 500)
    lens = c.post("/api/logit-lens", json={"model": "sites", "node": "L1.RERR", "prompt": PROMPT, "position": POS, "k": 3})
    assert lens.status_code == 200, lens.text
    assert len(lens.json()["promoted"]) == 3
