"""Upstream traces: each target's direct effects + bias terms sum to its value, and the
value is the real quantity (checked against the hand-written forward / the model's hooks)."""

import math

import pytest
import torch

PROMPT = "When Mary and John went to the store, John gave a drink to"


def rows(r):
    return {n["id"]: n for n in r["nodes"]}


def test_neuron_preactivation_trace(dbg, tiny):
    r = dbg.trace("tiny", PROMPT, {"kind": "neuron", "node": "L1.N17", "position": 6}, top_k=None)
    acts = dbg.clean_pass(tiny, tiny.tokenize(PROMPT))
    # the traced value is the neuron's pre-activation: gelu(value) is its cached post-activation
    gelu = lambda x: 0.5 * x * (1 + math.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    assert gelu(r["value"]) == pytest.approx(float(acts["blocks.1.mlp.hook_post"][0, 6, 17]), abs=1e-5)
    assert abs(r["sum_check"]["residual"]) < 1e-5
    rr = rows(r)
    # nothing at or after the neuron's MLP has a direct effect on its input
    assert rr["L1.MLP"]["direct_effect"] == 0.0 and rr["L1.ATTN"]["direct_effect"] != 0.0


@pytest.mark.parametrize("through", ["query", "key"])
def test_attention_score_trace(dbg, tiny, through):
    r = dbg.trace("tiny", PROMPT, {"kind": "attention", "node": "L1.H2", "query": 12, "key": 4, "through": through},
                  top_k=None)
    assert abs(r["sum_check"]["residual"]) < 1e-5
    rr = rows(r)
    assert rr["L1.ATTN"]["direct_effect"] == 0.0  # layer 1's own attention is downstream
    # the traced score, softmaxed over keys, is the attention pattern
    scores = torch.tensor([dbg.trace("tiny", PROMPT, {"kind": "attention", "node": "L1.H2", "query": 12, "key": k},
                                     top_k=1)["value"] for k in range(13)])
    pattern = dbg.attention("tiny", PROMPT, 1, 2)["heads"]["L1.H2"][12]
    assert scores.softmax(0).tolist() == pytest.approx(pattern[:13], abs=1e-5)


def test_attention_trace_answers_why_head_attends(dbg):
    """'Why does L1.H2 attend to token 4?': the key-side table names the token-4 nodes."""
    r = dbg.trace("tiny", PROMPT, {"kind": "attention", "node": "L1.H2", "query": 12, "key": 4, "through": "key"},
                  granularity="position", top_k=None)
    with_direct = {n["id"] for n in r["nodes"] if n["direct_effect"] != 0.0}
    assert with_direct and all(i.endswith("@4") for i in with_direct)


def test_head_output_along_later_neuron(dbg, tiny):
    r = dbg.trace("tiny", PROMPT, {"kind": "head_output", "node": "L0.H1", "position": 9, "direction_node": "L1.N17"},
                  top_k=None)
    assert abs(r["sum_check"]["residual"]) < 1e-5
    # equals the head's direct effect in the neuron-preactivation trace
    pre = dbg.trace("tiny", PROMPT, {"kind": "neuron", "node": "L1.N17", "position": 9}, granularity="position", top_k=None)
    assert r["value"] == pytest.approx(rows(pre)["L0.H1@9"]["direct_effect"], abs=1e-5)


def test_trace_with_intervention_has_baseline(dbg):
    r = dbg.trace("tiny", PROMPT, {"kind": "neuron", "node": "L1.N17"}, interventions=[{"node": "L0.H1", "op": "zero"}])
    assert r["baseline_logit_diff"] is not None and r["baseline_logit_diff"] != r["value"]


@pytest.mark.parametrize("target,msg", [
    ({"kind": "neuron", "node": "L1.H2"}, "needs a neuron"),
    ({"kind": "attention", "node": "L1.H2", "query": 3, "key": 5}, "causal"),
    ({"kind": "attention", "node": "L1.N2", "query": 3, "key": 1}, "attention head"),
    ({"kind": "head_output", "node": "L1.H0", "direction_node": "L0.N3"}, "earlier layer"),
    ({"kind": "bogus"}, "kind must be"),
])
def test_trace_errors(dbg, target, msg):
    from circuit_debugger.errors import UserError

    with pytest.raises(UserError, match=msg):
        dbg.trace("tiny", PROMPT, target)
