"""Public dictionary formats (issue 15): SAELens folders and releases in the HF cache (ReLU,
TopK, JumpReLU; residual, hook_z, attention and MLP sites), circuit-tracer transcoder sets
and cross-layer transcoders, residual-stream SAEs as nodes. Every folder is written here from
the published layouts, with random weights at reduced width; every reference forward is
written here from the published definitions, independently of the loader."""

import json

import pytest
import torch
from safetensors.torch import save_file

from circuit_debugger.autoencoders import AutoencoderLoadError, load_onto
from circuit_debugger.engine import Debugger
from circuit_debugger.loading import load_model

PROMPT = "When Mary and John went to the store, John gave a drink to"
F = 40  # latents (reduced width)


def rnd(*shape, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(*shape, generator=g)


def saelens_folder(path, d_in, seed, cfg, threshold=False, d_out=None):
    d_out = d_out or d_in
    t = {"W_enc": rnd(d_in, F, seed=seed, scale=d_in ** -0.5), "b_enc": rnd(F, seed=seed + 1, scale=0.3) - 0.1,
         "W_dec": rnd(F, d_out, seed=seed + 2, scale=F ** -0.5), "b_dec": rnd(d_out, seed=seed + 3, scale=0.1)}
    if threshold:
        t["threshold"] = rnd(F, seed=seed + 4, scale=0.1).abs()
    path.mkdir(parents=True)
    (path / "cfg.json").write_text(json.dumps(cfg))
    save_file({k: v.contiguous() for k, v in t.items()}, str(path / "sae_weights.safetensors"))
    return t


def jumprelu(pre, th):  # SAELens / Gemma Scope: ReLU gated by pre > threshold
    return torch.relu(pre) * (pre > th)


def logits_with(m, hooks):
    return m.run(m.tokens_tensor(m.tokenize(PROMPT)), hooks)[0, -1]


def ld(m, logits):
    return float(logits[m.codec.output_token(" Mary")] - logits[m.codec.output_token(" John")])


# ---------------------------------------------------------------- loading and reporting
def test_one_dictionary_folder_loads_and_failures_are_reported(tmp_path, tiny_dir):
    m = load_model(str(tiny_dir), name="one")
    saelens_folder(tmp_path / "res1", 32, 1, {"architecture": "standard", "hook_name": "blocks.1.hook_resid_pre"})
    assert load_onto(m, tmp_path / "res1") == {}  # the folder itself, not a parent of folders
    assert 1 in m.autoencoders.resids
    (tmp_path / "junk").mkdir()
    (tmp_path / "parent").mkdir()
    errs = load_onto(m, tmp_path / "junk")
    assert "no dictionaries found" in errs[str(tmp_path / "junk")]
    assert "directory not found" in load_onto(m, tmp_path / "nope")[str(tmp_path / "nope")]
    errs = load_onto(m, tmp_path)  # res1 again (already placed) + junk + parent: all reported
    assert "already has a dictionary" in errs[str(tmp_path / "res1")]
    assert str(tmp_path / "junk") in errs and str(tmp_path / "parent") in errs
    saelens_folder(tmp_path / "gated", 32, 1, {"architecture": "gated", "hook_name": "blocks.0.hook_attn_out"})
    assert "unsupported architecture 'gated'" in load_onto(m, tmp_path / "gated")[str(tmp_path / "gated")]
    saelens_folder(tmp_path / "cnr", 32, 1, {"architecture": "standard", "hook_name": "blocks.0.hook_resid_pre",
                                             "normalize_activations": "constant_norm_rescale"})
    assert "not linear" in load_onto(m, tmp_path / "cnr")[str(tmp_path / "cnr")]
    desc = m.describe()
    assert desc["resid_saes"] == {"1": F}
    assert desc["dictionaries"][0]["site"] == "resid" and desc["dictionaries"][0]["letter"] == "R"


def test_server_loads_one_folder_and_reports_what_did_not_load(tmp_path, tiny_dir):
    """`serve --autoencoders MODEL=DIR` with DIR one dictionary folder: it loads and
    /api/models lists it; an empty folder is reported under `failed`."""
    from fastapi.testclient import TestClient

    from circuit_debugger.cli import parser, settings_from
    from circuit_debugger.server.app import create_app, load_debugger

    saelens_folder(tmp_path / "res", 32, 3, {"architecture": "topk", "k": 4, "hook_name": "blocks.0.hook_resid_pre"})
    (tmp_path / "empty").mkdir()
    ap = parser()
    a = ap.parse_args(["serve", "--model", str(tiny_dir), "--autoencoders", f"{tiny_dir.name}={tmp_path / 'res'}",
                       "--autoencoders", f"{tiny_dir.name}={tmp_path / 'empty'}",
                       "--allowed-hosts", "testserver"])
    settings = settings_from(ap, a)
    settings.models = [str(tiny_dir)]
    dbg, failed = load_debugger(settings)
    assert any("no dictionaries found" in why for why in failed.values()), failed
    models = TestClient(create_app(settings, dbg, failed)).get("/api/models").json()
    mine = next(x for x in models["models"] if x["name"] == tiny_dir.name)
    assert mine["resid_saes"] == {"0": F}
    assert mine["dictionaries"][0]["site"] == "resid" and mine["dictionaries"][0]["architecture"] == "topk"
    assert any("no dictionaries found" in why for why in models["failed"].values())


# ---------------------------------------------------------------- SAELens architectures and sites
@pytest.fixture(scope="module")
def zoo(tmp_path_factory, tiny_dir):
    """One model with a JumpReLU residual SAE (L1), a hook_z SAE (L0, attention site), an
    MLP-out SAE (L1, MLP site) and a TopK residual SAE on the final residual."""
    root = tmp_path_factory.mktemp("zoo")
    m = load_model(str(tiny_dir), name="zoo")
    s = m.shape
    hz = s.n_heads * s.d_head
    t = {"res": saelens_folder(root / "res", 32, 10, {"architecture": "jumprelu", "hook_name": "blocks.0.hook_resid_post",
                                                      "apply_b_dec_to_input": True}, threshold=True),
         "z": saelens_folder(root / "z", hz, 20, {"architecture": "standard", "hook_name": "blocks.0.attn.hook_z",
                                                  "apply_b_dec_to_input": True}),
         "mlp": saelens_folder(root / "mlp", 32, 30, {"architecture": "jumprelu", "hook_name": "blocks.1.hook_mlp_out",
                                                      "normalize_activations": "expected_average_only_in",
                                                      "norm_scaling_factor": 1.7}, threshold=True),
         "fin": saelens_folder(root / "fin", 32, 40, {"architecture": "topk", "activation_fn_kwargs": {"k": 6},
                                                      "hook_name": "blocks.1.hook_resid_post"})}
    assert load_onto(m, root) == {}
    return m, t, Debugger([m])


def test_jumprelu_and_scaled_inputs_give_the_original_outputs(zoo):
    m, t, _ = zoo
    x = torch.randn(5, 32)
    r = t["res"]
    ref = jumprelu((x - r["b_dec"]) @ r["W_enc"] + r["b_enc"], r["threshold"])
    ae = m.autoencoders.resids[1]
    assert ae.activation == "jumprelu" and torch.allclose(ae.encode(x), ref, atol=1e-6)
    assert torch.allclose(ae.decode(ae.encode(x)), ref @ r["W_dec"] + r["b_dec"], atol=1e-6)
    # expected_average_only_in: encode(s·x), decode, then / s
    q, s = t["mlp"], 1.7
    ref = jumprelu((s * x - q["b_dec"]) @ q["W_enc"] + q["b_enc"], q["threshold"])
    mlp = m.autoencoders.transcoders[1]
    assert torch.allclose(mlp.encode(x), ref, atol=1e-5)
    assert torch.allclose(mlp.decode(mlp.encode(x)), (ref @ q["W_dec"] + q["b_dec"]) / s, atol=1e-5)


def test_splicing_every_site_leaves_logits_unchanged(zoo):
    m, _, dbg = zoo
    ids = m.tokenize(PROMPT)
    spliced = dbg.clean_pass(m, ids)["logits"]
    assert torch.allclose(spliced, m.run(m.tokens_tensor(ids)), atol=1e-5)
    for key in ("rsae:1", "rsae:2", "sae:0", "tc:1", "rsaeerr:1"):
        assert key in dbg.clean_pass(m, ids)


def test_hook_z_latent_zero_equals_editing_z(zoo):
    """Zeroing a hook_z SAE latent == subtracting act·W_dec row from z (reference at hook_z)."""
    m, t, dbg = zoo
    z = t["z"]
    keep = {}

    def acts_of(zz):
        flat = zz.flatten(-2)
        return torch.relu((flat - z["b_dec"]) @ z["W_enc"] + z["b_enc"])

    base = logits_with(m, [("blocks.0.attn.hook_z", lambda x, hook: keep.setdefault("a", acts_of(x)) is None or x)])
    live = (keep["a"][0] > 0).any(0).nonzero().flatten().tolist()
    assert live
    i = live[0]

    def edit(x, hook):
        a = acts_of(x)[..., i]
        return x - (a[..., None] * z["W_dec"][i]).reshape(x.shape)

    ref = ld(m, logits_with(m, [("blocks.0.attn.hook_z", edit)]))
    got = dbg.intervene("zoo", PROMPT, [{"node": f"L0.S{i}", "op": "zero"}], target=" Mary", distractor=" John")
    assert got["logit_diff"] == pytest.approx(ref, abs=1e-5)
    assert abs(ref - ld(m, base)) > 1e-6


# ---------------------------------------------------------------- residual-stream SAEs as nodes
@pytest.mark.parametrize("opts", [{"resid_basis": "saes"}, {"resid_basis": "saes", "attn_basis": "saes",
                                                              "mlp_basis": "transcoders"}])
def test_resid_latent_attributions_sum_to_logit_diff(zoo, opts):
    m, _, dbg = zoo
    r = dbg.attribute("zoo", PROMPT, " Mary", " John", top_k=None, **opts)
    assert abs(r["sum_check"]["residual"]) < 1e-5
    rows = {n["id"]: n for n in r["nodes"]}
    # the final residual SAE (layer 2) cuts: nothing upstream has a direct effect
    assert "L2.RERR" in rows and "L1.RERR" in rows
    assert rows["EMB"]["direct_effect"] == 0 and rows["L0.ATTN"]["direct_effect"] == 0
    assert rows["L1.RERR"]["direct_effect"] == 0
    lat = sum(n["direct_effect"] for n in r["nodes"] if n["kind"] == "resid_sae" and n["layer"] == 2)
    total = lat + rows["L2.RERR"]["direct_effect"] + sum(v for k, v in r["bias_terms"].items()
                                                         if k.startswith("L2.RESID") or k.startswith("ln_final")
                                                         or k == "readout.bias")
    assert total == pytest.approx(r["logit_diff"], abs=1e-4)


def test_resid_latent_zero_matches_reference_and_total_effect_matches_finite_difference(zoo):
    m, t, dbg = zoo
    r = dbg.attribute("zoo", PROMPT, " Mary", " John", top_k=None, resid_basis="saes")
    live = sorted((n for n in r["nodes"] if n["kind"] == "resid_sae" and n["layer"] == 1 and n["activation"] > 0),
                  key=lambda n: -abs(n["total_effect"]))
    assert live
    i = live[0]["index"]
    q = t["res"]

    def edit(x, hook):
        a = jumprelu((x - q["b_dec"]) @ q["W_enc"][:, i] + q["b_enc"][i], q["threshold"][i])
        return x - a[..., None] * q["W_dec"][i]

    ref = ld(m, logits_with(m, [("blocks.1.hook_resid_pre", edit)]))
    got = dbg.intervene("zoo", PROMPT, [{"node": f"L1.R{i}", "op": "zero"}], target=" Mary", distractor=" John")
    assert got["logit_diff"] == pytest.approx(ref, abs=1e-5)
    checked = 0
    for n in live[:3]:
        eps = 1e-2
        f = lambda s: dbg.attribute("zoo", PROMPT, " Mary", " John", top_k=1, resid_basis="saes",
                                    interventions=[{"node": n["id"], "op": "scale", "value": s}])["logit_diff"]
        assert n["total_effect"] == pytest.approx((f(1 + eps) - f(1 - eps)) / (2 * eps), rel=2e-2, abs=2e-4)
        checked += 1
    assert checked


def test_resid_latent_trace_sums_to_preactivation(zoo):
    m, t, dbg = zoo
    r = dbg.trace("zoo", PROMPT, {"kind": "latent", "node": "L1.R3", "position": 6}, top_k=None)
    assert abs(r["sum_check"]["residual"]) < 1e-5
    q = t["res"]
    resid = {}
    m.run(m.tokens_tensor(m.tokenize(PROMPT)), [("blocks.1.hook_resid_pre", lambda x, hook: resid.setdefault("x", x))])
    pre = float((resid["x"][0, 6] - q["b_dec"]) @ q["W_enc"][:, 3] + q["b_enc"][3])
    assert r["value"] == pytest.approx(pre, abs=1e-5)


def test_resid_node_ids_validate(zoo):
    from circuit_debugger.errors import UserError

    m, _, dbg = zoo
    with pytest.raises(UserError, match="latent 99 out of range"):
        dbg.intervene("zoo", PROMPT, [{"node": "L1.R99", "op": "zero"}])
    with pytest.raises(UserError, match="no resid_sae is loaded for layer 0"):
        dbg.intervene("zoo", PROMPT, [{"node": "L0.RERR", "op": "zero"}])
    r = dbg.intervene("zoo", PROMPT, [{"node": "L2.RERR", "op": "zero"}], target=" Mary", distractor=" John")
    assert r["change"] != 0


# ---------------------------------------------------------------- releases in the HF cache
def hf_cache_file(home, repo, rel_path, write):
    org, name = repo.split("/")
    base = home / "hub" / f"models--{org}--{name}"
    (base / "refs").mkdir(parents=True, exist_ok=True)
    (base / "refs" / "main").write_text("abc123")
    target = base / "snapshots" / "abc123" / rel_path
    target.parent.mkdir(parents=True, exist_ok=True)
    write(target)


def test_saelens_release_and_gemma_scope_resolve_offline(tmp_path, tiny_dir, monkeypatch):
    import numpy as np

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    src = tmp_path / "src"
    t = saelens_folder(src, 32, 50, {"architecture": "standard", "hook_name": "blocks.1.hook_resid_pre"})
    for f in ("cfg.json", "sae_weights.safetensors"):
        hf_cache_file(tmp_path / "hf", "jbloom/GPT2-Small-SAEs-Reformatted", f"blocks.1.hook_resid_pre/{f}",
                      lambda p, f=f: p.write_bytes((src / f).read_bytes()))
    g = {"W_enc": rnd(32, F, seed=60, scale=0.2).numpy(), "W_dec": rnd(F, 32, seed=61, scale=0.2).numpy(),
         "b_enc": rnd(F, seed=62, scale=0.1).numpy(), "b_dec": rnd(32, seed=63, scale=0.1).numpy(),
         "threshold": rnd(F, seed=64, scale=0.05).abs().numpy()}
    hf_cache_file(tmp_path / "hf", "google/gemma-scope-2b-pt-res", "layer_0/width_16k/average_l0_7/params.npz",
                  lambda p: np.savez(p, **g))
    m = load_model(str(tiny_dir), name="rel")
    assert load_onto(m, "saelens:gpt2-small-res-jb/blocks.1.hook_resid_pre") == {}
    res = m.autoencoders.resids[1]
    x = torch.randn(3, 32)
    assert torch.allclose(res.encode(x), torch.relu((x - t["b_dec"]) @ t["W_enc"] + t["b_enc"]), atol=1e-6)
    # Gemma Scope layer 0 is hook_resid_post 0 = the residual entering layer 1: same slot, refused and named
    errs = load_onto(m, "saelens:google/gemma-scope-2b-pt-res/layer_0/width_16k/average_l0_7")
    assert "layer 1 already has a dictionary at the resid site" in next(iter(errs.values()))
    m2 = load_model(str(tiny_dir), name="rel2")
    assert load_onto(m2, "saelens:google/gemma-scope-2b-pt-res/layer_0/width_16k/average_l0_7") == {}
    gs = m2.autoencoders.resids[1]
    ref = jumprelu(x @ torch.tensor(g["W_enc"]) + torch.tensor(g["b_enc"]), torch.tensor(g["threshold"]))
    assert gs.activation == "jumprelu" and torch.allclose(gs.encode(x), ref, atol=1e-6)
    errs = load_onto(m2, "saelens:gpt2-small-res-jb/blocks.5.hook_resid_pre")
    assert "not in the HuggingFace cache" in next(iter(errs.values()))
    assert "never unpickled" in next(iter(load_onto(m2, "saelens:gpt2-small-hook-z-kk").values()))
    assert "unknown release" in next(iter(load_onto(m2, "saelens:nope").values()))


# ---------------------------------------------------------------- circuit-tracer transcoders and CLTs
def circuit_tracer_set(path, n=2, d=32, hook_in="hook_resid_mid", seed=70):
    """A circuit-tracer transcoder set (config.yaml + one safetensors file per layer, W_enc
    [F, d] as circuit-tracer stores it); returns the tensors per layer."""
    import yaml

    path.mkdir(parents=True, exist_ok=True)
    ref, entries = {}, []
    for l in range(n):
        w = {"W_enc": rnd(F, d, seed=seed + l, scale=0.2), "W_dec": rnd(F, d, seed=seed + 10 + l, scale=0.2),
             "b_enc": rnd(F, seed=seed + 20 + l, scale=0.1), "b_dec": rnd(d, seed=seed + 25 + l, scale=0.1),
             "threshold": rnd(F, seed=seed + 29 + l, scale=0.05)}  # may be negative: x·[x > θ] keeps negatives
        save_file({k: v.contiguous() for k, v in w.items()}, str(path / f"layer_{l}.safetensors"))
        entries.append({"id": f"tc{l}", "layer": l, "filepath": f"layer_{l}.safetensors"})
        ref[l] = w
    (path / "config.yaml").write_text(yaml.safe_dump({"model_name": "tiny", "feature_input_hook": hook_in,
                                                      "feature_output_hook": "hook_mlp_out", "transcoders": entries}))
    return ref


def clt_folder(root, n=2, d=32, seed=110, hook_in=None):
    """A circuit-tracer cross-layer transcoder: W_enc_l.safetensors (W_enc_l [F, d], b_enc_l,
    b_dec_l, threshold_l) and W_dec_l.safetensors (W_dec_l [F, n − l, d]); a config.yaml only
    when the input hook is not the default hook_resid_mid. Returns the tensors per layer."""
    import yaml

    root.mkdir(parents=True, exist_ok=True)
    ref = {}
    for l in range(n):
        enc = {f"W_enc_{l}": rnd(F, d, seed=seed + l, scale=0.25), f"b_enc_{l}": rnd(F, seed=seed + 10 + l, scale=0.1),
               f"b_dec_{l}": rnd(d, seed=seed + 20 + l, scale=0.1),
               f"threshold_{l}": rnd(F, seed=seed + 30 + l, scale=0.05).abs()}
        dec = {f"W_dec_{l}": rnd(F, n - l, d, seed=seed + 40 + l, scale=0.25)}
        save_file(enc, str(root / f"W_enc_{l}.safetensors"))
        save_file(dec, str(root / f"W_dec_{l}.safetensors"))
        ref[l] = {**enc, **dec}
    if hook_in:
        (root / "config.yaml").write_text(yaml.safe_dump({"feature_input_hook": hook_in,
                                                          "feature_output_hook": "hook_mlp_out"}))
    return ref


def test_circuit_tracer_transcoder_set(tmp_path, tiny_dir):
    m = load_model(str(tiny_dir), name="ct")
    ref = circuit_tracer_set(tmp_path)
    assert load_onto(m, tmp_path) == {}
    x = torch.randn(4, 32)
    pre = x @ ref[1]["W_enc"].T + ref[1]["b_enc"]
    assert torch.allclose(m.autoencoders.transcoders[1].encode(x), pre * (pre > ref[1]["threshold"]), atol=1e-6)
    dbg = Debugger([m])
    ids = m.tokenize(PROMPT)
    assert torch.allclose(dbg.clean_pass(m, ids)["logits"], m.run(m.tokens_tensor(ids)), atol=1e-5)
    r = dbg.attribute("ct", PROMPT, " Mary", " John", top_k=None, mlp_basis="transcoders")
    assert abs(r["sum_check"]["residual"]) < 1e-5
    tr = dbg.trace("ct", PROMPT, {"kind": "latent", "node": "L1.T2", "position": 5}, top_k=None)
    assert abs(tr["sum_check"]["residual"]) < 1e-5
    mid = {}
    m.run(m.tokens_tensor(ids), [("blocks.1.ln2.hook_in", lambda x, hook: mid.setdefault("x", x))])
    assert tr["value"] == pytest.approx(float(mid["x"][0, 5] @ ref[1]["W_enc"][2] + ref[1]["b_enc"][2]), abs=1e-5)


@pytest.fixture(scope="module")
def clt(tmp_path_factory, tiny_dir):
    root = tmp_path_factory.mktemp("clt")
    ref = clt_folder(root)
    m = load_model(str(tiny_dir), name="clt")
    assert load_onto(m, root) == {}
    return m, ref, Debugger([m])


def test_clt_splice_is_exact_and_sums(clt):
    m, ref, dbg = clt
    ids = m.tokenize(PROMPT)
    assert torch.allclose(dbg.clean_pass(m, ids)["logits"], m.run(m.tokens_tensor(ids)), atol=1e-5)
    r = dbg.attribute("clt", PROMPT, " Mary", " John", top_k=None, mlp_basis="transcoders")
    assert abs(r["sum_check"]["residual"]) < 1e-5
    assert {"transcoder", "transcoder_error"} <= {n["kind"] for n in r["nodes"]}
    assert m.describe()["dictionaries"][0]["architecture"] == "cross-layer transcoder"


def test_clt_latent_zero_matches_reference_and_finite_difference(clt):
    """Zeroing L0.T{i} removes its writes into the MLP outputs of layers 0 AND 1."""
    m, ref, dbg = clt
    r = dbg.attribute("clt", PROMPT, " Mary", " John", top_k=None, mlp_basis="transcoders")
    live = sorted((n for n in r["nodes"] if n["kind"] == "transcoder" and n["layer"] == 0 and n["activation"] > 0),
                  key=lambda n: -abs(n["total_effect"]))
    assert live
    i = live[0]["index"]
    e = ref[0]
    keep = {}

    def read(x, hook):
        pre = x @ e["W_enc_0"][i] + e["b_enc_0"][i]
        keep["a"] = pre * (pre > e["threshold_0"][i])
        return x

    def edit(l):
        return lambda out, hook: out - keep["a"][..., None] * e["W_dec_0"][i, l]

    hooks = [("blocks.0.ln2.hook_in", read), ("blocks.0.hook_mlp_out", edit(0)), ("blocks.1.hook_mlp_out", edit(1))]
    want = ld(m, logits_with(m, hooks))
    got = dbg.intervene("clt", PROMPT, [{"node": f"L0.T{i}", "op": "zero"}], target=" Mary", distractor=" John")
    assert got["logit_diff"] == pytest.approx(want, abs=1e-5)
    eps = 1e-2
    f = lambda s: dbg.attribute("clt", PROMPT, " Mary", " John", top_k=1, mlp_basis="transcoders",
                                interventions=[{"node": f"L0.T{i}", "op": "scale", "value": s}])["logit_diff"]
    assert live[0]["total_effect"] == pytest.approx((f(1 + eps) - f(1 - eps)) / (2 * eps), rel=2e-2, abs=2e-4)


def test_mining_covers_every_site_and_equals_brute_force(zoo, tmp_path):
    """Latents of resid / hook_z / MLP-out dictionaries are mined like any node (user JSONL corpus)."""
    from helpers import CORPUS

    from circuit_debugger.explanations.activations import batch_activations, node_index
    from circuit_debugger.explanations.build import CorpusSpec, corpus, valid_of
    from circuit_debugger.explanations.mine import Config, mine

    m, t, _ = zoo
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"text": x}) + "\n" for x in CORPUS))
    rows = corpus(m, 400, 0, CorpusSpec(str(tmp_path / "c.jsonl"), "text", 16))
    valid = valid_of(m, rows)
    index = node_index(m)
    assert {"L1.R0", "L2.R5", "L0.S3", "L1.T7"} <= set(index.ids)
    miner = mine(m, rows, valid, Config(k=3, r=2, batch=5), progress=False)
    # brute force for the residual SAE at layer 1, from the model's own residual and the published formula
    resid = []
    for b in range(0, len(rows), 5):
        keep = {}
        m.run(rows[b:b + 5], [("blocks.1.hook_resid_pre", lambda x, hook: keep.setdefault("x", x))])
        resid.append(keep["x"])
    q = t["res"]
    acts = jumprelu((torch.cat(resid) - q["b_dec"]) @ q["W_enc"] + q["b_enc"], q["threshold"])
    flat = acts.reshape(-1, F)[valid.reshape(-1)]
    cols = [index.ids.index(f"L1.R{i}") for i in range(F)]
    assert torch.allclose(miner.s["top_val"][cols], flat.T.topk(3, dim=1).values, atol=1e-5)
    assert torch.allclose(batch_activations(m, rows[:2])[0][..., cols], acts[:2], atol=1e-5)


def test_clt_latents_as_circuit_components(clt):
    """Zero-ablating CLT latents over a prompt set equals the single-prompt latent interventions."""
    from circuit_debugger.circuits import ablate_over_set
    from circuit_debugger.promptsets import PromptSet, Row

    m, _, dbg = clt
    prompts = [PROMPT, "When Alice and Bob went to the park, Bob gave a ball to"]
    ps = PromptSet("two", [Row(p, " Mary" if "Mary" in p else " Alice", " John" if "Mary" in p else " Bob")
                           for p in prompts])
    nodes = ["L0.T3", "L1.T7"]
    out = ablate_over_set(m, ps, nodes, "zero")
    for p, row in enumerate(ps.rows):
        r = dbg.intervene("clt", row.prompt, [{"node": n, "op": "zero"} for n in nodes], target=row.target,
                          distractor=row.distractor)
        assert out["after"][p] == pytest.approx(r["logit_diff"], abs=1e-4)


@pytest.mark.parametrize("op", ["patch", "mean"])
def test_patching_or_mean_ablating_every_resid_latent_and_the_error_equals_doing_it_to_the_residual(zoo, op):
    """The residual is decode(latents) + error (affine in the latents), so patching / mean-
    ablating all of L1.R* and L1.RERR is exactly patching / mean-ablating L1.RESID."""
    m, _, dbg = zoo
    cf = "When Alice and Bob went to the store, Bob gave a drink to"
    assert len(m.tokenize(cf)) == len(m.tokenize(PROMPT))
    refs = [cf, "The cat sat on the mat and the dog sat on the rug."]
    kw = {"counterfactual_prompt": cf} if op == "patch" else {"reference_prompts": refs}
    ivs = [{"node": f"L1.R{i}", "op": op} for i in range(F)] + [{"node": "L1.RERR", "op": op}]
    got = dbg.intervene("zoo", PROMPT, ivs, target=" Mary", distractor=" John", **kw)
    want = dbg.intervene("zoo", PROMPT, [{"node": "L1.RESID", "op": op}], target=" Mary", distractor=" John", **kw)
    assert got["logit_diff"] == pytest.approx(want["logit_diff"], abs=1e-4)
    assert abs(want["change"]) > 1e-4


def test_resid_attributions_still_sum_under_sublayer_and_residual_edits(zoo):
    """Edits upstream of (or at) a residual SAE reach the readout only through its latents and
    error, so no separate edit term is added for them, and the sums still close."""
    m, _, dbg = zoo
    ivs = [{"node": "L0.ATTN", "op": "zero"}, {"node": "L1.RESID", "op": "scale", "value": 0.5},
           {"node": "L1.MLP", "op": "scale", "value": 0.7}]
    r = dbg.attribute("zoo", PROMPT, " Mary", " John", top_k=None, resid_basis="saes", interventions=ivs)
    assert abs(r["sum_check"]["residual"]) < 1e-5
    assert not any(k.endswith(".intervention") for k in r["bias_terms"])  # all upstream of the final cut
    tr = dbg.trace("zoo", PROMPT, {"kind": "latent", "node": "L1.R3", "position": 6}, top_k=None, interventions=ivs[:1])
    assert abs(tr["sum_check"]["residual"]) < 1e-5


# ---------------------------------------------------------------- residual latents in circuits over a set
def test_resid_latents_over_a_set_equal_per_prompt_latent_interventions(zoo):
    """Residual-SAE latents as circuit components: zero-ablating them over a prompt set (the
    residual SAEs spliced, their error terms kept) equals the engine's per-prompt interventions;
    the splice alone leaves the model's metric unchanged."""
    from circuit_debugger.circuits import ablate_over_set, evaluate_circuit
    from circuit_debugger.errors import UserError
    from circuit_debugger.promptsets import PromptSet, Row

    m, _, dbg = zoo
    # two token lengths (two batches); no counterfactuals, so the set is its own reference
    ps = PromptSet("set", [Row(PROMPT, " Mary", " John"), Row("When John and Mary went out, Mary gave it to", " John", " Mary"),
                           Row("Then Mary and John left, John gave a book to", " Mary", " John")])
    nodes = ["L1.R3", "L1.R17", "L2.R5", "L0.H1"]
    out = ablate_over_set(m, ps, nodes, "zero")
    changed = 0
    for p, row in enumerate(ps.rows):
        r = dbg.intervene("zoo", row.prompt, [{"node": n, "op": "zero"} for n in nodes],
                          target=row.target, distractor=row.distractor)
        assert out["after"][p] == pytest.approx(r["logit_diff"], abs=1e-4)
        assert out["before"][p] == pytest.approx(r["baseline_logit_diff"], abs=1e-4)
        changed += abs(out["after"][p] - out["before"][p]) > 1e-4
    assert changed  # the ablation does something on some prompt
    small = evaluate_circuit(m, ps, ["L1.R3", "L2.R5"], n_random=1, greedy_steps=1)
    assert small["faithfulness"]["model"] == pytest.approx(sum(out["before"]) / len(ps.rows), abs=1e-4)
    assert set(small["universe"]) == {"head", "resid_sae"}
    with pytest.raises(UserError, match="no resid_sae on layer 0"):
        evaluate_circuit(m, ps, ["L0.R0"])
    with pytest.raises(UserError, match="out of range"):
        evaluate_circuit(m, ps, ["L2.R999"])
