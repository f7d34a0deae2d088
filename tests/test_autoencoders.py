"""SAEs and transcoders as nodes: SAELens-layout loading, exact splicing, attributions that
still sum, latent interventions against a hand-written reference, latent traces."""

import json

import pytest
import torch

from circuit_debugger.autoencoders import AutoencoderLoadError, load, load_onto, place
from circuit_debugger.autoencoders.format import save
from circuit_debugger.engine import Debugger
from circuit_debugger.loading import load_model

PROMPT = "When Mary and John went to the store, John gave a drink to"
D_SAE = 48


def write_saelens_folder(path, tensors: dict, cfg: dict):
    """A third-party writer: just the documented files, nothing from our code."""
    from safetensors.torch import save_file

    path.mkdir(parents=True)
    (path / "cfg.json").write_text(json.dumps(cfg))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path / "sae_weights.safetensors"))


def random_tensors(d_in, d_out, seed):
    g = torch.Generator().manual_seed(seed)
    return {"W_enc": torch.randn(d_in, D_SAE, generator=g) / d_in ** 0.5,
            "b_enc": 0.3 * torch.randn(D_SAE, generator=g) - 0.2,
            "W_dec": torch.randn(D_SAE, d_out, generator=g) / D_SAE ** 0.5,
            "b_dec": 0.1 * torch.randn(d_out, generator=g)}


@pytest.fixture(scope="module")
def ae_dir(tmp_path_factory, tiny):
    root = tmp_path_factory.mktemp("aes")
    d = tiny.shape.d_model
    for l in range(tiny.shape.n_layers):
        write_saelens_folder(root / f"tc{l}", random_tensors(d, d, 10 + l), {
            "architecture": "standard", "d_in": d, "d_sae": D_SAE, "d_out": d,
            "hook_name": f"blocks.{l}.ln2.hook_normalized", "hook_name_out": f"blocks.{l}.hook_mlp_out"})
        write_saelens_folder(root / f"sae{l}", random_tensors(d, d, 20 + l), {
            "architecture": "topk", "activation_fn_kwargs": {"k": 8}, "d_in": d, "d_sae": D_SAE,
            "hook_name": f"blocks.{l}.hook_attn_out", "apply_b_dec_to_input": True})
    return root


@pytest.fixture(scope="module")
def model_ae(tiny_dir, ae_dir):
    m = load_model(str(tiny_dir), name="tiny-ae")
    assert load_onto(m, ae_dir) == {}
    return m


@pytest.fixture(scope="module")
def dbg_ae(model_ae):
    return Debugger([model_ae])


def test_saelens_folder_gives_the_original_modules_outputs(ae_dir):
    x = torch.randn(5, 32)
    t = {k: v for k, v in random_tensors(32, 32, 20).items()}
    sae = load(ae_dir / "sae0")
    pre = (x - t["b_dec"]) @ t["W_enc"] + t["b_enc"]
    acts = torch.relu(pre)
    keep = acts.topk(8, dim=-1).indices
    ref = torch.zeros_like(acts).scatter(-1, keep, acts.gather(-1, keep))
    assert torch.allclose(sae.encode(x), ref, atol=1e-6)
    assert torch.allclose(sae.decode(sae.encode(x)), ref @ t["W_dec"] + t["b_dec"], atol=1e-6)
    t = random_tensors(32, 32, 10)
    tc = load(ae_dir / "tc0")
    assert tc.is_transcoder and tc.activation == "standard"
    assert torch.allclose(tc.encode(x), torch.relu(x @ t["W_enc"] + t["b_enc"]), atol=1e-6)


def test_save_load_round_trip(tmp_path, ae_dir):
    a = load(ae_dir / "sae1")
    save(a, tmp_path / "copy")
    b = load(tmp_path / "copy")
    x = torch.randn(4, 32)
    assert torch.equal(a.decode(a.encode(x)), b.decode(b.encode(x)))


def test_splicing_everything_leaves_outputs_unchanged(dbg_ae, model_ae):
    ids = model_ae.tokenize(PROMPT)
    spliced = dbg_ae.clean_pass(model_ae, ids)["logits"]  # the clean pass splices every autoencoder
    plain = model_ae.run(model_ae.tokens_tensor(ids))
    assert torch.allclose(spliced, plain, atol=1e-5)
    assert "tc:1" in dbg_ae.clean_pass(model_ae, ids) and "saeerr:0" in dbg_ae.clean_pass(model_ae, ids)


@pytest.mark.parametrize("mlp,attn", [("transcoders", "heads"), ("neurons", "saes"), ("transcoders", "saes")])
def test_latent_attributions_sum_to_logit_diff(dbg_ae, mlp, attn):
    r = dbg_ae.attribute("tiny-ae", PROMPT, " Mary", " John", top_k=None, mlp_basis=mlp, attn_basis=attn)
    plain = dbg_ae.attribute("tiny-ae", PROMPT, " Mary", " John", top_k=5)
    assert r["logit_diff"] == pytest.approx(plain["logit_diff"], abs=1e-5)
    assert abs(r["sum_check"]["residual"]) < 1e-5
    kinds = {n["kind"] for n in r["nodes"]}
    if mlp == "transcoders":
        assert {"transcoder", "transcoder_error"} <= kinds and "neuron" not in kinds
    if attn == "saes":
        assert {"sae", "sae_error"} <= kinds and "head" not in kinds
    rows = {n["id"]: n for n in r["nodes"]}
    # a sublayer's direct effect = its latents + its error + its decoder bias
    if mlp == "transcoders":
        lat = sum(n["direct_effect"] for n in r["nodes"] if n["kind"] == "transcoder" and n["layer"] == 1)
        assert rows["L1.MLP"]["direct_effect"] == pytest.approx(
            lat + rows["L1.TERR"]["direct_effect"] + r["bias_terms"]["L1.MLP.bias"], abs=1e-5)


def test_latent_zero_matches_hand_written_reference(dbg_ae, model_ae):
    """Zeroing L0.T5 == subtracting its decoder row × activation from the MLP output."""
    tc = model_ae.autoencoders.transcoders[0]
    r = dbg_ae.attribute("tiny-ae", PROMPT, " Mary", " John", mlp_basis="transcoders", top_k=None)
    live = [n for n in r["nodes"] if n["kind"] == "transcoder" and n["layer"] == 0 and n["activation"] > 0]
    assert live, "no active latent: the check would be vacuous"
    i = live[0]["index"]
    got = dbg_ae.intervene("tiny-ae", PROMPT, [{"node": f"L0.T{i}", "op": "zero"}], target=" Mary", distractor=" John")
    keep = {}

    def read(x, hook):
        keep["x"] = x
        return x

    def edit(out, hook):
        act = torch.relu(keep["x"] @ tc.W_enc[:, i] + tc.b_enc[i])
        return out - act[..., None] * tc.W_dec[i]

    ids = model_ae.tokens_tensor(model_ae.tokenize(PROMPT))
    logits = model_ae.run(ids, [("blocks.0.ln2.hook_normalized", read), ("blocks.0.hook_mlp_out", edit)])[0, -1]
    a, b = model_ae.codec.output_token(" Mary"), model_ae.codec.output_token(" John")
    assert got["logit_diff"] == pytest.approx(float(logits[a] - logits[b]), abs=1e-5)
    assert abs(got["change"]) > 1e-6


def test_latent_total_effect_matches_finite_difference(dbg_ae):
    r = dbg_ae.attribute("tiny-ae", PROMPT, " Mary", " John", mlp_basis="transcoders", attn_basis="saes", top_k=6)
    checked = 0
    for n in r["nodes"]:
        if n["kind"] in ("transcoder", "sae") and n["activation"] > 0:
            eps = 1e-2
            f = lambda s: dbg_ae.attribute("tiny-ae", PROMPT, " Mary", " John", mlp_basis="transcoders",
                                           attn_basis="saes", top_k=1,
                                           interventions=[{"node": n["id"], "op": "scale", "value": s}])["logit_diff"]
            assert n["total_effect"] == pytest.approx((f(1 + eps) - f(1 - eps)) / (2 * eps), rel=2e-2, abs=2e-4), n["id"]
            checked += 1
    assert checked >= 2


def test_verify_top_for_latents(dbg_ae):
    r = dbg_ae.attribute("tiny-ae", PROMPT, " Mary", " John", mlp_basis="transcoders", top_k=5, verify_top=4)
    for n in [n for n in r["nodes"] if "exact_effect" in n]:
        alone = dbg_ae.attribute("tiny-ae", PROMPT, " Mary", " John", mlp_basis="transcoders", top_k=1,
                                 interventions=[{"node": n["id"], "op": "zero"}])
        assert n["exact_effect"] == pytest.approx(r["logit_diff"] - alone["logit_diff"], abs=1e-5), n["id"]


@pytest.mark.parametrize("node", ["L1.T3", "L1.S7", "L0.S2"])
def test_latent_trace_sums_to_preactivation(dbg_ae, model_ae, node):
    r = dbg_ae.trace("tiny-ae", PROMPT, {"kind": "latent", "node": node, "position": 9}, top_k=None)
    assert abs(r["sum_check"]["residual"]) < 1e-5
    ae = model_ae.autoencoders.family("transcoder" if ".T" in node else "sae")[int(node[1])]
    i = int(node.split(node[3])[1]) if False else int(node.split(".")[1][1:])
    acts = dbg_ae.clean_pass(model_ae, model_ae.tokenize(PROMPT))
    key = ("tc:" if ".T" in node else "sae:") + node[1]
    # the latent's activation on this prompt is relu/topk of the traced pre-activation
    if ae.activation == "standard":
        assert float(acts[key][0, 9, i]) == pytest.approx(max(r["value"], 0.0), abs=1e-5)
    else:
        assert float(acts[key][0, 9, i]) in (0.0, pytest.approx(r["value"], abs=1e-5))


def test_errors_and_interventions_on_latents_are_validated(dbg_ae, dbg):
    from circuit_debugger.errors import UserError

    with pytest.raises(UserError, match="latent 999 out of range"):
        dbg_ae.intervene("tiny-ae", PROMPT, [{"node": "L0.T999", "op": "zero"}])
    with pytest.raises(UserError, match="no transcoder is loaded"):
        dbg.intervene("tiny", PROMPT, [{"node": "L0.T1", "op": "zero"}])
    with pytest.raises(UserError, match="has no transcoders loaded"):
        dbg.attribute("tiny", PROMPT, " Mary", " John", mlp_basis="transcoders")
    r = dbg_ae.intervene("tiny-ae", PROMPT, [{"node": "L1.TERR", "op": "zero"}, {"node": "L0.S3", "op": "add",
                                                                                 "vector": [2.0]}],
                         target=" Mary", distractor=" John")
    assert r["change"] != 0.0


def test_bad_autoencoder_folders_name_the_file(tmp_path, tiny):
    (tmp_path / "a").mkdir()
    with pytest.raises(AutoencoderLoadError, match="a/cfg.json: file not found"):
        load(tmp_path / "a")
    write_saelens_folder(tmp_path / "b", random_tensors(32, 32, 1), {"architecture": "standard",
                                                                    "hook_name": "blocks.0.hook_resid_mid"})
    with pytest.raises(AutoencoderLoadError, match="hook_resid_mid are refused"):
        place(tiny, load(tmp_path / "b"), "b")
    data = (tmp_path / "b" / "sae_weights.safetensors").read_bytes()
    (tmp_path / "b" / "sae_weights.safetensors").write_bytes(data[:100])
    with pytest.raises(AutoencoderLoadError, match="b/sae_weights.safetensors: unreadable"):
        load(tmp_path / "b")


def test_transcoder_on_ln2_output_is_folded(tmp_path, tiny_dir):
    """A transcoder trained on ln2's output (as eai-sparsify does) gives the same latents
    after its LN gain and bias are folded into the encoder."""
    m = load_model(str(tiny_dir), name="fold")
    t = random_tensors(32, 32, 5)
    write_saelens_folder(tmp_path / "tc", t, {"architecture": "standard", "hook_name": "blocks.1.ln2.hook_out",
                                              "hook_name_out": "blocks.1.hook_mlp_out"})
    place(m, load(tmp_path / "tc"), "tc")
    store = {}
    hooks = [(n, (lambda n: lambda x, hook: store.setdefault(n, x))(n))
             for n in ("blocks.1.ln2.hook_out", "blocks.1.ln2.hook_normalized")]
    m.run(m.tokens_tensor(m.tokenize(PROMPT)), hooks)
    direct = torch.relu(store["blocks.1.ln2.hook_out"] @ t["W_enc"] + t["b_enc"])
    folded = m.autoencoders.transcoders[1].encode(store["blocks.1.ln2.hook_normalized"])
    assert torch.allclose(direct, folded, atol=1e-5)
