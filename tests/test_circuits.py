"""Prompt sets, dataset attribution and circuit evaluation, checked against independent
computations: per-prompt attribution from the single-prompt engine, per-prompt interventions,
tracr ground truth, and a hand-built model with a planted redundant head."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from circuit_debugger.circuits import ablate_over_set, evaluate_circuit
from circuit_debugger.dataset_attribution import per_prompt
from circuit_debugger.engine import Debugger
from circuit_debugger.errors import UserError
from circuit_debugger.loading import load_model
from circuit_debugger.promptsets import PromptSet, Row, builtin, from_template, parse_rows

TESTBEDS = Path(__file__).resolve().parents[1] / "backend" / "circuit_debugger" / "testbeds" / "models"
IOI = ["When {IO} and {S} went to the {P}, {S} gave a drink to", "When {S} and {IO} went to the {P}, {S} gave a drink to"]
NAMES = [" Mary", " John", " Alice", " Tom", " Anna", " James", " Sarah", " Peter"]


@pytest.fixture(scope="module")
def ioi_set(tiny):
    names = [n.strip() for n in NAMES if len(tiny.tokenize(n)) == 2]  # single tokens for the tiny tokenizer
    assert len(names) >= 3
    return from_template(tiny.tokenize, IOI, {"IO": names, "S": names, "P": ["store", "park"]}, " {IO}", " {S}",
                         n=12, seed=3)


def test_template_slots_point_at_the_slot_tokens(tiny, ioi_set):
    for r in ioi_set.rows:
        toks = tiny.codec.token_strs(tiny.tokenize(r.prompt))
        assert toks[r.slots["IO"]] == r.target and toks[r.slots["S1"]] == toks[r.slots["S2"]] == r.distractor
        assert r.slots["END"] == len(toks) - 1 and r.slots["S1"] < r.slots["S2"]
    assert {r.slots["IO"] < r.slots["S1"] for r in ioi_set.rows} == {True, False}  # ABBA and BABA both drawn


def test_parsing_pasted_rows(tiny):
    ps = parse_rows('{"prompt": "When Mary and John went", "target": " to", "slots": {"M": 2}}\n\n'
                    '{"prompt": "A B", "target": " C", "distractor": " D"}', "jsonl", tiny.tokenize)
    assert [r.slots for r in ps.rows] == [{"M": 2, "END": len(tiny.tokenize("When Mary and John went")) - 1},
                                          {"END": len(tiny.tokenize("A B")) - 1}]
    ps = parse_rows("prompt,target,distractor\nWhen Mary and John went, to,\n", "csv", tiny.tokenize)
    assert ps.rows[0].distractor is None and ps.rows[0].target == " to"
    for bad, fmt, words in [("{nope", "jsonl", "not JSON"), ('{"prompt": "x"}', "jsonl", "needs"),
                            ('{"prompt": "x y", "target": "z", "slots": {"A": 9}}', "jsonl", "slots"),
                            ("a,b\n1,2", "csv", "needs"), ("x", "xml", "format")]:
        with pytest.raises(UserError, match=words):
            parse_rows(bad, fmt, tiny.tokenize)


def test_builtin_sets_for_the_default_model():
    m = load_model("default")
    for name in ("ioi", "greater_than", "induction"):
        ps = builtin(name, m.tokenize, n=20, seed=1)
        assert len(ps.rows) == 20 and "END" in ps.slot_names
        for r in ps.rows:
            m.codec.output_token(r.target)  # one token each
            ids = m.tokenize(r.prompt)
            if r.counterfactual:
                assert len(m.tokenize(r.counterfactual)) == len(ids)
    r = builtin("ioi", m.tokenize, n=5).rows[0]
    assert m.codec.token_strs(m.tokenize(r.prompt))[r.slots["S2"]] == r.distractor


def test_batched_dataset_attribution_equals_the_single_prompt_engine(tiny, ioi_set):
    r = per_prompt(tiny, ioi_set)
    dbg = Debugger([tiny])
    for p in (0, 5, 11):
        row = ioi_set.rows[p]
        single = dbg.attribute("tiny", row.prompt, row.target, row.distractor, top_k=None)
        assert float(r["metric"][p]) == pytest.approx(single["logit_diff"], abs=1e-5)
        by = {n["id"]: n for n in single["nodes"]}
        for j, node in enumerate(r["ids"]):
            assert float(r["direct"][p, j]) == pytest.approx(by[node]["direct_effect"], abs=1e-5), node
            assert float(r["total"][p, j]) == pytest.approx(by[node]["total_effect"], abs=1e-5), node
        # per-slot totals are the per-position table's values at that slot
        pos = dbg.attribute("tiny", row.prompt, row.target, row.distractor, top_k=None, granularity="position")
        at = {n["id"]: n["total_effect"] for n in pos["nodes"]}
        j = r["ids"].index("L1.H0")
        assert float(r["slots"]["S2"][p, j]) == pytest.approx(at.get(f"L1.H0@{row.slots['S2']}", 0.0), abs=1e-5)


def test_ablation_over_a_set_equals_per_prompt_interventions(tiny, ioi_set):
    out = ablate_over_set(tiny, ioi_set, ["L1.H0", "L0.H1"], "zero")
    dbg = Debugger([tiny])
    for p, row in enumerate(ioi_set.rows):
        r = dbg.intervene("tiny", row.prompt, [{"node": "L1.H0", "op": "zero"}, {"node": "L0.H1", "op": "zero"}],
                          target=row.target, distractor=row.distractor)
        assert out["after"][p] == pytest.approx(r["logit_diff"], abs=1e-4)
        assert out["before"][p] == pytest.approx(r["baseline_logit_diff"], abs=1e-4)
    # restricted to a slot: only that position is ablated
    at_s2 = ablate_over_set(tiny, ioi_set, ["L0.H1@S2"], "zero")
    row = ioi_set.rows[0]
    r = dbg.intervene("tiny", row.prompt, [{"node": "L0.H1", "op": "zero", "positions": [row.slots["S2"]]}],
                      target=row.target, distractor=row.distractor)
    assert at_s2["after"][0] == pytest.approx(r["logit_diff"], abs=1e-4)


def tracr_set(name: str) -> tuple:
    m = load_model(f"tracr/{name}")
    examples = json.loads((TESTBEDS / name / "examples.json").read_text())
    rows = [Row(" ".join(e["input"]), str(e["output"][-1]), slots={"END": len(e["input"])})
            for e in examples if e["output"][-1] is not None]
    gt = Debugger([m]).ground_truth(m.name)
    unused = {f"L{l}.H{h}" for l, hs in gt["unused_heads"].items() for h in hs}
    heads = sorted(n for n, label in gt["node_labels"].items() if ".H" in n and label and n not in unused)
    neurons = sorted(n for n, label in gt["node_labels"].items() if ".N" in n and label)
    return m, PromptSet(name, rows), heads, neurons


@pytest.mark.parametrize("name", ["first_plus_prev", "lib_sort_unique", "lib_sort", "count_same"])
def test_tracr_ground_truth_circuit_is_faithful_and_a_missing_component_breaks_it(name):
    m, ps, heads, neurons = tracr_set(name)
    full = evaluate_circuit(m, ps, heads + neurons, n_random=2, greedy_steps=1)
    assert full["faithfulness"]["fraction"] >= 0.99
    assert full["completeness"]["worst_incompleteness"] <= 0.01 * abs(full["faithfulness"]["model"])
    worst = min(evaluate_circuit(m, ps, [h for h in heads if h != drop] + neurons, n_random=0,
                                 greedy_steps=0)["faithfulness"]["fraction"] for drop in heads)
    assert worst < 0.6, f"dropping a ground-truth head should break the circuit (best fraction {worst})"


def planted_redundancy(directory: Path) -> Path:
    """Two identical heads copy (x − y) from token 1 into a residual dimension h; an MLP of
    four ReLU neurons writes clamp(h, −1, 1) to the output. Either head alone saturates it, so
    each is redundant given the other."""
    directory.mkdir()
    cfg = {"n_layers": 1, "d_model": 5, "n_ctx": 8, "d_head": 1, "n_heads": 2, "d_mlp": 4, "d_vocab": 5,
           "d_vocab_out": 2, "act_fn": "relu", "normalization_type": None, "attention_dir": "causal",
           "positional_embedding_type": "standard"}
    (directory / "config.json").write_text(json.dumps(cfg))
    (directory / "vocab.json").write_text(json.dumps({
        "input_tokens": ["x", "y", "f", "bos", "pad"], "bos_token": "bos", "bos_id": 3, "pad_token": "pad", "pad_id": 4,
        "output_kind": "categorical", "output_tokens": ["X", "Y"], "max_seq_len": 7, "causal": True}))
    z = lambda *s: torch.zeros(*s)  # noqa: E731
    W_E = z(5, 5)
    W_E[0, 0] = W_E[1, 1] = 1.0
    W_V, W_O = z(2, 5, 1), z(2, 1, 5)
    W_V[:, 0, 0], W_V[:, 1, 0] = 1.0, -1.0
    W_O[:, 0, 2] = 4.0  # uniform attention over [bos, tok, f, f]: z = (x − y) / 4 → writes ±1 to h
    W_in, b_in, W_out = z(5, 4), torch.tensor([0.0, -1.0, 0.0, -1.0]), z(4, 5)
    W_in[2] = torch.tensor([1.0, 1.0, -1.0, -1.0])
    W_out[:, 3] = torch.tensor([1.0, -1.0, -1.0, 1.0])
    W_U = z(5, 2)
    W_U[3, 0], W_U[3, 1] = 1.0, -1.0
    save_file({"embed.W_E": W_E, "pos_embed.W_pos": z(8, 5), "blocks.0.attn.W_Q": z(2, 5, 1), "blocks.0.attn.W_K": z(2, 5, 1),
               "blocks.0.attn.W_V": W_V, "blocks.0.attn.W_O": W_O, "blocks.0.attn.b_Q": z(2, 1), "blocks.0.attn.b_K": z(2, 1),
               "blocks.0.attn.b_V": z(2, 1), "blocks.0.attn.b_O": z(5), "blocks.0.mlp.W_in": W_in, "blocks.0.mlp.b_in": b_in,
               "blocks.0.mlp.W_out": W_out, "blocks.0.mlp.b_out": z(5), "unembed.W_U": W_U, "unembed.b_U": z(2)},
              str(directory / "model.safetensors"))
    return directory


def test_completeness_flags_a_planted_redundant_head(tmp_path):
    m = load_model(str(planted_redundancy(tmp_path / "redundant")), name="redundant")
    ps = PromptSet("xy", [Row(f"{t} f f", t.upper(), "Y" if t == "x" else "X", slots={"END": 3}) for t in "xyxy"])
    neurons = [f"L0.N{i}" for i in range(4)]
    missing = evaluate_circuit(m, ps, ["L0.H0"] + neurons)
    assert missing["faithfulness"]["model"] == pytest.approx(2.0, abs=1e-5)
    assert missing["faithfulness"]["fraction"] == pytest.approx(1.0, abs=1e-5)  # faithful, yet...
    assert missing["completeness"]["relative"] == pytest.approx(1.0, abs=1e-5)  # ...incomplete: K = {L0.H0}
    assert missing["completeness"]["worst_K"] == ["L0.H0"]
    whole = evaluate_circuit(m, ps, ["L0.H0", "L0.H1"] + neurons)
    assert whole["completeness"]["worst_incompleteness"] == pytest.approx(0.0, abs=1e-5)
    mini = {x["node"]: x for x in whole["minimality"]}
    for h, other in (("L0.H0", "L0.H1"), ("L0.H1", "L0.H0")):  # each head matters once the other is gone
        assert mini[h]["relative"] == pytest.approx(1.0, abs=1e-5) and other in mini[h]["K"]


def test_circuit_input_errors(tiny, ioi_set):
    for nodes, words in [(["L1.MLP"], "heads"), (["L9.H0"], "out of range"), (["L1.H0@NOPE"], "slot"),
                         (["L1.H0", "L1.H0"], "twice"), ([], "empty")]:
        with pytest.raises(UserError, match=words):
            evaluate_circuit(tiny, ioi_set, nodes)


def test_patching_over_a_set_equals_per_prompt_patches(tiny, ioi_set):
    names = [n.strip() for n in NAMES if len(tiny.tokenize(n)) == 2]
    cf_set = from_template(tiny.tokenize, IOI, {"IO": names, "S": names, "C": names, "P": ["store", "park"]}, " {IO}", " {S}",
                           counterfactual=[t[:t.rfind("{S}")] + "{C}" + t[t.rfind("{S}") + 3:] for t in IOI], n=6, seed=5)
    out = ablate_over_set(tiny, cf_set, ["L1.H0", "L0.N3"], "patch")
    dbg = Debugger([tiny])
    for p, row in enumerate(cf_set.rows):
        r = dbg.intervene("tiny", row.prompt, [{"node": "L1.H0", "op": "patch"}, {"node": "L0.N3", "op": "patch"}],
                          counterfactual_prompt=row.counterfactual, target=row.target, distractor=row.distractor)
        assert out["after"][p] == pytest.approx(r["logit_diff"], abs=1e-4)
    with pytest.raises(UserError, match="counterfactual"):
        ablate_over_set(tiny, ioi_set, ["L1.H0"], "patch")


def test_latents_over_a_set_equal_per_prompt_latent_interventions():
    """Transcoder and SAE latents as circuit components: zero-ablating them over a set equals
    the single-prompt engine's latent interventions; splicing alone changes nothing."""
    m = load_model("default")
    ps = builtin("ioi", m.tokenize, n=6, seed=2)
    nodes = ["L1.T5", "L2.T300", "L0.S3"]
    out = ablate_over_set(m, ps, nodes, "zero")
    dbg = Debugger([m])
    for p, row in enumerate(ps.rows):
        r = dbg.intervene("default", row.prompt, [{"node": n, "op": "zero"} for n in nodes],
                          target=row.target, distractor=row.distractor)
        assert out["after"][p] == pytest.approx(r["logit_diff"], abs=2e-3)
        assert out["before"][p] == pytest.approx(r["baseline_logit_diff"], abs=2e-3)
    # F(M) with the autoencoders spliced in is the clean model's metric (splices are exact)
    small = evaluate_circuit(m, ps, nodes, n_random=1, greedy_steps=1)
    assert small["faithfulness"]["model"] == pytest.approx(sum(out["before"]) / len(ps.rows), abs=2e-3)
    assert set(small["universe"]) == {"head", "transcoder", "sae"}
    with pytest.raises(UserError, match="no sae on layer 7|out of range"):
        evaluate_circuit(m, ps, ["L7.S0"])
