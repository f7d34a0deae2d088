"""The server parts of "the UI tells the truth" (issue 17): the logit lens of every node kind on
every shipped model, what each model supports, exact effects and integrated gradients against
brute-force ablation, the attention pattern under interventions and generation under
interventions, each against an independent computation (plain HuggingFace + torch hooks)."""

import json

import pytest
import torch
from fastapi.testclient import TestClient

from circuit_debugger.errors import UserError

PROMPT = "When Mary and John went to the store, John gave a drink to"
REFS = ["The cat sat on the mat and the dog sat on the rug.", "After Tom and Anna met at the school, Tom handed"]


@pytest.fixture(scope="module")
def shipped():
    """Every shipped model: the default model (with its transcoders and SAEs) and each testbed."""
    from circuit_debugger.engine import Debugger
    from circuit_debugger.loading import load_model, testbed_names

    return Debugger([load_model("default")] + [load_model(f"tracr/{t}") for t in testbed_names()])


def example_prompt(dbg, name):
    return dbg.capabilities(name)["examples"][0]["prompt"]


# ------------------------------------------------------------------ item 5: logit lens
def test_lens_every_node_kind_on_every_shipped_model(shipped):
    assert len(shipped.models) > 30
    for name, m in shipped.models.items():
        prompt = example_prompt(shipped, name)
        nodes = ["EMB", "POS"] + [f"L{l}.{x}" for l in range(m.shape.n_layers) for x in ("H0", "N0", "ATTN", "MLP")]
        nodes += [f"L{l}.T3" for l in m.autoencoders.transcoders] + [f"L{l}.TERR" for l in m.autoencoders.transcoders]
        nodes += [f"L{l}.S3" for l in m.autoencoders.saes] + [f"L{l}.SERR" for l in m.autoencoders.saes]
        for node in nodes:
            r = shipped.logit_lens(name, node, prompt, k=8)  # k above a testbed's vocabulary: clamped, no 500
            assert 1 <= len(r["promoted"]) <= min(8, m.d_vocab_out), (name, node)
            vals = [t["value"] for t in r["promoted"]]
            assert vals == sorted(vals, reverse=True)
        # heads' lens on the testbeds was a 500 ("selected index k out of range")
        assert shipped.logit_lens(name, "L0.H0", prompt, k=200)["promoted"]


def test_lens_of_last_mlp_on_a_testbed_equals_its_ablation(shipped):
    """No layer norm in tracr models: the last MLP's write moves each logit by exactly its lens."""
    name = "tracr/lib_sort"
    m = shipped.model(name)
    prompt = example_prompt(shipped, name)
    n = len(m.tokenize(prompt))
    last = m.shape.n_layers - 1
    lens = shipped.logit_lens(name, f"L{last}.MLP@{n - 1}", prompt, k=m.d_vocab_out)
    clean = shipped.clean_pass(m, m.tokenize(prompt))["logits"][0, n - 1]
    ids = m.tokenize(prompt)
    from circuit_debugger.interventions import Intervention, build_hooks

    ab = m.run(m.tokens_tensor(ids), build_hooks([Intervention.make(f"L{last}.MLP@{n - 1}", "zero")], m.shape.n_layers))
    delta = clean - ab[0, n - 1]
    for t in lens["promoted"]:
        assert t["value"] == pytest.approx(float(delta[t["id"]]), abs=1e-4)


def test_latent_lens_needs_no_prompt_and_matches_hf_weights(shipped):
    from transformers import GPT2LMHeadModel

    from circuit_debugger.loading import DEFAULT_MODEL_DIR

    hf = GPT2LMHeadModel.from_pretrained(DEFAULT_MODEL_DIR).eval()
    m = shipped.model("default")
    for kind, fam in (("T", m.autoencoders.transcoders), ("S", m.autoencoders.saes)):
        r = shipped.logit_lens("default", f"L1.{kind}7", None, k=5)  # was 422 "no transcoder is loaded"
        row = fam[1].W_dec[7].detach()
        vec = (row - row.mean()) * hf.transformer.ln_f.weight.detach()
        logits = vec @ hf.lm_head.weight.detach().T
        assert [t["id"] for t in r["promoted"]] == logits.topk(5).indices.tolist()
        assert r["promoted"][0]["value"] == pytest.approx(float(logits.max()), rel=1e-4)
    with pytest.raises(UserError, match="latent 9999 out of range"):
        shipped.logit_lens("default", "L1.T9999", None)


# ------------------------------------------------------------------ item 7: capabilities
def test_capabilities_offer_only_what_works(shipped):
    d = shipped.capabilities("default")
    assert set(d["prompt_sets"]) == {"ioi", "greater_than", "induction"}
    assert d["graph"] and d["transcoders"] and d["saes"] and d["generation"] and d["mean_ablation"]
    for name in shipped.models:
        c = shipped.capabilities(name)
        assert c["examples"], name
        for ex in c["examples"]:  # every offered example is a question the model answers
            r = shipped.attribute(name, ex["prompt"], ex["target"], ex["distractor"] or None, top_k=5)
            assert r["tokens"]
        if name != "default":
            assert c["prompt_sets"] == [] and not c["graph"] and not c["transcoders"] and not c["generation"]
            for s in ("ioi", "induction"):  # what the UI used to offer: it fails on testbeds
                with pytest.raises(UserError):
                    shipped.prompt_set(name, {"builtin": s, "n": 4})
            gt = json.loads(open(shipped.model(name).source + "/examples.json").read())[0]
            assert c["examples"][0]["prompt"] == " ".join(map(str, gt["input"]))


# ------------------------------------------------------------------ item 8: exact effects and IG
def test_exact_effects_match_single_ablations_and_estimate_matches_table(dbg):
    r = dbg.effects("tiny", PROMPT, " Mary", " John", ig_steps=0)
    table = {n["id"]: n for n in dbg.attribute("tiny", PROMPT, " Mary", " John", top_k=None)["nodes"]}
    heads = [x for x in r["rows"] if x["kind"] == "head"]
    assert len(heads) == 2 * 4
    for row in heads:
        one = dbg.intervene("tiny", PROMPT, [{"node": row["id"], "op": "zero"}], target=" Mary", distractor=" John")
        assert row["exact"] == pytest.approx(-one["change"], abs=1e-4)
        assert row["estimate"] == pytest.approx(table[row["id"]]["total_effect"], abs=1e-4)
        want = None if abs(row["estimate"] - row["exact"]) <= r["flag_floor"] else (
            "sign" if row["estimate"] * row["exact"] < 0 else
            "magnitude" if abs(row["estimate"] - row["exact"]) > 0.5 * abs(row["exact"]) else None)
        assert row["flag"] == want


def test_mean_ablation_effects_and_ig_completeness(dbg):
    ivs = [{"node": "L0.H2", "op": "scale", "value": 0.5}]  # effects are measured on top of the interventions
    r = dbg.effects("tiny", PROMPT, " Mary", " John", ablation="mean", neurons=True, ig_steps=64,
                    interventions=ivs, reference_prompts=REFS)
    rows = {x["id"]: x for x in r["rows"]}
    assert len(rows) == 2 * 4 + 2 * 128
    for node in ("L1.H1", "L0.N17"):
        one = dbg.intervene("tiny", PROMPT, ivs + [{"node": node, "op": "mean"}], target=" Mary", distractor=" John",
                            reference_prompts=REFS)
        assert rows[node]["exact"] == pytest.approx(r["value"] - one["logit_diff"], abs=1e-4)
    for g in r["groups"]:  # completeness: Σ IG over a layer's units = the change when all are ablated
        assert g["sum_ig"] == pytest.approx(g["exact_all_ablated"], abs=0.02 * max(1.0, abs(g["exact_all_ablated"])))
    whole = dbg.intervene("tiny", PROMPT, ivs + [{"node": f"L1.H{h}", "op": "mean"} for h in range(4)],
                          target=" Mary", distractor=" John", reference_prompts=REFS)
    l1 = next(g for g in r["groups"] if g["group"] == "L1 heads")
    assert l1["exact_all_ablated"] == pytest.approx(r["value"] - whole["logit_diff"], abs=1e-4)


def test_ig_equals_exact_where_the_target_is_linear_in_the_node(shipped):
    """tracr models have no layer norm: the last MLP's neurons reach the logits linearly."""
    name = "tracr/lib_count_less_freq"
    ex = shipped.capabilities(name)["examples"][0]
    r = shipped.effects(name, ex["prompt"], ex["target"], ex["distractor"], neurons=True, ig_steps=3)
    last = shipped.model(name).shape.n_layers - 1
    lin = [x for x in r["rows"] if x["kind"] == "neuron" and x["layer"] == last]
    assert lin and any(abs(x["exact"]) > 1e-3 for x in lin)
    for x in lin:
        assert x["ig"] == pytest.approx(x["exact"], abs=1e-4)
        assert x["estimate"] == pytest.approx(x["exact"], abs=1e-4)


def test_effects_of_a_trace_target_upstream_of_some_layers(shipped):
    """A latent's pre-activation at layer 1 does not depend on layer-2 heads: their effects are 0, not a 500."""
    r = shipped.effects("default", PROMPT, trace={"kind": "latent", "node": "L1.T3"}, ig_steps=2)
    later = [x for x in r["rows"] if x["layer"] == 2]
    assert later and all(x["exact"] == 0 and x["ig"] == 0 and x["estimate"] == 0 for x in later)
    with pytest.raises(UserError, match="layer 9 out of range"):
        shipped.node_values("default", PROMPT, "L9.H0", " Mary")


def test_units_downstream_of_a_trace_target_are_exactly_zero_and_not_run(dbg, monkeypatch):
    """Causality, not a batched forward's rounding: ablating a layer-1 head cannot change a layer-0
    neuron's pre-activation, so no ablation copy is run for layer 1 and its effects are exactly 0."""
    from circuit_debugger import effects as E

    copies = []
    real = E._ablated_values

    def counting(m, ids, target, ivs, src, choice, per_copy, value):
        copies.extend(str(iv.node) for ivl in per_copy for iv in ivl)
        return real(m, ids, target, ivs, src, choice, per_copy, value)

    monkeypatch.setattr(E, "_ablated_values", counting)
    r = dbg.effects("tiny", PROMPT, trace={"kind": "neuron", "node": "L0.N5"}, ig_steps=2)
    later = [x for x in r["rows"] if x["layer"] == 1]
    assert later and all(x["exact"] == 0 and x["ig"] == 0 and x["estimate"] == 0 for x in later)
    assert copies and not [c for c in copies if c.startswith("L1.")], copies
    assert next(g for g in r["groups"] if g["group"] == "L1 heads")["exact_all_ablated"] == 0
    earlier = {x["id"]: x for x in r["rows"] if x["layer"] == 0}
    assert any(x["exact"] != 0 for x in earlier.values())


def test_effects_bad_input(dbg):
    with pytest.raises(UserError, match="reference corpus"):
        dbg.effects("tiny", PROMPT, " Mary", " John", ablation="mean")
    with pytest.raises(UserError, match="ig_steps"):
        dbg.effects("tiny", PROMPT, " Mary", " John", ig_steps=65)


# ------------------------------------------------------------------ item 9 / 16: HF references
def hf_hooks(hf, z_edit=None, post_edit=None):
    """Plain torch hooks on the HF GPT-2: z_edit(layer, z[b, s, H, dh]) before c_proj,
    post_edit(layer, post[b, s, d_mlp]) on the MLP activation's output."""
    handles = []
    H = hf.config.n_head
    for l, blk in enumerate(hf.transformer.h):
        if z_edit:
            def pre(mod, args, l=l):
                x = args[0]
                z = x.reshape(*x.shape[:-1], H, -1)
                return (z_edit(l, z.clone()).reshape(x.shape),)
            handles.append(blk.attn.c_proj.register_forward_pre_hook(pre))
        if post_edit:
            handles.append(blk.mlp.act.register_forward_hook(lambda mod, i, out, l=l: post_edit(l, out.clone())))
    return handles


def hf_generate(hf, ids, n, temperature, seed, hooks_fn=None):
    """A plain generation loop (the whole sequence each step), Gumbel-max sampling from a seeded
    generator for temperature > 0."""
    handles = hooks_fn() if hooks_fn else []
    try:
        seq, out = list(ids), []
        gen = torch.Generator().manual_seed(seed)
        for _ in range(n):
            with torch.no_grad():
                logits = hf(torch.tensor([seq])).logits[0, -1].float()
            if temperature > 0:
                u = torch.rand(logits.shape, generator=gen, dtype=torch.float64).clamp_(1e-12, 1 - 1e-12)
                i = int((logits.double() / temperature - torch.log(-torch.log(u))).argmax())
            else:
                i = int(logits.argmax())
            out.append((i, float(logits.softmax(-1)[i])))
            seq.append(i)
        return out
    finally:
        for h in handles:
            h.remove()


def test_generation_under_interventions_matches_a_plain_hf_loop(dbg, tiny, tiny_dir):
    from transformers import GPT2LMHeadModel

    hf = GPT2LMHeadModel.from_pretrained(tiny_dir).eval()
    ids = tiny.tokenize(PROMPT)
    cf = "When Mary and John went to the store, Mary gave a drink to"
    cf_ids = tiny.tokenize(cf)
    assert len(cf_ids) == len(ids)
    # the counterfactual's head outputs for the patch, from HF too
    cf_z = {}

    def grab(l, z):
        cf_z[l] = z.clone()
        return z

    hs = hf_hooks(hf, z_edit=grab)
    with torch.no_grad():
        hf(torch.tensor([cf_ids]))
    for h in hs:
        h.remove()
    P = len(ids)
    ivs = [{"node": "L1.H0", "op": "zero"},  # unpositioned: every position, generated ones included
           {"node": "L0.N5", "op": "scale", "value": 4.0, "positions": [2, 3]},  # prompt positions only
           {"node": "L1.N9", "op": "add", "vector": [3.0]},  # steering at every position
           {"node": "L0.H1", "op": "patch"}]  # unpositioned patch: the prompt's positions

    def z_edit(l, z):
        if l == 1:
            z[..., 0, :] = 0
        if l == 0:
            z[:, :P, 1, :] = cf_z[0][:, :P, 1, :]
        return z

    def post_edit(l, post):
        if l == 0:
            post[:, [2, 3], 5] *= 4.0
        if l == 1:
            post[..., 9] += 3.0
        return post

    for temperature, seed in ((0.0, 0), (1.0, 7)):
        r = dbg.generate("tiny", PROMPT, interventions=ivs, counterfactual_prompt=cf, max_new_tokens=8,
                         temperature=temperature, seed=seed)
        ref = hf_generate(hf, ids, 8, temperature, seed, lambda: hf_hooks(hf, z_edit, post_edit))
        base = hf_generate(hf, ids, 8, temperature, seed)
        assert [s["id"] for s in r["intervened"]] == [i for i, _ in ref]
        assert [s["id"] for s in r["baseline"]] == [i for i, _ in base]
        for s, (_, p) in zip(r["intervened"] + r["baseline"], ref + base):
            assert s["prob"] == pytest.approx(p, abs=1e-4)
            assert s["top"][0]["prob"] >= s["prob"] - 1e-9
    assert [s["id"] for s in r["intervened"]] != [s["id"] for s in r["baseline"]] or \
        [s["prob"] for s in r["intervened"]] != pytest.approx([s["prob"] for s in r["baseline"]])


def test_generation_limits(dbg, shipped):
    with pytest.raises(UserError, match="cannot generate"):
        shipped.generate("tracr/lib_sort", "1 2 3")
    with pytest.raises(UserError, match="max_new_tokens"):
        dbg.generate("tiny", PROMPT, max_new_tokens=65)
    r = dbg.generate("tiny", "a " * 30, max_new_tokens=64)  # stops at the context length
    assert r["stopped_at_context"] and len(r["baseline"]) == 64 - len(dbg.model("tiny").tokenize("a " * 30))
    assert r["intervened"] is None


def test_attention_after_interventions_matches_hf(dbg, tiny, tiny_dir):
    from transformers import GPT2LMHeadModel

    hf = GPT2LMHeadModel.from_pretrained(tiny_dir, attn_implementation="eager").eval()
    ids = tiny.tokenize(PROMPT)
    r = dbg.attention_after("tiny", PROMPT, 1, 2, interventions=[{"node": "L0.H0", "op": "zero"}, {"node": "L0.H3", "op": "zero"}])

    def z_edit(l, z):
        if l == 0:
            z[..., [0, 3], :] = 0
        return z

    hs = hf_hooks(hf, z_edit=z_edit)
    with torch.no_grad():
        att = hf(torch.tensor([ids]), output_attentions=True).attentions[1][0, 2]
    for h in hs:
        h.remove()
    assert torch.allclose(torch.tensor(r["heads"]["L1.H2"]), att, atol=1e-5)
    clean = dbg.attention("tiny", PROMPT, 1, 2)["heads"]["L1.H2"]
    assert not torch.allclose(torch.tensor(clean), att, atol=1e-3)  # the intervention did change it


# ------------------------------------------------------------------ over HTTP
def test_api_routes(dbg, shipped):
    from circuit_debugger.server.app import Settings, create_app

    app = create_app(Settings(models=[], serve_frontend=False), debugger=shipped, failed={})
    with TestClient(app, raise_server_exceptions=False) as c:
        models = {m["name"]: m for m in c.get("/api/models").json()["models"]}
        assert models["default"]["supports"]["prompt_sets"] == ["ioi", "greater_than", "induction"]
        assert models["tracr/lib_sort"]["supports"]["examples"][0]["prompt"]
        r = c.post("/api/logit-lens", json={"model": "tracr/lib_sort", "node": "L0.H0", "prompt": "4 1 3 5", "k": 8})
        assert r.status_code == 200, r.text
        r = c.post("/api/logit-lens", json={"model": "default", "node": "L1.T3", "k": 8})
        assert r.status_code == 200, r.text
        r = c.post("/api/effects", json={"prompt": PROMPT, "target": " Mary", "distractor": " John", "ig_steps": 4})
        assert r.status_code == 200 and len(r.json()["rows"]) == 12, r.text
        r = c.post("/api/generate", json={"model": "tracr/lib_sort", "prompt": "4 1 3"})
        assert r.status_code == 422 and "cannot generate" in r.json()["detail"]
        r = c.post("/api/generate", json={"prompt": PROMPT, "max_new_tokens": 3,
                                          "interventions": [{"node": "L1.H3", "op": "zero"}]})
        assert r.status_code == 200 and len(r.json()["intervened"]) == 3
        r = c.post("/api/attention/intervened", json={"prompt": PROMPT, "layer": 1, "head": 9})
        assert r.status_code == 422


def test_node_values_for_a_node_outside_the_table(dbg):
    """The node panel's numbers: an ablated node drops out of the top rows, its row still comes back."""
    ivs = [{"node": "L1.H0", "op": "zero"}]
    r = dbg.node_values("tiny", PROMPT, "L1.H0", " Mary", " John", interventions=ivs)
    full = {n["id"]: n for n in dbg.attribute("tiny", PROMPT, " Mary", " John", interventions=ivs, top_k=None)["nodes"]}
    assert r["row"] == full["L1.H0"]
    assert r["row"]["total_effect"] == 0 and r["row"]["baseline_total_effect"] is not None
    at = dbg.node_values("tiny", PROMPT, "L0.N3@4", " Mary", " John")
    assert at["row"]["position"] == 4
    with pytest.raises(UserError):
        dbg.node_values("tiny", PROMPT, "L1.RESID", " Mary", " John")


def test_node_values_follow_the_node_not_the_table_basis(shipped):
    q = ("default", PROMPT, " Mary", " John")
    for node, kw in (("L1.N7", {"mlp_basis": "transcoders"}), ("L1.H2", {"attn_basis": "saes"}),
                     ("L1.T3", {}), ("L2.S5@14", {})):
        r = shipped.node_values(*q[:2], node, *q[2:], **kw)
        assert r["row"]["id"] == node and r["row"]["total_effect"] is not None


def test_byte_level_pieces_are_shown_readably(shipped):
    r = shipped.tokenize("default", "Café 東京 Mary")
    assert "\ufffd" in "".join(r["tokens"])  # what the UI used to show: '� �'
    shown = r["display"]
    assert "\ufffd" not in "".join(shown)
    tok = shipped.model("default").codec.tokenizer
    # every split character is named by each of its pieces, and the pieces decode to it
    for ch in ("é", "東", "京"):
        parts = [i for i, s in enumerate(shown) if s.startswith(ch + "[")]
        assert parts and tok.decode([r["token_ids"][i] for i in parts]) == ch
    assert shipped.tokenize("default", "Mary")["display"] is None


def test_single_byte_tokens_show_their_bytes(shipped):
    ids = shipped.tokenize("default", "é")["token_ids"][-2:]
    r = shipped.token_display("default", ids)
    assert r["display"][0].startswith("⟨") and "\ufffd" not in "".join(r["display"])
    assert bytes.fromhex(r["display"][0].strip("⟨⟩")) + bytes.fromhex(r["display"][1].strip("⟨⟩")) == "é".encode()
    with pytest.raises(UserError, match="out of range"):
        shipped.token_display("default", [10 ** 6])


def test_mcp_links_write_the_new_fields_as_url_ts_does():
    """url.ts writes sort, fx, fxn, ig and ce after circ; the MCP server's Python encoder must too."""
    from circuit_debugger.server.mcp_links import encode

    q = encode({"prompt": "p", "circuit": ["L1.H3"], "sort": "direct_effect:desc", "effects": "mean",
                "effects_neurons": True, "ig_steps": 8, "circuit_eval": "mean"})
    assert q.endswith("&circ=L1.H3&sort=direct_effect%3Adesc&fx=mean&fxn=1&ig=8&ce=mean")
    assert "sort" not in encode({"prompt": "p"})
