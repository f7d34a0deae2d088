"""Attribution graphs through every dictionary kind (issue 15): cross-layer transcoders (read at
hook_resid_mid or ln2.hook_normalized), circuit-tracer transcoders reading hook_resid_mid, hook_z
SAEs (decoder composed with W_O), and CLT layers mixed with neuron layers.

The reference is an independent frozen model written here on the HuggingFace GPT-2 with plain
torch hooks (no engine code): a custom attention function returns the clean attention pattern,
every LayerNorm is re-applied with its clean scale, and each sublayer whose units are graph
nodes returns their held values' writes, computed here from the published dictionary layouts
(the tensors this test wrote) and the model's clean activations. In it we check that each node's
read is the graph's value, that each edge equals the change of its target's read when the
source is removed, and that the graph's constant is the read with every source removed (so
incoming edges + constant = the node's value)."""

import random

import pytest
import torch

from circuit_debugger.autoencoders import load_onto
from circuit_debugger.engine import Debugger
from circuit_debugger.errors import UserError
from circuit_debugger.loading import load_model
from test_formats import F, PROMPT, circuit_tracer_set, clt_folder, saelens_folder

TOL = 1e-4


# ---------------------------------------------------------------- the independent reference
def _frozen_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kw):
    """A transformers attention function that ignores Q·K and uses the pattern held on the module."""
    P = module.cd_pattern[None].to(value.dtype)  # [1, H, q, k]
    return torch.matmul(P, value).transpose(1, 2).contiguous(), P


@pytest.fixture(scope="module")
def hf_pair(tiny_dir):
    from transformers import AttentionInterface, GPT2LMHeadModel

    AttentionInterface.register("cd_frozen_pattern", _frozen_attention)
    clean = GPT2LMHeadModel.from_pretrained(tiny_dir, attn_implementation="eager").eval()
    frozen = GPT2LMHeadModel.from_pretrained(tiny_dir, attn_implementation="cd_frozen_pattern").eval()
    return clean, frozen


def jumprelu_ct(pre, th):  # circuit-tracer: x·[x > θ]
    return pre * (pre > th)


class Reference:
    """The clean run's activations and the frozen model on the HF GPT-2, for one prompt and one
    graph configuration (attn / mlp modes per layer, the dictionaries' raw tensors)."""

    def __init__(self, hf_pair, ids, attn, mlp, dicts, k_neurons=4):
        self.clean, self.hf = hf_pair
        self.attn, self.mlp, self.d, self.k = attn, mlp, dicts, k_neurons
        self.ids = torch.tensor([ids])
        tr = self.clean.transformer
        L = len(tr.h)
        rec: dict = {}
        hooks = []

        def pre(name):
            return lambda mod, args: rec.__setitem__(name, args[0][0].detach())

        def post(name):
            return lambda mod, args, out: rec.__setitem__(name, (out[0] if isinstance(out, tuple) else out)[0].detach())

        hooks.append(tr.ln_f.register_forward_pre_hook(pre("ln_f")))
        hooks += [tr.wte.register_forward_hook(post("emb")), tr.wpe.register_forward_hook(post("pos"))]
        for l, b in enumerate(tr.h):
            hooks += [b.ln_1.register_forward_pre_hook(pre(f"ln1.{l}")), b.ln_2.register_forward_pre_hook(pre(f"ln2.{l}")),
                      b.attn.c_proj.register_forward_pre_hook(pre(f"z.{l}")), b.attn.register_forward_hook(post(f"attn.{l}")),
                      b.mlp.c_fc.register_forward_hook(post(f"fc.{l}")), b.mlp.register_forward_hook(post(f"mlp.{l}"))]
        with torch.no_grad():
            out = self.clean(self.ids, output_attentions=True)
        for h in hooks:
            h.remove()
        self.patterns = [a[0].detach() for a in out.attentions]
        self.logits = out.logits[0].detach()
        eps = self.clean.config.layer_norm_epsilon
        scale = lambda x: (x.var(-1, keepdim=True, unbiased=False) + eps).sqrt()
        self.s = {n: scale(rec[n]) for n in rec if n.startswith("ln")}
        src = {"emb": rec["emb"], "pos": rec["pos"]}
        C = [l for l in range(L) if mlp[l] == "transcoder"]
        for l in range(L):
            blk = tr.h[l]
            if attn[l] == "sae":  # hook_z SAE: encoder on z − b_dec; write (acts·W_dec + b_dec) through c_proj
                t = dicts["z"][l]
                acts = torch.relu((rec[f"z.{l}"] - t["b_dec"]) @ t["W_enc"] + t["b_enc"])
                write = (acts @ t["W_dec"] + t["b_dec"]) @ blk.attn.c_proj.weight + blk.attn.c_proj.bias
                src[f"sae{l}"], src[f"saeerr{l}"] = acts, rec[f"attn.{l}"] - write
            if mlp[l] == "transcoder":
                src[f"tc{l}"] = jumprelu_ct(self.mlp_in(l, rec[f"ln2.{l}"]) @ self.enc(l).T + self.b_enc(l), self.thr(l))
            else:
                post_ = self.clean.transformer.h[l].mlp.act(rec[f"fc.{l}"])
                W_out = blk.mlp.c_proj.weight  # [d_mlp, d]
                sel = (post_.abs() * W_out.norm(dim=-1)).topk(k_neurons, dim=-1).indices
                neur = torch.zeros_like(post_).scatter(-1, sel, post_.gather(-1, sel))
                src[f"neur{l}"], src[f"rest{l}"] = neur, rec[f"mlp.{l}"] - blk.mlp.c_proj.bias - neur @ W_out
        for l in C:
            src[f"tcerr{l}"] = rec[f"mlp.{l}"] - self.mlp_write(l, src, C, with_error=False)
        self.C, self.src = C, {k: v.detach() for k, v in src.items()}

    # the MLP-site dictionary, from the tensors as written
    def enc(self, l):
        t = self.d["mlp"]
        return t[l][f"W_enc_{l}"] if self.d["clt"] else t[l]["W_enc"]

    def b_enc(self, l):
        t = self.d["mlp"]
        return t[l][f"b_enc_{l}"] if self.d["clt"] else t[l]["b_enc"]

    def thr(self, l):
        t = self.d["mlp"]
        return t[l][f"threshold_{l}"] if self.d["clt"] else t[l]["threshold"]

    def mlp_in(self, l, resid_mid):
        if self.d["read"] == "hook_resid_mid":
            return resid_mid
        return (resid_mid - resid_mid.mean(-1, keepdim=True)) / self.s[f"ln2.{l}"]

    def mlp_write(self, l, src, C, with_error=True):
        t = self.d["mlp"]
        if self.d["clt"]:
            out = t[l][f"b_dec_{l}"] + sum(src[f"tc{s}"] @ t[s][f"W_dec_{s}"][:, l - s] for s in C if s <= l)
        else:
            out = src[f"tc{l}"] @ t[l]["W_dec"] + t[l]["b_dec"]
        return out + src[f"tcerr{l}"] if with_error else out

    def run(self, src):
        """The frozen model on sources `src`: ({node id: read}, logits [seq, vocab])."""
        tr = self.hf.transformer
        reads: dict = {}
        hooks = []

        def ln_frozen(name):
            def fn(mod, args, out):
                x = args[0]
                return (x - x.mean(-1, keepdim=True)) / self.s[name][None] * mod.weight + mod.bias
            return fn

        hooks += [tr.wte.register_forward_hook(lambda mod, a, o: src["emb"][None]),
                  tr.wpe.register_forward_hook(lambda mod, a, o: src["pos"][None]),
                  tr.ln_f.register_forward_hook(ln_frozen("ln_f"))]
        for l, b in enumerate(tr.h):
            b.attn.cd_pattern = self.patterns[l]
            hooks += [b.ln_1.register_forward_hook(ln_frozen(f"ln1.{l}")), b.ln_2.register_forward_hook(ln_frozen(f"ln2.{l}"))]
            if self.attn[l] == "sae":
                t = self.d["z"][l]

                def z_read(mod, args, l=l, t=t):
                    pre = (args[0][0] - t["b_dec"]) @ t["W_enc"] + t["b_enc"]
                    for p, i in self.src[f"sae{l}"].nonzero().tolist():
                        reads[f"L{l}.S{i}@{p}"] = float(pre[p, i])

                def sae_write(mod, args, out, l=l, t=t, b=b):
                    w = (src[f"sae{l}"] @ t["W_dec"] + t["b_dec"]) @ b.attn.c_proj.weight + b.attn.c_proj.bias
                    return (w[None] + src[f"saeerr{l}"][None],) + tuple(out[1:])
                hooks += [b.attn.c_proj.register_forward_pre_hook(z_read), b.attn.register_forward_hook(sae_write)]
            if self.mlp[l] == "transcoder":
                def tc_read(mod, args, l=l):
                    pre = self.mlp_in(l, args[0][0]) @ self.enc(l).T + self.b_enc(l)
                    for p, i in self.src[f"tc{l}"].nonzero().tolist():
                        reads[f"L{l}.T{i}@{p}"] = float(pre[p, i])
                hooks += [b.ln_2.register_forward_pre_hook(tc_read),
                          b.mlp.register_forward_hook(lambda mod, a, o, l=l: self.mlp_write(l, src, self.C)[None])]
            else:
                def n_read(mod, args, out, l=l):
                    for p, i in self.src[f"neur{l}"].nonzero().tolist():
                        reads[f"L{l}.N{i}@{p}"] = float(out[0, p, i])
                hooks += [b.mlp.c_fc.register_forward_hook(n_read),
                          b.mlp.register_forward_hook(lambda mod, a, o, l=l, b=b: (
                              src[f"neur{l}"] @ b.mlp.c_proj.weight + b.mlp.c_proj.bias + src[f"rest{l}"])[None])]
        try:
            with torch.no_grad():
                logits = self.hf(self.ids).logits[0]
        finally:
            for h in hooks:
                h.remove()
        return reads, logits

    def without(self, node_id):
        """The sources with one node removed (set to zero)."""
        out = {k: v.clone() for k, v in self.src.items()}
        name, p = node_id.split("@")
        p = int(p)
        if name in ("EMB", "POS"):
            out[name.lower()][p] = 0
            return out
        layer, unit = name[1:].split(".")
        l = int(layer)
        key = {"TERR": f"tcerr{l}", "SERR": f"saeerr{l}", "MLP": f"rest{l}"}.get(unit)
        if key:
            out[key][p] = 0
        else:
            out[{"T": "tc", "S": "sae", "N": "neur"}[unit[0]] + str(l)][p, int(unit[1:])] = 0
        return out

    def read(self, reads, logits, node_id, a, b):
        return float(logits[-1, a] - logits[-1, b]) if node_id == "TARGET" else reads[node_id]


# ---------------------------------------------------------------- models with the dictionaries
def _model(tiny_dir, root, name, clt=None, ct=None, z=False):
    m = load_model(str(tiny_dir), name=name)
    s = m.shape
    dicts = {"clt": clt is not None, "read": clt or ct, "z": {}}
    if clt:
        dicts["mlp"] = clt_folder(root / "clt", hook_in=None if clt == "hook_resid_mid" else clt, seed=300)
    if ct:
        dicts["mlp"] = circuit_tracer_set(root / "ct", hook_in=ct, seed=400)
    if z:
        hz = s.n_heads * s.d_head
        for l in range(s.n_layers):
            dicts["z"][l] = saelens_folder(root / f"z{l}", hz, 500 + 10 * l, {
                "architecture": "standard", "hook_name": f"blocks.{l}.attn.hook_z", "apply_b_dec_to_input": True})
    assert load_onto(m, root) == {}
    return m, dicts


@pytest.fixture(scope="module")
def clt_mid(tiny_dir, tmp_path_factory):
    m, d = _model(tiny_dir, tmp_path_factory.mktemp("cltmid"), "clt-mid", clt="hook_resid_mid", z=True)
    return m, d, Debugger([m])


@pytest.fixture(scope="module")
def clt_ln2(tiny_dir, tmp_path_factory):
    m, d = _model(tiny_dir, tmp_path_factory.mktemp("cltln2"), "clt-ln2", clt="ln2.hook_normalized", z=True)
    return m, d, Debugger([m])


@pytest.fixture(scope="module")
def tc_mid(tiny_dir, tmp_path_factory):
    m, d = _model(tiny_dir, tmp_path_factory.mktemp("tcmid"), "tc-mid", ct="hook_resid_mid")
    return m, d, Debugger([m])


CASES = [  # (fixture, attn modes, mlp modes)
    ("clt_mid", ["sae", "sae"], ["transcoder", "transcoder"]),
    ("clt_mid", ["ov", "ov"], ["neurons", "transcoder"]),
    ("clt_ln2", ["ov", "sae"], ["transcoder", "neurons"]),
    ("clt_ln2", ["sae", "ov"], ["transcoder", "transcoder"]),
    ("tc_mid", ["ov", "ov"], ["transcoder", "transcoder"]),
]


def check_graph_against_reference(fx, hf_pair, attn, mlp, n_edges=40):
    """Returns the largest |graph − reference| seen (values, edges, constants)."""
    m, dicts, dbg = fx
    g = dbg.graph(m.name, PROMPT, " Mary", " John", node_threshold=1.0, edge_threshold=1.0, attn=attn, mlp=mlp,
                  neurons_per_position=4, qk_per_head=0, max_latents=5000, max_nodes=100000)
    ids = m.tokenize(PROMPT)
    ref = Reference(hf_pair, ids, attn, mlp, dicts)
    a, b = m.codec.output_token(" Mary"), m.codec.output_token(" John")
    base, base_logits = ref.run(ref.src)
    assert torch.allclose(base_logits, ref.logits, atol=1e-4)  # the frozen model at its own values is the model
    worst = 0.0
    by_id = {n["id"]: n for n in g["nodes"]}
    kinds = {n["kind"] for n in g["nodes"]}
    assert ("transcoder" in kinds) and (("sae" in kinds) == ("sae" in attn)) and (("neuron" in kinds) == ("neurons" in mlp))
    for n in g["nodes"]:  # held values are the reference's, reads are the reference's
        if n["kind"] in ("transcoder", "sae", "neuron"):
            key = {"transcoder": "tc", "sae": "sae", "neuron": "neur"}[n["kind"]] + str(n["layer"])
            assert n["activation"] == pytest.approx(float(ref.src[key][n["position"], n["index"]]), abs=TOL), n
        if "input" in n:
            want = ref.read(base, base_logits, n["id"], a, b)
            worst = max(worst, abs(n["input"] - want))
            assert n["input"] == pytest.approx(want, abs=TOL), n
    # the constant: every source removed
    zero = {k: torch.zeros_like(v) for k, v in ref.src.items()}
    z_reads, z_logits = ref.run(zero)
    rows: dict = {}
    for e in g["edges"]:
        rows.setdefault(e["target"], []).append(e)
    checked_rows = 0
    for nid in ["TARGET"] + random.Random(0).sample(sorted(k for k in rows if k != "TARGET"), min(8, len(rows) - 1)):
        n = by_id[nid]
        const = ref.read(z_reads, z_logits, nid, a, b) if nid == "TARGET" else z_reads[nid]
        worst = max(worst, abs(n["bias"] - const))
        assert n["bias"] == pytest.approx(const, abs=TOL), nid
        total = sum(e["weight"] for e in rows[nid]) + n["bias"]
        assert total == pytest.approx(n["input"], abs=TOL), nid  # incoming edges + constant = the value
        checked_rows += 1
    assert checked_rows >= 3
    # edges = removal, for a sample covering every source kind and every target kind
    firsts: dict = {}
    for e in g["edges"]:
        firsts.setdefault((by_id[e["source"]]["kind"], by_id[e["target"]]["kind"]), e)
    sample = list(firsts.values()) + random.Random(1).sample(g["edges"], min(n_edges, len(g["edges"])))
    src_kinds = {by_id[e["source"]]["kind"] for e in sample}
    assert {"embed", "transcoder", "transcoder_error"} <= src_kinds
    if dicts["clt"] and mlp == ["transcoder", "transcoder"]:  # a layer-0 CLT latent writes into layer 1's MLP too
        assert any(by_id[e["source"]]["kind"] == "transcoder" and by_id[e["source"]]["layer"] == 0
                   and by_id[e["target"]]["layer"] == 1 for e in g["edges"] if e["target"] != "TARGET")
    for e in sample:
        reads, logits = ref.run(ref.without(e["source"]))
        change = ref.read(base, base_logits, e["target"], a, b) - ref.read(reads, logits, e["target"], a, b)
        worst = max(worst, abs(change - e["weight"]))
        assert change == pytest.approx(e["weight"], abs=TOL), e
    return worst


@pytest.mark.parametrize("fixture,attn,mlp", CASES)
def test_graph_edges_equal_removal_in_an_independent_frozen_model(request, hf_pair, fixture, attn, mlp):
    worst = check_graph_against_reference(request.getfixturevalue(fixture), hf_pair, attn, mlp)
    print(f"{fixture} attn={attn} mlp={mlp}: largest |graph - reference| = {worst:.2e}")


def test_clt_graph_target_matches_the_model_and_sums(clt_mid):
    m, _, dbg = clt_mid
    g = dbg.graph(m.name, PROMPT, " Mary", " John")
    ids = m.tokenize(PROMPT)
    logits = m.run(m.tokens_tensor(ids))[0, -1]
    want = float(logits[m.codec.output_token(" Mary")] - logits[m.codec.output_token(" John")])
    assert g["target"]["value"] == pytest.approx(want, abs=1e-4)
    assert g["granularity"]["mlp"] == ["transcoder", "transcoder"]
    assert any(n["kind"] == "transcoder" for n in g["nodes"])
    few = dbg.graph(m.name, PROMPT, " Mary", " John", max_nodes=16)  # rows for the most influential only
    assert few["n_internal_with_rows"] == 16 < few["n_internal_total"]
    assert few["target"]["value"] == pytest.approx(want, abs=1e-4)
    # an intervention on a CLT latent is held in the graph: its target is the intervened model's
    live = next(n for n in g["nodes"] if n["kind"] == "transcoder" and n["layer"] == 0)
    ivs = [{"node": live["id"].split("@")[0], "op": "zero"}]
    gi = dbg.graph(m.name, PROMPT, " Mary", " John", interventions=ivs)
    r = dbg.intervene(m.name, PROMPT, ivs, target=" Mary", distractor=" John")
    assert gi["target"]["value"] == pytest.approx(r["logit_diff"], abs=1e-4)


def test_mlp_output_sae_latents_are_refused_as_graph_nodes_by_name(tiny_dir, tmp_path):
    from fastapi.testclient import TestClient

    from circuit_debugger.server.app import Settings, create_app

    m = load_model(str(tiny_dir), name="mlpout")
    saelens_folder(tmp_path / "mo", 32, 600, {"architecture": "standard", "hook_name": "blocks.1.hook_mlp_out"})
    circuit_tracer_set(tmp_path / "ct", n=1, seed=610)  # a transcoder on layer 0 only
    assert load_onto(m, tmp_path) == {}
    dbg = Debugger([m])
    assert not dbg.capabilities("mlpout")["graph"]  # not offered where a layer would fall back to neurons
    g = dbg.graph("mlpout", PROMPT, " Mary", " John")  # by default that layer is neurons
    assert g["granularity"]["mlp"] == ["transcoder", "neurons"]
    with pytest.raises(UserError, match="hook_mlp_out.*nonlinear"):
        dbg.graph("mlpout", PROMPT, " Mary", " John", mlp="transcoder")
    client = TestClient(create_app(Settings(models=[]), debugger=dbg))
    r = client.post("/api/graph", json={"model": "mlpout", "prompt": PROMPT, "target": " Mary", "distractor": " John",
                                        "mlp": ["transcoder", "transcoder"]})
    assert r.status_code == 422 and "MLP-output SAE latents are not graph nodes" in r.text
    r = client.post("/api/latent/inputs", json={"model": "mlpout", "prompt": PROMPT, "node": "L1.T3@5"})
    assert r.status_code == 422 and "nonlinear" in r.text


def test_graph_edges_mutation_is_caught(clt_mid, hf_pair, monkeypatch):
    """The check above can fail: with the CLT's cross-layer writes taken from the wrong decoder
    slice in the edge walk, the edges no longer equal removal in the reference."""
    from circuit_debugger.autoencoders import granular_edges

    m, dicts, dbg = clt_mid
    real = granular_edges.tc_decoders
    monkeypatch.setattr(granular_edges, "tc_decoders", lambda f, l: [(s, W * (1.0 if s == l else 1.5))
                                                                      for s, W in real(f, l)])
    with pytest.raises(AssertionError):
        check_graph_against_reference((m, dicts, Debugger([m])), hf_pair, ["ov", "ov"], ["transcoder", "transcoder"])
