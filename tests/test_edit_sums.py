"""The sum check holds under sublayer and residual edits in every basis: the edit's change is
its own bias term, except where a spliced autoencoder already reads the edited output."""

import pytest

PROMPT = "When Mary and John went to the store, John gave a drink to"
CF = "When Alice and Bob went to the park, Bob gave a ball to"


@pytest.fixture(scope="module")
def dflt():
    from circuit_debugger.engine import Debugger
    from circuit_debugger.loading import load_model

    return Debugger([load_model("default")])


@pytest.mark.parametrize("basis", [{}, {"attn_basis": "saes"}, {"mlp_basis": "transcoders"}])
@pytest.mark.parametrize("iv", [
    {"node": "L1.ATTN", "op": "scale", "value": 0.5}, {"node": "L1.MLP", "op": "scale", "value": 0.5},
    {"node": "L1.RESID", "op": "patch"}, {"node": "L0.MLP", "op": "zero", "positions": [3, 4]},
])
def test_sum_check_under_edits(dflt, basis, iv):
    r = dflt.attribute("default", PROMPT, " Mary", " John", interventions=[iv], counterfactual_prompt=CF,
                       top_k=5, verify_top=2, **basis)
    assert abs(r["sum_check"]["residual"]) <= 1e-5 * max(1.0, abs(r["value"])), (r["sum_check"], r["bias_terms"])
    assert r["value"] != r["baseline_logit_diff"]  # the edit did change the value
    aes = dflt.model("default").autoencoders
    layer = int(iv["node"][1])
    spliced = (iv["node"].endswith("ATTN") and basis.get("attn_basis") == "saes" and layer in aes.saes) or \
              (iv["node"].endswith("MLP") and basis.get("mlp_basis") == "transcoders" and layer in aes.transcoders)
    assert (f"{iv['node']}.intervention" in r["bias_terms"]) == (not spliced)
