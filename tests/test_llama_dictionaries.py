"""The embedded Llama-family model has what the default model has (issue 14): transcoders for
every MLP, attention SAEs and a residual-stream SAE after every layer (autoencoders/llama/),
mined explanations (explanations/llama.sqlite), both loaded with the model by name and served.

Checked against independent computations: splicing every dictionary leaves plain
HuggingFace's logits unchanged (the error nodes make it exact); each latent's activation equals
its encoder applied to the tensor read by a plain PyTorch hook on the HuggingFace model (the MLP
input normalised by hand, the attention module's output, the decoder layer's output); the
residual SAEs' latents are L{l}.R{i} nodes whose direct effects sum to the logit difference;
the explanation routes serve llama's nodes with their examples and head explanations.
"""

import pytest
import torch

from conftest import ROOT

AE_DIR = ROOT / "autoencoders" / "llama"
DB = ROOT / "explanations" / "llama.sqlite"
PROMPTS = ["When Mary and John went to the store, John gave a drink to",
           "The war lasted from the year 1732 to the year 17"]
MISSING = "the llama dictionaries/explanations are shipped artifacts (autoencoders/llama, explanations/llama.sqlite)"


@pytest.fixture(scope="module")
def llama():
    from circuit_debugger.engine import Debugger
    from circuit_debugger.loading import load_model

    assert AE_DIR.is_dir() and DB.exists(), MISSING
    m = load_model("llama")
    assert not m.load_errors, m.load_errors
    return m, Debugger([m], cache_size=4)


@pytest.fixture(scope="module")
def hf():
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(ROOT / "backend/circuit_debugger/models/llama").eval()


def _ids(m, prompt):
    return torch.tensor([m.tokenize(prompt)])


def test_every_kind_of_dictionary_is_loaded_for_every_layer(llama):
    m, _ = llama
    aes, L = m.autoencoders, m.shape.n_layers
    assert sorted(aes.transcoders) == sorted(aes.saes) == list(range(L))
    assert sorted(aes.resids) == list(range(1, L + 1))  # after every layer = the residual entering the next
    assert all(a.read == "ln2_normalized" for a in aes.transcoders.values())
    assert {a.hook_name for a in aes.resids.values()} == {f"blocks.{l}.hook_resid_post" for l in range(L)}


def test_splicing_every_dictionary_leaves_huggingface_logits_unchanged(llama, hf):
    from circuit_debugger.execution import RunRequest, execute

    m, _ = llama
    for prompt in PROMPTS:
        ids = _ids(m, prompt)
        with torch.no_grad():
            ref = hf(ids).logits
            spliced = execute(m, None, RunRequest(tokens=ids, splice=m.autoencoders.every())).logits
        scale = max(1.0, float(ref.abs().max()))  # float32 rounding of decode + error, relative to the logits
        assert float((spliced - ref).abs().max()) <= 1e-5 * scale, (float((spliced - ref).abs().max()), scale)
        # the splice is not vacuous: the reconstructions alone (errors zeroed) change the logits
        from circuit_debugger.interventions import Intervention

        errs = [Intervention.make(f"L{l}.{e}", "zero") for l in range(3) for e in ("TERR", "SERR")]
        with torch.no_grad():
            recon = execute(m, None, RunRequest(errs, tokens=ids, splice=m.autoencoders.every())).logits
        assert float((recon - ref).abs().max()) > 1e-3


def _hf_reads(hf, ids):
    """What each dictionary reads, taken with plain PyTorch hooks on the HuggingFace model: the
    MLP's input before its RMSNorm (normalised here by hand), the attention output, the block output."""
    got, handles = {}, []
    for l, layer in enumerate(hf.model.layers):
        handles.append(layer.post_attention_layernorm.register_forward_pre_hook(
            lambda mod, args, l=l: got.__setitem__(("mid", l), args[0])))
        handles.append(layer.self_attn.register_forward_hook(lambda mod, a, out, l=l: got.__setitem__(("attn", l), out[0])))
        handles.append(layer.register_forward_hook(
            lambda mod, a, out, l=l: got.__setitem__(("post", l), out[0] if isinstance(out, tuple) else out)))
    try:
        with torch.no_grad():
            hf(ids)
    finally:
        for h in handles:
            h.remove()
    eps = hf.config.rms_norm_eps
    for l in range(len(hf.model.layers)):
        x = got[("mid", l)]
        got[("norm", l)] = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return got


def _topk_encode(ae, x, shift):
    pre = torch.relu((x - shift) @ ae.W_enc + ae.b_enc)
    top = pre.topk(ae.k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, top.indices, top.values)


def test_latent_activations_equal_encoders_on_huggingface_hooks(llama, hf):
    """The miner's (and /api/activations') latent columns, against an encoding computed here."""
    from circuit_debugger.explanations.activations import batch_activations, node_index

    m, dbg = llama
    aes = m.autoencoders
    index = node_index(m)
    ids = _ids(m, PROMPTS[0])
    acts = batch_activations(m, ids)[0][0]  # [pos, nodes]
    reads = _hf_reads(hf, ids)
    checked = 0
    for letter, family, read, shift in (("T", aes.transcoders, "norm", False), ("S", aes.saes, "attn", True),
                                        ("R", aes.resids, "post", True)):
        for layer, ae in family.items():
            x = reads[(read, layer - 1 if letter == "R" else layer)][0]
            want = _topk_encode(ae, x, ae.b_dec if shift else 0)
            cols = [index.ids.index(f"L{layer}.{letter}{i}") for i in range(ae.d_sae)]
            got = acts[:, cols]
            assert torch.allclose(got, want, atol=1e-4), (letter, layer, float((got - want).abs().max()))
            assert 0 < int((want > 0).sum()) <= ae.k * x.shape[0]  # TopK: at most k active per position
            checked += 1
    assert checked == 9
    live = int(torch.nonzero(acts[-1, index.ids.index("L1.R0"):index.ids.index("L1.R0") + 512])[0, 0])
    node = f"L1.R{live}"
    r = dbg.activations("llama", PROMPTS[0], node)
    assert r["values"] == pytest.approx(acts[:, index.ids.index(node)].tolist(), abs=1e-6)


def test_resid_latents_are_nodes_whose_direct_effects_sum_to_the_logit_diff(llama, hf):
    m, dbg = llama
    r = dbg.attribute("llama", PROMPTS[0], " Mary", " John", top_k=None, resid_basis="saes")
    rows = {n["id"]: n for n in r["nodes"]}
    ids = _ids(m, PROMPTS[0])
    with torch.no_grad():
        last = hf(ids).logits[0, -1]
    ref = float(last[m.codec.output_token(" Mary")] - last[m.codec.output_token(" John")])
    assert r["value"] == pytest.approx(ref, abs=1e-4)
    assert abs(r["sum_check"]["residual"]) < 1e-4
    resid = [n for n in r["nodes"] if n["kind"] == "resid_sae"]
    assert {n["layer"] for n in resid} == {1, 2, 3} and all(n["id"] == f"L{n['layer']}.R{n['index']}" for n in resid)
    assert {"L1.RERR", "L2.RERR", "L3.RERR"} <= rows.keys()
    # the last residual SAE (on the final residual) cuts: every direct effect goes through it
    final = [n for n in r["nodes"] if n["layer"] == 3 and n["kind"] in ("resid_sae", "resid_sae_error")]
    assert len(final) > 1 and any(n["direct_effect"] != 0 for n in final)
    upstream = [n for n in r["nodes"] if n not in final]
    assert upstream and all(n["direct_effect"] == 0 for n in upstream), [n["id"] for n in upstream if n["direct_effect"]]
    # zeroing the strongest final latent equals removing its decoder row from HF's final residual
    top = max((n for n in resid if n["layer"] == 3), key=lambda n: abs(n["direct_effect"]))
    ae = m.autoencoders.resids[3]
    got = dbg.intervene("llama", PROMPTS[0], [{"node": top["id"], "op": "zero"}], target=" Mary", distractor=" John")
    reads = _hf_reads(hf, ids)
    x = reads[("post", 2)]
    a = _topk_encode(ae, x, ae.b_dec)[..., top["index"]]
    edited = x - a[..., None] * ae.W_dec[top["index"]]
    with torch.no_grad():
        logits = hf.lm_head(hf.model.norm(edited))[0, -1]
    want = float(logits[m.codec.output_token(" Mary")] - logits[m.codec.output_token(" John")])
    assert got["logit_diff"] == pytest.approx(want, abs=1e-4)
    assert abs(want - ref) > 1e-4


def test_models_route_offers_both_embedded_models_with_their_dictionaries():
    from fastapi.testclient import TestClient

    from circuit_debugger.server.app import Settings, create_app

    assert AE_DIR.is_dir() and DB.exists(), MISSING
    c = TestClient(create_app(Settings(models=["default", "llama"])))
    body = c.get("/api/models").json()
    info = {m["name"]: m for m in body["models"]}
    assert not body.get("failed"), body.get("failed")
    for name in ("default", "llama"):
        assert info[name]["supports"]["transcoders"] and info[name]["supports"]["saes"]
        assert len(info[name]["transcoders"]) == len(info[name]["saes"]) == 3
    assert sorted(info["llama"]["resid_saes"]) == ["1", "2", "3"]
    for node in ("L1.R7", "L0.T3", "L2.S5", "L1.N9", "L0.H1"):
        r = c.get(f"/api/explanations/llama/node/{node}", params={"limit": 3})
        assert r.status_code == 200, (node, r.text)
        x = r.json()
        assert x["id"] == node and x["explanations"] and x["n_tokens"] > 10_000
        top = x["examples"]["top"]["items"]
        if x["max"] and x["max"] > 0:
            assert top and all(e["tokens"][e["center"]] is not None for e in top)
            assert top[0]["acts"][top[0]["center"]] == pytest.approx(top[0]["activation"], rel=2e-3, abs=1e-3)
    head = c.get("/api/explanations/llama/node/L0.H1").json()
    assert head["explanations"][0]["score_kind"] == "attention_auc" and head["head_pairs"]
    assert c.get("/api/explanations/llama/node/L4.R1").status_code == 422


def test_llama_is_mined_on_its_own_corpus_with_its_own_tokenizer(llama):
    """The built-in corpus for llama is the generator it was trained on, in its own tokens."""
    from circuit_debugger.autoencoders.train import corpus_ids
    from circuit_debugger.embedded import corpus_module
    from circuit_debugger.explanations.build import corpus

    m, _ = llama
    rows = corpus(m, 500, seed=5)
    want = corpus_ids(m.codec.tokenizer, 500, 5, corpus=corpus_module("llama"))
    assert torch.equal(rows, want)
    tok = m.codec.tokenizer
    assert int(rows.max()) < len(tok) and (rows[:, 0] == tok.bos_token_id).all()
    doc = [t for t in rows[0].tolist() if t != tok.bos_token_id]
    assert len(doc) > 3 and tok.decode(doc).strip()
