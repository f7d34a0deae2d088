"""Every supported model family, exact against plain HuggingFace computations.

Each family is a tiny random checkpoint (tests/families.py: every weight, bias and norm gain
re-randomised) built once per session. The references are written here with torch hooks on the
HF modules (o_proj / down_proj inputs, MLP projections, post-norm in/out), never via the bridge.
"""

from __future__ import annotations

import math

import re

import pytest
import torch

from families import FAMILIES, build_family_dir

PROMPT = "When Mary and John went to the store, John gave a drink to"
CF_PROMPT = "When Alice and Bob went to the park, Bob gave a ball to"
REFS = ["The cat sat on the mat and the dog sat on the rug.", "After Tom and Anna met at the school, Tom handed a book to Anna."]

PREFIX = {"gpt2": "transformer.h.{}", "opt": "model.decoder.layers.{}", "bloom": "transformer.h.{}",
          "gpt_neox": "gpt_neox.layers.{}", "gptj": "transformer.h.{}"}
O_PROJ = {"gpt2": "attn.c_proj", "opt": "self_attn.out_proj", "bloom": "self_attention.dense",
          "gpt_neox": "attention.dense", "gptj": "attn.out_proj", "phi": "self_attn.dense"}
DOWN = {"gpt2": "mlp.c_proj", "opt": "fc2", "bloom": "mlp.dense_4h_to_h", "gpt_neox": "mlp.dense_4h_to_h",
        "gptj": "mlp.fc_out", "phi": "mlp.fc2"}
PRE = {"gpt2": "mlp.c_fc", "opt": "fc1", "bloom": "mlp.dense_h_to_4h", "gpt_neox": "mlp.dense_h_to_4h",
       "gptj": "mlp.fc_in", "phi": "mlp.fc1", "phi3": "mlp.gate_up_proj"}
POST_ATTN = {"gemma2": "post_attention_layernorm", "gemma3": "post_attention_layernorm",
             "olmo2": "post_attention_layernorm"}


def mod(hf, family, layer, table, default):
    return hf.get_submodule(PREFIX.get(family, "model.layers.{}").format(layer) + "." + table.get(family, default))


@pytest.fixture(scope="session")
def family_models(tmp_path_factory):
    """family -> (DebugModel, plain HF model loaded separately from the same directory)."""
    from transformers import AutoModelForCausalLM

    from circuit_debugger.loading import load_model

    root = tmp_path_factory.mktemp("families")
    out = {}
    for f in FAMILIES:
        d = build_family_dir(f, root / f)
        hf = AutoModelForCausalLM.from_pretrained(str(d), attn_implementation="eager").eval()
        out[f] = (load_model(str(d), name=f), hf)
    return out


@pytest.fixture(scope="session")
def fdbg(family_models):
    from circuit_debugger.engine import Debugger

    return Debugger([m for m, _ in family_models.values()])


def hf_run(hf, ids, pre_hooks=(), fwd_hooks=(), **kw):
    handles = [m.register_forward_pre_hook(fn) for m, fn in pre_hooks]
    handles += [m.register_forward_hook(fn) for m, fn in fwd_hooks]
    try:
        with torch.no_grad():
            return hf(torch.tensor([ids]), **kw)
    finally:
        for h in handles:
            h.remove()


def diff(logits, m, pos=-1):
    t, d = m.codec.output_token(" Mary"), m.codec.output_token(" John")
    return float(logits[0, pos, t] - logits[0, pos, d])


def close(a, b, tol=1e-5):
    return abs(a - b) <= tol * max(1.0, abs(b))


def slice_setter(index, value_fn):
    """A pre-hook replacing input[..., index] by value_fn(x) (the reference intervention)."""
    def hook(module, args):
        x = args[0].clone()
        x[..., index] = value_fn(x[..., index])
        return (x,) + tuple(args[1:])
    return hook


@pytest.mark.parametrize("family", FAMILIES)
def test_logit_diff_and_sum_check(family, family_models, fdbg):
    m, hf = family_models[family]
    ids = m.tokenize(PROMPT)
    r = fdbg.attribute(family, PROMPT, " Mary", " John", top_k=None)
    cap = getattr(hf.config, "final_logit_softcapping", None)
    if cap:
        hf.config.final_logit_softcapping = None  # the decomposed quantity is the pre-cap difference
    try:
        ref = diff(hf_run(hf, ids).logits, m)
    finally:
        if cap:
            hf.config.final_logit_softcapping = cap
    assert close(r["value"], ref), (r["value"], ref)
    assert (r["decomposed"] is not None) == bool(cap)
    assert abs(r["sum_check"]["residual"]) <= 1e-5 * max(1.0, abs(r["value"])), r["sum_check"]
    heads = [n for n in r["nodes"] if n["kind"] == "head" and n.get("direct_by_source")]
    assert heads
    for n in heads:  # the split by source position adds up to the head's direct effect (GQA: shared kv heads)
        assert math.isclose(sum(n["direct_by_source"]), n["direct_effect"], rel_tol=1e-4, abs_tol=1e-5)
    info = m.describe()["architecture"]
    assert info["n_kv_heads"] == m.bridge.cfg.n_key_value_heads or info["n_kv_heads"] == m.shape.n_heads


@pytest.mark.parametrize("family", FAMILIES)
def test_interventions_match_hf_hooks(family, family_models, fdbg):
    m, hf = family_models[family]
    ids = m.tokenize(PROMPT)
    cf = m.tokenize(CF_PROMPT)
    assert len(cf) == len(ids)
    dh, h, i = m.shape.d_head, 1, 5
    hs = slice(h * dh, (h + 1) * dh)
    o0, down1 = mod(hf, family, 0, O_PROJ, "self_attn.o_proj"), mod(hf, family, 1, DOWN, "mlp.down_proj")

    def record(module, ids_):
        store = {}

        def keep(mod_, args):
            store["x"] = args[0].clone()

        hf_run(hf, ids_, pre_hooks=[(module, keep)])
        x = store["x"]
        return x.reshape(len(ids_), x.shape[-1])  # [seq, width] (OPT's fc2 input is flattened to [b*s, width])

    means = {}
    for name, module in (("head", o0), ("neuron", down1)):
        xs = []
        for p in REFS:
            rid = m.tokenize(p)
            skip = 1 if m.codec.bos_id is not None and rid[0] == m.codec.bos_id and len(rid) > 1 else 0
            xs.append(record(module, rid)[skip:])
        means[name] = torch.cat(xs).mean(0)
    cf_vals = {"head": record(o0, cf), "neuron": record(down1, cf)}
    for node, module, index, key in ((f"L0.H{h}", o0, hs, "head"), (f"L1.N{i}", down1, i, "neuron")):
        for op in ("zero", "mean", "patch"):
            fn = {"zero": lambda x: torch.zeros_like(x), "mean": lambda x, k=key, ix=index: means[k][ix].expand_as(x),
                  "patch": lambda x, k=key, ix=index: cf_vals[k][:, ix].reshape(x.shape)}[op]
            ref = diff(hf_run(hf, ids, pre_hooks=[(module, slice_setter(index, fn))]).logits, m)
            got = fdbg.intervene(family, PROMPT, [{"node": node, "op": op}], target=" Mary", distractor=" John",
                                 counterfactual_prompt=CF_PROMPT, reference_prompts=REFS)
            assert close(got["logit_diff"], ref, 1e-4), (node, op, got["logit_diff"], ref)


@pytest.mark.parametrize("family", FAMILIES)
def test_attention_patterns_match_hf(family, family_models, fdbg):
    m, hf = family_models[family]
    ids = m.tokenize(PROMPT)
    att = hf_run(hf, ids, output_attentions=True).attentions
    for l in range(m.shape.n_layers):
        got = torch.tensor(list(fdbg.attention(family, PROMPT, l)["heads"].values()))
        assert torch.allclose(got, att[l][0], atol=1e-5), (l, float((got - att[l][0]).abs().max()))


def _rows_sum(r):
    return abs(r["sum_check"]["residual"]) <= 1e-5 * max(1.0, abs(r["value"]))


@pytest.mark.parametrize("family", FAMILIES)
def test_traces_match_hf(family, family_models, fdbg):
    m, hf = family_models[family]
    ids = m.tokenize(PROMPT)
    q = len(ids) - 1
    n_idx, h = 3, 2
    # neuron pre-activations (gate and up on gated MLPs)
    store = {}
    pre = mod(hf, family, 1, PRE, "mlp.gate_proj")
    seq = len(ids)
    hooks = [(pre, lambda mod_, a, out: store.__setitem__("pre", out.reshape(seq, out.shape[-1]).clone()))]
    gated = m.arch.mlp == "gated"
    if gated and family != "phi3":
        up = mod(hf, family, 1, {}, "mlp.up_proj")
        hooks.append((up, lambda mod_, a, out: store.__setitem__("up", out.reshape(seq, out.shape[-1]).clone())))
    out = hf_run(hf, ids, fwd_hooks=hooks, output_attentions=True)
    if family == "phi3":  # one fused projection: gate first, up second
        store["pre"], store["up"] = store["pre"].chunk(2, dim=-1)
    kinds = [("gate", "pre")] + ([("up", "up")] if gated else [])
    for inp, key in kinds:
        r = fdbg.trace(family, PROMPT, {"kind": "neuron", "node": f"L1.N{n_idx}", "position": q, "input": inp}, top_k=None)
        assert close(r["value"], float(store[key][q, n_idx])), (inp, r["value"], float(store[key][q, n_idx]))
        assert _rows_sum(r), r["sum_check"]
    # attention scores: post-rotary (+ALiBi), pre-cap. Differences of (capped) scores between
    # allowed keys are differences of HF's log-pattern (the softmax's normaliser cancels)
    pat = out.attentions[1][0, h, q]
    allowed = [k for k in range(q + 1) if pat[k] > 0]
    keys = sorted({allowed[0], allowed[len(allowed) // 2], allowed[-1]})
    scores = []
    for k in keys:
        r = fdbg.trace(family, PROMPT, {"kind": "attention", "node": f"L1.H{h}", "query": q, "key": k,
                                         "through": "query" if k % 2 else "key"}, top_k=None)
        assert _rows_sum(r), (k, r["sum_check"])
        scores.append(r["value"])
    s = torch.tensor(scores, dtype=torch.float64)
    cap = m.arch.attn_softcap
    if cap:
        s = cap * torch.tanh(s / cap)
    logp = pat[keys].double().log()
    assert torch.allclose(s - s[-1], logp - logp[-1], atol=1e-4), (s - s[-1], logp - logp[-1])
    # a head's write along a given direction (through the attention post-norm where there is one)
    torch.manual_seed(0)
    v = torch.randn(m.shape.d_model)
    o0 = mod(hf, family, 0, O_PROJ, "self_attn.o_proj")
    rec = {}
    fwd = [(o0, lambda mod_, a, o: rec.update(z=a[0][0].clone()))]
    if family in POST_ATTN:
        pn = hf.get_submodule(PREFIX.get(family, "model.layers.{}").format(0) + "." + POST_ATTN[family])
        fwd.append((pn, lambda mod_, a, o: rec.update(ratio=(o[0] / a[0][0]).clone())))
    hf_run(hf, ids, fwd_hooks=fwd)
    dh = m.shape.d_head
    w = o0.weight
    W_h = w[h * dh:(h + 1) * dh] if hasattr(o0, "nf") else w[:, h * dh:(h + 1) * dh].T  # [d_head, d_model]
    write = rec["z"][q, h * dh:(h + 1) * dh] @ W_h.detach()
    if "ratio" in rec:
        write = write * rec["ratio"][q]
    r = fdbg.trace(family, PROMPT, {"kind": "head_output", "node": f"L0.H{h}", "position": q,
                                     "direction_vector": v.tolist()}, top_k=None)
    assert close(r["value"], float(write @ v), 1e-4), (r["value"], float(write @ v))
    assert _rows_sum(r), r["sum_check"]


@pytest.mark.parametrize("family", FAMILIES)
def test_every_intervention_keeps_the_sum(family, family_models, fdbg):
    from circuit_debugger.errors import UserError

    m, _ = family_models[family]
    d, dh = m.shape.d_model, m.shape.d_head
    cases = [
        [{"node": "L0.MLP", "op": "scale", "value": 0.5}],
        [{"node": "L1.RESID", "op": "patch"}],
        [{"node": "L0.ATTN", "op": "zero", "positions": [1, 2]}],
        [{"node": "L0.H1", "op": "add", "vector": [0.1] * dh}, {"node": "L1.N2", "op": "mean"}],
        [{"node": "EMB", "op": "scale", "value": 0.9}, {"node": "L2.RESID", "op": "add", "vector": [0.05] * d}],
    ]
    for ivs in cases:
        r = fdbg.attribute(family, PROMPT, " Mary", " John", interventions=ivs, counterfactual_prompt=CF_PROMPT,
                           reference_prompts=REFS, top_k=5, verify_top=2)
        assert _rows_sum(r), (ivs, r["sum_check"], r["bias_terms"])
    if m.shape.has_pos:
        fdbg.intervene(family, PROMPT, [{"node": "POS", "op": "zero"}])
    else:
        with pytest.raises(UserError, match="no learned position embedding") as e:
            fdbg.intervene(family, PROMPT, [{"node": "POS", "op": "zero"}])
        assert e.value.status == 422
    assert fdbg.logit_lens(family, "L0.H1", PROMPT)["promoted"]
    assert fdbg.logit_lens(family, "L1.N3")["promoted"]
    assert fdbg.outputs(family, PROMPT)
    n_tokens = len(m.tokenize(PROMPT))
    for node in ("L0.H1", "L1.N3"):
        assert len(fdbg.activations(family, PROMPT, node)["values"]) == n_tokens
    if m.arch.block == "parallel":  # the MLP reads the layer's input: same-layer heads cannot feed it
        with pytest.raises(UserError, match="same layer"):
            fdbg.trace(family, PROMPT, {"kind": "head_output", "node": "L1.H0", "direction_node": "L1.N2"})
    r = fdbg.trace(family, PROMPT, {"kind": "head_output", "node": "L0.H0", "direction_node": "L1.N2"}, top_k=None)
    assert _rows_sum(r), r["sum_check"]
    a = m.arch
    plain = a.block == "sequential" and not a.post_norms and not a.final_softcap and not a.attn_softcap
    # without transcoders the MLPs are neuron nodes: modelled for GPT-2-style blocks, refused (saying why) elsewhere
    try:
        g = fdbg.graph(family, PROMPT, " Mary", " John")
    except UserError as e:
        assert re.search("GPT-2-style blocks" if plain else "not supported for this model", str(e)), str(e)
    else:
        assert plain and g["target"]["value"] == pytest.approx(fdbg.attribute(family, PROMPT, " Mary", " John",
                                                                              top_k=1)["logit_diff"], abs=1e-3)


def test_http_round_trip_every_family(fdbg):
    from fastapi.testclient import TestClient

    from circuit_debugger.server.app import Settings, create_app

    app = create_app(Settings(models=[]), debugger=fdbg)
    with TestClient(app, raise_server_exceptions=False) as c:
        models = {x["name"]: x for x in c.get("/api/models").json()["models"]}
        assert models["gemma2"]["architecture"]["final_softcap"] == 3.0
        assert models["gemma"]["architecture"]["gain_offset"] == 1.0
        assert models["llama_gqa"]["architecture"]["attention"] == "GQA"
        assert models["gpt_neox"]["architecture"]["block"] == "parallel"
        for f in FAMILIES:
            r = c.post("/api/attribute", json={"model": f, "prompt": PROMPT, "target": " Mary", "distractor": " John",
                                                "top_k": 5})
            assert r.status_code == 200, (f, r.text)
            assert set(models[f]["architecture"]) >= {"norm", "positions", "attention", "mlp", "block"}


@pytest.mark.parametrize("family", ["opt", "gpt_neox", "llama_gqa", "gemma2", "olmo2"])
def test_dataset_attribution_equals_single_prompts(family, family_models, fdbg):
    """The batched prompt-set path (dataset attribution) agrees with the per-prompt engine on
    post-norms, GQA, parallel blocks, flattened norm scales and soft-capping."""
    from circuit_debugger.dataset_attribution import per_prompt
    from circuit_debugger.promptsets import parse_rows

    m, _ = family_models[family]
    rows = "\n".join(['{"prompt": "%s", "target": " Mary", "distractor": " John"}' % p for p in (PROMPT, CF_PROMPT)])
    ps = parse_rows(rows, "jsonl", m.tokenize)
    r = per_prompt(m, ps)
    for p, row in enumerate(ps.rows):
        single = fdbg.attribute(family, row.prompt, row.target, row.distractor, top_k=None)
        assert float(r["metric"][p]) == pytest.approx(single["value"], abs=1e-5)
        by = {n["id"]: n for n in single["nodes"]}
        for j, node in enumerate(r["ids"]):
            assert float(r["direct"][p, j]) == pytest.approx(by[node]["direct_effect"], abs=1e-5), node
            assert float(r["total"][p, j]) == pytest.approx(by[node]["total_effect"], abs=1e-5), node


def test_a_model_that_cannot_be_decomposed_is_refused_with_why(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    from circuit_debugger.loading import load_model
    from circuit_debugger.model import UnsupportedModel
    from helpers import build_tokenizer

    tok = build_tokenizer(400)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=32, n_embd=32, n_layer=2, n_head=4,
                     scale_attn_by_inverse_layer_idx=True)
    GPT2LMHeadModel(cfg).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    with pytest.raises(UnsupportedModel, match="cannot be decomposed exactly: scale_attn_by_inverse_layer_idx"):
        load_model(str(tmp_path), name="odd")
