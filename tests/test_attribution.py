"""Attribution is checked against independent computations: TransformerLens' own direct
logit attribution, a hand-written HF-weight forward, finite differences and exact ablation."""

import pytest
import torch

import reference_gpt2 as ref

PROMPT = "When Mary and John went to the store, John gave a drink to"
CF = "When Alice and Bob went to the store, Bob gave a drink to"


def ids_of(tiny, text):
    return torch.tensor(tiny.tokenize(text))


def ld_of(logits, tiny, a=" Mary", b=" John"):
    return float(logits[-1, tiny.codec.output_token(a)] - logits[-1, tiny.codec.output_token(b)])


@pytest.fixture(scope="module")
def full(dbg):
    return dbg.attribute("tiny", PROMPT, " Mary", " John", top_k=None)


def by_id(result):
    return {n["id"]: n for n in result["nodes"]}


def test_direct_effects_sum_to_logit_diff(full, tiny, hf_model):
    with torch.no_grad():
        expected = ld_of(ref.forward(hf_model, ids_of(tiny, PROMPT)), tiny)
    assert full["logit_diff"] == pytest.approx(expected, abs=1e-4)
    atomic = [n for n in full["nodes"] if n["kind"] in ("head", "neuron", "embed", "pos_embed")]
    total = sum(n["direct_effect"] for n in atomic) + sum(full["bias_terms"].values())
    assert total == pytest.approx(full["logit_diff"], abs=1e-5)
    assert abs(full["sum_check"]["residual"]) < 1e-5
    # sublayer rows equal the sum of their heads / neurons plus the output bias
    rows = by_id(full)
    for l in range(tiny.shape.n_layers):
        heads = sum(rows[f"L{l}.H{h}"]["direct_effect"] for h in range(tiny.shape.n_heads))
        assert rows[f"L{l}.ATTN"]["direct_effect"] == pytest.approx(heads + full["bias_terms"][f"L{l}.ATTN.bias"], abs=1e-5)
        neurons = sum(rows[f"L{l}.N{i}"]["direct_effect"] for i in range(tiny.shape.d_mlp))
        assert rows[f"L{l}.MLP"]["direct_effect"] == pytest.approx(neurons + full["bias_terms"][f"L{l}.MLP.bias"], abs=1e-5)


def test_head_direct_effects_match_transformer_lens(full, tiny):
    """TransformerLens' stack_head_results + apply_ln (its centring and cached final LN scale).

    TL's `logit_attrs` assumes the LN gain is folded into W_U; this model's ln_final has a
    non-trivial gain, so the unembedding direction is taken with the gain applied."""
    b = tiny.bridge
    toks = tiny.tokens_tensor(tiny.tokenize(PROMPT))
    _, cache = b.run_with_cache(toks, names_filter=lambda n: n.endswith("hook_z") or n == "ln_final.hook_scale")
    stack, labels = cache.stack_head_results(layer=-1, pos_slice=-1, apply_ln=True, return_labels=True)
    a, d = tiny.codec.output_token(" Mary"), tiny.codec.output_token(" John")
    direction = b.ln_final.weight.detach() * (b.W_U[:, a] - b.W_U[:, d]).detach()
    tl = stack[:, 0] @ direction
    rows = by_id(full)
    for label, value in zip(labels, tl.flatten().tolist()):
        layer, head = label[1:].split("H")
        assert rows[f"L{layer}.H{head}"]["direct_effect"] == pytest.approx(value, abs=1e-5), label


def test_head_direct_effect_split_by_source_position(full):
    for n in full["nodes"]:
        if n["kind"] == "head":
            assert sum(n["direct_by_source"]) == pytest.approx(n["direct_effect"], abs=1e-5)


def test_total_effect_matches_finite_difference(dbg, full):
    """act×grad == d(logit diff)/d(scale) at scale 1, by a central difference of real runs."""
    rows = by_id(full)
    eps = 1e-2
    for node in ["L0.H1", "L1.H2", "L0.N5", "L1.N40", "L0.MLP", "EMB"]:
        up = dbg.intervene("tiny", PROMPT, [dict(node=node, op="scale", value=1 + eps)], target=" Mary", distractor=" John")
        down = dbg.intervene("tiny", PROMPT, [dict(node=node, op="scale", value=1 - eps)], target=" Mary", distractor=" John")
        fd = (up["logit_diff"] - down["logit_diff"]) / (2 * eps)
        assert rows[node]["total_effect"] == pytest.approx(fd, rel=2e-2, abs=2e-4), node


def test_head_and_neuron_ablations_match_hand_written_forward(dbg, tiny, hf_model):
    ids = ids_of(tiny, PROMPT)
    refs = ["The cat sat on the mat.", "After Tom and Anna met at the school, Tom handed a book to Anna."]
    with torch.no_grad():
        caps = [ref.capture(hf_model, ids_of(tiny, r)) for r in refs]
        cf = ref.capture(hf_model, ids_of(tiny, CF))

    def mean(kind, l):
        return torch.cat([c[(kind, l)][1:] for c in caps]).mean(0)  # BOS position excluded

    def z_set(layer, head, value_fn, positions=slice(None)):
        def f(l, z):
            if l == layer:
                z = z.clone()
                z[positions, head] = value_fn(z)[positions, head] if callable(value_fn) else value_fn
            return z
        return f

    cases = [
        (dict(node="L1.H2", op="zero"), dict(z_fn=z_set(1, 2, 0.0))),
        (dict(node="L0.H1", op="mean"), dict(z_fn=z_set(0, 1, mean("z", 0)[1]))),
        (dict(node="L0.H3", op="patch"), dict(z_fn=z_set(0, 3, lambda z: cf[("z", 0)]))),
        (dict(node="L0.H0", op="zero", positions=[3, 5]), dict(z_fn=z_set(0, 0, 0.0, [3, 5]))),
        (dict(node="L0.N7", op="zero"), dict(post_fn=lambda l, p: p.index_fill(1, torch.tensor([7]), 0.0) if l == 0 else p)),
        (dict(node="L1.N9", op="mean"), dict(post_fn=lambda l, p: torch.cat([p[:, :9], mean("post", 1)[9].expand(p.shape[0], 1), p[:, 10:]], 1) if l == 1 else p)),
        (dict(node="L0.N11@4", op="patch"), dict(post_fn=lambda l, p: _put(p, 4, 11, cf[("post", 0)][4, 11]) if l == 0 else p)),
    ]
    for iv, hooks in cases:
        got = dbg.intervene("tiny", PROMPT, [iv], target=" Mary", distractor=" John",
                            counterfactual_prompt=CF, reference_prompts=refs)
        with torch.no_grad():
            want = ld_of(ref.forward(hf_model, ids, **hooks), tiny)
        assert got["logit_diff"] == pytest.approx(want, abs=1e-4), iv
        assert abs(got["change"]) > 1e-6, f"{iv} changed nothing; the check would be vacuous"


def _put(p, pos, idx, value):
    p = p.clone()
    p[pos, idx] = value
    return p


@pytest.mark.parametrize("node", ["L0.RESID", "L1.RESID", "L2.RESID"])
def test_patching_whole_residual_reproduces_counterfactual(dbg, tiny, node):
    got = dbg.intervene("tiny", PROMPT, [dict(node=node, op="patch")], counterfactual_prompt=CF, top=20)
    want = dbg.intervene("tiny", CF, [], top=20)
    assert got["top_predictions"] == want["top_predictions"]


def test_patching_residual_matches_counterfactual_logits_exactly(dbg, tiny):
    m = tiny
    ids, cf_ids = m.tokenize(PROMPT), m.tokenize(CF)
    from circuit_debugger.interventions import Intervention, build_hooks

    src = {"patch:blocks.0.hook_resid_pre": dbg.clean_pass(m, cf_ids)["blocks.0.hook_resid_pre"]}
    patched = m.run(m.tokens_tensor(ids), build_hooks([Intervention.make("L0.RESID", "patch")], 2, src))
    assert torch.equal(patched, m.run(m.tokens_tensor(cf_ids)))


def test_verify_top_matches_separate_ablation_runs(dbg):
    r = dbg.attribute("tiny", PROMPT, " Mary", " John", top_k=10, verify_top=5)
    checked = [n for n in r["nodes"] if "exact_effect" in n]
    assert len(checked) == 5
    for n in checked:
        alone = dbg.intervene("tiny", PROMPT, [dict(node=n["id"], op="zero")], target=" Mary", distractor=" John")
        assert n["exact_effect"] == pytest.approx(-alone["change"], abs=1e-5), n["id"]


def test_no_distractor_uses_mean_logit(dbg, tiny, hf_model):
    r = dbg.attribute("tiny", PROMPT, " Mary", top_k=5)
    with torch.no_grad():
        logits = ref.forward(hf_model, ids_of(tiny, PROMPT))[-1]
    assert r["logit_diff"] == pytest.approx(float(logits[tiny.codec.output_token(" Mary")] - logits.mean()), abs=1e-4)
    assert abs(r["sum_check"]["residual"]) < 1e-5


def test_intervened_attribution_reports_baseline(dbg):
    clean = dbg.attribute("tiny", PROMPT, " Mary", " John", top_k=None)
    r = dbg.attribute("tiny", PROMPT, " Mary", " John", top_k=None, interventions=[dict(node="L0.H1", op="zero")])
    assert r["baseline_logit_diff"] == pytest.approx(clean["logit_diff"])
    rows = by_id(r)
    assert rows["L0.H1"]["activation"] == 0.0 and rows["L0.H1"]["total_effect"] == 0.0
    assert rows["L0.H1"]["baseline_total_effect"] == pytest.approx(by_id(clean)["L0.H1"]["total_effect"])
    assert abs(r["sum_check"]["residual"]) < 1e-5


def test_position_granularity_sums_to_components(dbg, full):
    r = dbg.attribute("tiny", PROMPT, " Mary", " John", top_k=None, granularity="position")
    comp = by_id(full)
    sums: dict = {}
    for n in r["nodes"]:
        base = n["id"].split("@")[0]
        sums[base] = sums.get(base, 0.0) + n["total_effect"]
    for node in ["L0.H1", "L1.N3", "EMB", "L1.ATTN"]:
        assert sums[node] == pytest.approx(comp[node]["total_effect"], abs=1e-5)
