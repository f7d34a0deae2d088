"""Loading real checkpoints: sharded and half-precision safetensors, tied and untied embeddings,
hub names from an offline HuggingFace cache, pickles refused, a device map with disk offload,
vocabularies of booleans and numbers, and broken models beside good ones. Every numeric check
compares with a plain `transformers` model of the same files."""

import json
import shutil

import pytest
import torch

from circuit_debugger.loading import ModelLoadError, load_model

PROMPT = "When Mary and John went to the store, John gave a drink to"


def build(path, *, dtype=torch.float32, tie=True, shard=None, seed=3):
    """A tiny random GPT-2 saved with `save_pretrained` (optionally sharded / half precision)."""
    from helpers import build_tokenizer
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = build_tokenizer(400)
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=2, n_head=4, initializer_range=0.15,
                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=tie)
    model = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias") or "ln" in name:
                p.copy_((1 if name.endswith("weight") else 0) + 0.2 * torch.randn_like(p))
    model.to(dtype).save_pretrained(path, **({"max_shard_size": shard} if shard else {}))
    tok.save_pretrained(path)
    return path


def hf_logits(path, ids):
    """Plain transformers, float32, eager attention: the independent reference."""
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()
    with torch.no_grad():
        return hf(torch.tensor([ids])).logits[0]


def ours(m, prompt=PROMPT):
    ids = m.tokenize(prompt)
    with torch.no_grad():
        return ids, m.run(m.tokens_tensor(ids))[0].float()


def test_sharded_checkpoint_loads_and_names_a_missing_or_corrupt_shard(tmp_path):
    d = build(tmp_path / "sharded", shard="40KB")
    index = json.loads((d / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) >= 3 and not (d / "model.safetensors").exists()
    m = load_model(str(d))
    ids, got = ours(m)
    assert torch.allclose(got, hf_logits(d, ids), atol=1e-5)

    corrupt = tmp_path / "corrupt"
    shutil.copytree(d, corrupt)
    data = (corrupt / shards[1]).read_bytes()
    (corrupt / shards[1]).write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match=rf"corrupt/{shards[1]}: unreadable safetensors"):
        load_model(str(corrupt))
    (d / shards[-1]).unlink()
    with pytest.raises(ModelLoadError, match=rf"sharded/{shards[-1]}: file not found \(named by "
                                             r"model.safetensors.index.json"):
        load_model(str(d))


def test_index_naming_a_tensor_its_shard_lacks(tmp_path):
    d = build(tmp_path / "liar", shard="40KB")
    index = json.loads((d / "model.safetensors.index.json").read_text())
    index["weight_map"]["transformer.h.9.attn.c_attn.weight"] = sorted(set(index["weight_map"].values()))[0]
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ModelLoadError, match=r"lacks tensors .*transformer.h.9.attn.c_attn.weight"):
        load_model(str(d))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_checkpoints(tmp_path, dtype):
    """Stored in half precision: upcast to float32 by default (equal to HF's float32 load of the
    same file), or kept in that dtype when asked."""
    d = build(tmp_path / str(dtype).split(".")[1], dtype=dtype)
    from safetensors import safe_open

    with safe_open(str(d / "model.safetensors"), framework="pt") as f:
        assert f.get_tensor("transformer.h.0.attn.c_attn.weight").dtype == dtype
    m = load_model(str(d))
    assert m.dtype == torch.float32
    ids, got = ours(m)
    assert torch.allclose(got, hf_logits(d, ids), atol=1e-5)
    half = load_model(str(d), dtype=dtype)
    assert half.dtype == dtype
    _, got_half = ours(half)
    assert (got_half - got).abs().max() < 0.1 * got.abs().max()


@pytest.mark.parametrize("tie", [True, False])
def test_tied_and_untied_embeddings(tmp_path, tie):
    from safetensors import safe_open

    d = build(tmp_path / f"tie{tie}", tie=tie)
    with safe_open(str(d / "model.safetensors"), framework="pt") as f:
        stored = set(f.keys())
        lm_head = f.get_tensor("lm_head.weight") if "lm_head.weight" in stored else None
    assert (lm_head is None) == tie
    m = load_model(str(d))
    if tie:
        assert torch.equal(m.W.W_U, m.W.W_E.T)
    else:
        assert torch.equal(m.W.W_U, lm_head.T) and not torch.allclose(m.W.W_U, m.W.W_E.T)
    ids, got = ours(m)
    assert torch.allclose(got, hf_logits(d, ids), atol=1e-5)


def write_hub_cache(home, repo, src, rev="0123456789abcdef0123456789abcdef01234567"):
    """The layout huggingface_hub writes: blobs named by hash, snapshot files linking to them,
    refs/main holding the revision."""
    import hashlib

    root = home / "hub" / ("models--" + repo.replace("/", "--"))
    snap = root / "snapshots" / rev
    (root / "blobs").mkdir(parents=True)
    snap.mkdir(parents=True)
    for f in sorted(src.iterdir()):
        data = f.read_bytes()
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snap / f.name).symlink_to(f"../../blobs/{blob.name}")
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(rev)
    return snap


def test_hub_name_loads_offline_from_the_cache(tmp_path, monkeypatch):
    src = build(tmp_path / "src")
    home = tmp_path / "hf-home"
    write_hub_cache(home, "tiny-org/tiny-gpt2", src)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    m = load_model("tiny-org/tiny-gpt2")
    assert m.name == "tiny-org/tiny-gpt2" and m.source == "hub:tiny-org/tiny-gpt2"
    ids, got = ours(m)
    assert torch.allclose(got, hf_logits(src, ids), atol=1e-5)
    assert load_model("tiny-org/tiny-gpt2", name="tiny").name == "tiny"
    write_hub_cache(home, "gpt2", src, rev="f" * 40)  # TransformerLens' name gpt2-small is the repo gpt2
    alias = load_model("gpt2-small")
    assert alias.name == "gpt2-small" and alias.source == "hub:gpt2"
    with pytest.raises(ModelLoadError, match=r"'tiny-org/absent' is not in the HuggingFace cache .*HF_HUB_OFFLINE=1"):
        load_model("tiny-org/absent")
    from circuit_debugger.hub import repo_id  # TransformerLens aliases name hub repos

    assert repo_id("gpt2-small") == "gpt2" and repo_id("pythia-70m") == "EleutherAI/pythia-70m"


def test_hub_snapshot_with_only_pickles_is_refused(tmp_path, monkeypatch):
    src = tmp_path / "src"
    build(src)
    (src / "model.safetensors").unlink()
    (src / "pytorch_model.bin").write_bytes(b"not opened")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    write_hub_cache(tmp_path / "hf", "org/pickled", src)
    with pytest.raises(ModelLoadError, match=r"only in pickle format \(pytorch_model.bin\); convert it to safetensors"):
        load_model("org/pickled")


def test_pickle_checkpoints_are_refused_never_unpickled(tmp_path, monkeypatch):
    """A .bin-only directory is refused by name; torch.load is never reached (it would raise)."""
    import circuit_debugger.checkpoint_files as cf

    d = build(tmp_path / "bin")
    (d / "model.safetensors").unlink()
    (d / "pytorch_model.bin").write_bytes(b"\x80\x04 a pickle that must never be opened")

    def boom(*a, **k):
        raise AssertionError("torch.load was called")

    monkeypatch.setattr(torch, "load", boom)
    with pytest.raises(ModelLoadError, match=r"bin: the weights are only in pickle format \(pytorch_model.bin\); "
                                             r"convert it to safetensors"):
        load_model(str(d))
    # safetensors beside a pickle: the safetensors load, and no library may fall back to the pickle
    build(tmp_path / "both")
    (tmp_path / "both" / "pytorch_model.bin").write_bytes(b"never opened")
    m = load_model(str(tmp_path / "both"))
    assert m.W.W_E.shape[1] == 32
    with cf.no_unpickling(), pytest.raises(cf.CheckpointError, match="refusing to unpickle"):
        torch.load(str(tmp_path / "both" / "pytorch_model.bin"))
    assert torch.load is boom  # restored after the guard


def test_native_checkpoint_with_only_a_pickle_is_refused(tmp_path):
    d = tmp_path / "native-pt"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"n_layers": 1, "d_model": 8}))
    (d / "model.pth").write_bytes(b"never opened")
    with pytest.raises(ModelLoadError, match=r"only in pickle format \(model.pth\)"):
        load_model(str(d))


def logit_diff(m, prompt=PROMPT, a=" Mary", b=" John"):
    ids, got = ours(m, prompt)
    return float(got[-1, m.codec.output_token(a)] - got[-1, m.codec.output_token(b)])


def test_disk_offload_equals_the_plain_load(tmp_path):
    """Block 1 offloaded to disk (accelerate), the rest on the CPU: same logits, the engine's
    weight copies are real CPU tensors, and a full attribution is unchanged."""
    from circuit_debugger.engine import Debugger

    d = build(tmp_path / "off")
    device_map = {"transformer.wte": "cpu", "transformer.wpe": "cpu", "transformer.h.0": "cpu",
                  "transformer.h.1": "disk", "transformer.ln_f": "cpu", "lm_head": "cpu"}
    offload = tmp_path / "offload"
    split = load_model(str(d), name="split", device_map=json.dumps(device_map), offload_dir=str(offload))
    plain = load_model(str(d), name="plain")
    # (accelerate may read a safetensors checkpoint in place rather than copy it into offload_dir)
    assert split.bridge.original_model.hf_device_map["transformer.h.1"] == "disk"
    assert next(split.bridge.original_model.transformer.h[1].parameters()).device.type == "meta"
    for f in ("W_Q", "W_O", "W_in", "W_out", "W_U"):
        a, b = getattr(split.W, f), getattr(plain.W, f)
        assert a.device.type == "cpu" and torch.equal(a, b), f
    assert logit_diff(split) == pytest.approx(logit_diff(plain), abs=1e-5)
    dbg = Debugger([split, plain])
    r1 = dbg.attribute("split", PROMPT, " Mary", " John", top_k=None)
    r2 = dbg.attribute("plain", PROMPT, " Mary", " John", top_k=None)
    assert r1["logit_diff"] == pytest.approx(r2["logit_diff"], abs=1e-5)
    assert abs(r1["sum_check"]["residual"]) < 1e-4
    e1 = {n["id"]: n["total_effect"] for n in r1["nodes"]}
    e2 = {n["id"]: n["total_effect"] for n in r2["nodes"]}
    assert e1.keys() == e2.keys() and all(abs(e1[k] - e2[k]) < 1e-4 for k in e1)
    # 'auto' on a machine with no GPU: accelerate keeps everything on the CPU
    auto = load_model(str(d), name="auto", device_map="auto")
    assert auto.device.type == "cpu" and logit_diff(auto) == pytest.approx(logit_diff(plain), abs=1e-5)


def test_sharded_gqa_llama_with_blocks_on_disk(tmp_path):
    """A rotary, grouped-query, gated-MLP family, sharded, with two of three blocks offloaded:
    the same logit difference and act×grad effects as the plain load, and sums that hold."""
    import transformers as T
    from helpers import build_tokenizer

    from circuit_debugger.engine import Debugger

    tok = build_tokenizer(400)
    torch.manual_seed(1)
    T.LlamaForCausalLM(T.LlamaConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=64, max_position_embeddings=64, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id)).eval().save_pretrained(tmp_path / "llama", max_shard_size="30KB")
    tok.save_pretrained(tmp_path / "llama")
    assert (tmp_path / "llama" / "model.safetensors.index.json").exists()
    device_map = {"model.embed_tokens": "cpu", "model.layers.0": "cpu", "model.layers.1": "disk",
                  "model.layers.2": "disk", "model.norm": "cpu", "model.rotary_emb": "cpu", "lm_head": "cpu"}
    split = load_model(str(tmp_path / "llama"), name="split", device_map=json.dumps(device_map),
                       offload_dir=str(tmp_path / "off"))
    plain = load_model(str(tmp_path / "llama"), name="plain")
    dbg = Debugger([split, plain])
    r1, r2 = (dbg.attribute(n, PROMPT, " Mary", " John", top_k=None) for n in ("split", "plain"))
    assert r1["logit_diff"] == pytest.approx(r2["logit_diff"], abs=1e-6) and abs(r1["sum_check"]["residual"]) < 1e-5
    e1 = {n["id"]: n["total_effect"] for n in r1["nodes"]}
    e2 = {n["id"]: n["total_effect"] for n in r2["nodes"]}
    assert e1.keys() == e2.keys() and max(abs(e1[k] - e2[k]) for k in e1) < 1e-5


def test_bad_device_maps_are_refused_clearly(tmp_path, tiny_dir):
    with pytest.raises(ModelLoadError, match="device map 'nonsense': expected one of auto"):
        load_model(str(tiny_dir), device_map="nonsense")
    with pytest.raises(ModelLoadError, match="'meta' has no weights"):
        load_model(str(tiny_dir), device_map='{"transformer": "meta"}')
    with pytest.raises(ModelLoadError, match="needs --offload-dir"):
        load_model(str(tiny_dir), device_map='{"transformer": "disk", "lm_head": "cpu"}')


def write_native_vocab(path, inputs, outputs, seed=0):
    """A TL-native checkpoint (no LN, ReLU) whose vocab.json lists non-string tokens."""
    from safetensors.torch import save_file

    V, Vo, D, H, dh, M, C = len(inputs), len(outputs), 16, 2, 4, 8, 8
    cfg = dict(n_layers=1, d_model=D, n_ctx=C, d_head=dh, n_heads=H, d_mlp=M, d_vocab=V, d_vocab_out=Vo,
               act_fn="relu", normalization_type=None, attention_dir="causal", positional_embedding_type="standard")
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)
    sd = {"embed.W_E": r(V, D), "pos_embed.W_pos": r(C, D), "unembed.W_U": r(D, Vo), "unembed.b_U": r(Vo),
          "blocks.0.attn.W_O": r(H, dh, D), "blocks.0.attn.b_O": r(D), "blocks.0.mlp.W_in": r(D, M),
          "blocks.0.mlp.b_in": r(M), "blocks.0.mlp.W_out": r(M, D), "blocks.0.mlp.b_out": r(D)}
    for k in "QKV":
        sd[f"blocks.0.attn.W_{k}"], sd[f"blocks.0.attn.b_{k}"] = r(H, D, dh), r(H, dh)
    path.mkdir()
    (path / "config.json").write_text(json.dumps(cfg))
    save_file(sd, str(path / "model.safetensors"))
    (path / "vocab.json").write_text(json.dumps({
        "input_tokens": inputs, "bos_token": "compiler_bos", "bos_id": inputs.index("compiler_bos"),
        "output_kind": "categorical", "output_tokens": outputs}))
    return sd


def test_boolean_and_integer_vocabularies(tmp_path):
    from circuit_debugger.engine import Debugger
    from circuit_debugger.errors import UserError

    inputs = [1, 2, 3, "compiler_bos", "compiler_pad"]
    write_native_vocab(tmp_path / "tracr-bool", inputs, [False, True])
    m = load_model(str(tmp_path / "tracr-bool"))
    assert m.codec.output_tokens == ["False", "True"] and m.codec.input_tokens[:3] == ["1", "2", "3"]
    ids = m.tokenize("3 1 2")
    assert ids == [3, 2, 0, 1] and m.codec.token_strs(ids)[1:] == ["3", "1", "2"]
    with torch.no_grad():
        logits = m.run(m.tokens_tensor(ids))[0, -1]
    r = Debugger([m]).attribute("tracr-bool", "3 1 2", "True", "False", top_k=None)
    assert r["logit_diff"] == pytest.approx(float(logits[1] - logits[0]), abs=1e-5)
    assert abs(r["sum_check"]["residual"]) < 1e-4
    assert m.codec.output_token("true") == 1 and m.codec.output_token(" False ") == 0
    with pytest.raises(UserError, match="'maybe' is not an output of this model \\(outputs: 'False', 'True'\\)"):
        m.codec.output_token("maybe")
    with pytest.raises(UserError, match="token '7' is not in this model's vocabulary \\('1', '2', '3'\\)"):
        m.tokenize("1 7")

    write_native_vocab(tmp_path / "tracr-int", inputs, [1, 2, 3], seed=1)
    n = load_model(str(tmp_path / "tracr-int"))
    r = Debugger([n]).attribute("tracr-int", "1 1", "3", "2", top_k=None)
    with torch.no_grad():
        logits = n.run(n.tokens_tensor(n.tokenize("1 1")))[0, -1]
    assert r["logit_diff"] == pytest.approx(float(logits[2] - logits[1]), abs=1e-5)

    (tmp_path / "clash").mkdir()
    write_native_vocab(tmp_path / "clash" / "m", inputs, [1, "1"])
    with pytest.raises(ModelLoadError, match="read the same as text"):
        load_model(str(tmp_path / "clash" / "m"))


def unknown_family(path):
    """A checkpoint transformers itself cannot build (not a ModelLoadError inside)."""
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"model_type": "no-such-family", "architectures": ["NoSuchLM"]}))
    shutil.copy(next(iter((path.parent).glob("good*/model.safetensors"))), path / "model.safetensors")
    return path


def test_broken_models_beside_good_ones_app_level(tmp_path, monkeypatch):
    """Whatever goes wrong (here: transformers cannot build it; the engine raises a KeyError the
    way rotary models did), the model is listed with why and the good one serves."""
    from fastapi.testclient import TestClient

    import circuit_debugger.loading as loading
    from circuit_debugger.server.app import Settings, create_app

    good = build(tmp_path / "good")
    alien = unknown_family(tmp_path / "alien")
    odd = build(tmp_path / "odd-engine")
    real = loading.DebugModel

    def picky(name, *a, **k):
        if name == "odd-engine":
            raise KeyError("pos_embed.W_pos")
        return real(name, *a, **k)

    monkeypatch.setattr(loading, "DebugModel", picky)
    client = TestClient(create_app(Settings(models=[str(good), str(alien), str(odd)], serve_frontend=False)))
    body = client.get("/api/models").json()
    assert [x["name"] for x in body["models"]] == ["good"]
    assert "alien" in body["failed"][str(alien)] and "no-such-family" in body["failed"][str(alien)]
    assert "cannot read this architecture (KeyError: 'pos_embed.W_pos')" in body["failed"][str(odd)]
    r = client.post("/api/attribute", json={"model": "good", "prompt": PROMPT, "target": " Mary",
                                            "distractor": " John"})
    assert r.status_code == 200 and abs(r.json()["sum_check"]["residual"]) < 1e-4


def test_broken_model_on_the_command_line_still_serves_default(tmp_path):
    """`circuit-debugger serve --model BROKEN`: the default model serves; BROKEN is listed."""
    from fastapi.testclient import TestClient

    from circuit_debugger import cli
    from circuit_debugger.loading import DEFAULT_MODEL_DIR
    from circuit_debugger.server.app import create_app

    if not (DEFAULT_MODEL_DIR / "config.json").exists():
        pytest.skip("default model not built")
    build(tmp_path / "good")
    broken = unknown_family(tmp_path / "broken")
    ap = cli.parser()
    args = ap.parse_args(["serve", "--model", str(broken), "--device", "cpu", "--share-db", ":memory:",
                          "--allowed-hosts", "testserver"])
    settings = cli.settings_from(ap, args)
    settings.serve_frontend = False
    client = TestClient(create_app(settings))
    body = client.get("/api/models").json()
    assert "default" in [x["name"] for x in body["models"]] and str(broken) in body["failed"]
    assert client.get("/api/health").json()["models"] == ["default"]


def test_cli_device_map_flags(tmp_path):
    from circuit_debugger import cli

    ap = cli.parser()
    s = cli.settings_from(ap, ap.parse_args(["serve", "--device-map", '{"transformer": "cpu", "lm_head": "disk"}',
                                             "--offload-dir", str(tmp_path), "--share-db", ":memory:"]))
    assert json.loads(s.device_map)["lm_head"] == "disk" and s.offload_dir == str(tmp_path)
    with pytest.raises(SystemExit):
        cli.settings_from(ap, ap.parse_args(["serve", "--device-map", "[1, 2]", "--share-db", ":memory:"]))


def test_an_autoencoder_failing_for_any_reason_is_listed(tmp_path, monkeypatch, tiny_dir):
    """Not only AutoencoderLoadError: any exception while loading a folder is that folder's
    error, listed at /api/models, and the model still serves."""
    from fastapi.testclient import TestClient

    import circuit_debugger.autoencoders as ae
    from circuit_debugger.server.app import Settings, create_app

    import shutil

    folder = tmp_path / "aes" / "layer0"
    shutil.copytree(ae.REPO_AUTOENCODERS / "default" / "tc0", folder)  # a well-formed dictionary folder

    def explode(model, dictionary, where):
        raise KeyError("W_enc")

    monkeypatch.setattr(ae, "place", explode)  # fails while being placed onto the model
    client = TestClient(create_app(Settings(models=[str(tiny_dir)], autoencoders={"tiny-gpt2": [str(tmp_path / "aes")]},
                                            serve_frontend=False)))
    body = client.get("/api/models").json()
    assert [x["name"] for x in body["models"]] == ["tiny-gpt2"]
    assert body["failed"][f"tiny-gpt2: {folder}"] == "KeyError: 'W_enc'"
