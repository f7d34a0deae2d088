"""Loading: TransformerLens-native directories, and clear errors for broken directories."""

import json
import shutil

import pytest
import torch

from circuit_debugger.loading import ModelLoadError, load_model


def write_native(path, tokenizer_src, seed=0):
    """A TL-native checkpoint (tracr-like: no LN, ReLU) with small random weights."""
    from safetensors.torch import save_file

    L, D, H, dh, M, C = 2, 24, 2, 4, 16, 32
    V = json.loads((tokenizer_src / "tokenizer.json").read_text())["model"]["vocab"].__len__() + 1
    cfg = dict(n_layers=L, d_model=D, n_ctx=C, d_head=dh, n_heads=H, d_mlp=M, d_vocab=V, d_vocab_out=V, act_fn="relu",
               normalization_type=None, attention_dir="causal", positional_embedding_type="standard")
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: 0.3 * torch.randn(*s, generator=g)
    sd = {"embed.W_E": r(V, D), "pos_embed.W_pos": r(C, D), "unembed.W_U": r(D, V), "unembed.b_U": r(V)}
    for l in range(L):
        for k in "QKV":
            sd[f"blocks.{l}.attn.W_{k}"], sd[f"blocks.{l}.attn.b_{k}"] = r(H, D, dh), r(H, dh)
        sd[f"blocks.{l}.attn.W_O"], sd[f"blocks.{l}.attn.b_O"] = r(H, dh, D), r(D)
        sd[f"blocks.{l}.mlp.W_in"], sd[f"blocks.{l}.mlp.b_in"] = r(D, M), r(M)
        sd[f"blocks.{l}.mlp.W_out"], sd[f"blocks.{l}.mlp.b_out"] = r(M, D), r(D)
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(cfg))
    save_file(sd, str(path / "model.safetensors"))
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizer_src / f, path / f)
    return cfg, sd


def native_reference(sd, cfg, ids):
    x = sd["embed.W_E"][ids] + sd["pos_embed.W_pos"][: len(ids)]
    n = len(ids)
    mask = torch.tril(torch.ones(n, n, dtype=torch.bool))
    for l in range(cfg["n_layers"]):
        q, k, v = (torch.einsum("pd,hde->hpe", x, sd[f"blocks.{l}.attn.W_{c}"]) + sd[f"blocks.{l}.attn.b_{c}"][:, None]
                   for c in "QKV")
        s = (q @ k.transpose(1, 2) / cfg["d_head"] ** 0.5).masked_fill(~mask, float("-inf"))
        z = s.softmax(-1) @ v
        x = x + torch.einsum("hpe,hed->pd", z, sd[f"blocks.{l}.attn.W_O"]) + sd[f"blocks.{l}.attn.b_O"]
        x = x + torch.relu(x @ sd[f"blocks.{l}.mlp.W_in"] + sd[f"blocks.{l}.mlp.b_in"]) @ sd[f"blocks.{l}.mlp.W_out"] \
            + sd[f"blocks.{l}.mlp.b_out"]
    return x @ sd["unembed.W_U"] + sd["unembed.b_U"]


def test_tl_native_directory_loads_and_attributes(tmp_path, tiny_dir):
    from circuit_debugger.engine import Debugger

    cfg, sd = write_native(tmp_path / "native", tiny_dir)
    m = load_model(str(tmp_path / "native"))
    assert m.norm is None and m.name == "native"
    prompt = "When Mary and John went to the store"
    ids = m.tokenize(prompt)
    got = m.run(m.tokens_tensor(ids))[0]
    assert torch.allclose(got, native_reference(sd, cfg, torch.tensor(ids)), atol=1e-4)
    r = Debugger([m]).attribute("native", prompt, " Mary", " John", top_k=None)
    assert abs(r["sum_check"]["residual"]) < 1e-4


def test_missing_directory(tmp_path):
    with pytest.raises(ModelLoadError, match="directory not found"):
        load_model(str(tmp_path / "nowhere"))


def test_malformed_config_names_the_file(tmp_path, tiny_dir):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_dir, bad)
    (bad / "config.json").write_text("{ not json")
    with pytest.raises(ModelLoadError, match=r"bad/config.json: not valid JSON"):
        load_model(str(bad))


def test_truncated_weights_name_the_file(tmp_path, tiny_dir):
    bad = tmp_path / "trunc"
    shutil.copytree(tiny_dir, bad)
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match=r"trunc/model.safetensors: unreadable"):
        load_model(str(bad))


def test_server_starts_without_a_broken_model(tmp_path, tiny_dir):
    from circuit_debugger.server.app import Settings, load_debugger

    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "config.json").write_text("{}")
    dbg, failed = load_debugger(Settings(models=[str(tiny_dir), str(bad)]))
    assert list(dbg.models) == ["tiny-gpt2"]
    assert "model.safetensors: file not found" in failed[str(bad)]


def test_import_is_light():
    """Importing the package or the server module loads no model and starts nothing."""
    import subprocess
    import sys

    code = ("import sys; sys.path.insert(0, 'backend'); import circuit_debugger; "
            "assert 'torch' not in sys.modules, 'package import pulled in torch'; "
            "import circuit_debugger.server.app as a; "
            "assert not any(t.name != 'MainThread' for t in __import__('threading').enumerate())")
    from pathlib import Path

    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_half_precision_models_attribute_in_float32(tiny_dir):
    """--dtype bfloat16: the model runs in half precision, the tables are float32 arithmetic
    over its activations, and their direct effects still sum to the logit difference."""
    from circuit_debugger.server.app import Settings, load_debugger

    half, _ = load_debugger(Settings(models=[str(tiny_dir)], dtype="bfloat16"))
    full, _ = load_debugger(Settings(models=[str(tiny_dir)]))
    prompt = "When Mary and John went to the store, John gave a drink to"
    a = half.attribute("tiny-gpt2", prompt, " Mary", " John", top_k=None)
    b = full.attribute("tiny-gpt2", prompt, " Mary", " John", top_k=None)
    assert half.models["tiny-gpt2"].dtype.is_floating_point and str(half.models["tiny-gpt2"].dtype) == "torch.bfloat16"
    assert abs(a["sum_check"]["residual"]) < 0.02 * abs(a["value"]) + 0.02
    assert a["logit_diff"] == pytest.approx(b["logit_diff"], abs=0.05 * abs(b["logit_diff"]) + 0.05)
