"""Mining and explaining: planted functions are found and named, streaming statistics equal
brute force, resuming equals not stopping, and the server serves and makes explanations."""

import json
import threading

import pytest
import torch
from fastapi.testclient import TestClient

from circuit_debugger.explanations.activations import batch_activations, node_index
from circuit_debugger.explanations.build import CorpusSpec, build, corpus, valid_of
from circuit_debugger.explanations.mine import Config, mine
from circuit_debugger.explanations.store import Store
from circuit_debugger.loading import load_model


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """tracr's map_successor: its MLP has one neuron per input value, by construction."""
    m = load_model("tracr/map_successor")
    path = tmp_path_factory.mktemp("expl") / "planted.sqlite"
    info = build(m, path, 3000, progress=False, held_tokens=1500)
    return m, Store(path, m.codec), info


def planted_token(m, neuron):
    """Which single input token makes the neuron fire (run each token alone)."""
    fired = []
    for tok in [t for t in m.codec.input_tokens if not t.startswith("compiler_")]:
        ids = m.tokens_tensor(m.tokenize(tok))
        acts, _, _ = batch_activations(m, ids)
        col = node_index(m).ids.index(f"L0.N{neuron}")
        if float(acts[0, 1, col]) > 0.5:
            fired.append(tok)
    return fired


def test_planted_neurons_are_found_and_named(planted):
    m, store, info = planted
    assert info["explained"] == len(node_index(m))
    for j in range(m.shape.d_mlp):
        want = planted_token(m, j)
        assert len(want) == 1, want
        node = store.node(f"L0.N{j}", limit=10)
        tops = node["examples"]["top"]["items"]
        assert tops and all(x["tokens"][x["center"]] == want[0] for x in tops)
        e = node["explanations"][0]
        assert e["explainer"] == "offline" and f"fires on {want[0]!r}" in e["text"]
        assert e["score"] >= 0.99


def test_unused_head_is_described_as_never_active(planted):
    _, store, _ = planted
    e = store.node("L0.H0", limit=0)["explanations"][0]
    assert e["text"].startswith("never active") and e["score"] is None


@pytest.fixture(scope="module")
def user_corpus(tmp_path_factory):
    """The user's own text as JSONL (a `text` field), as a researcher would bring it."""
    from helpers import CORPUS

    path = tmp_path_factory.mktemp("corpus") / "mine.jsonl"
    path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(CORPUS * 3)))
    return CorpusSpec(str(path), "text", 24)


def test_hf_models_are_never_mined_on_the_default_models_synthetic_text(tiny):
    from circuit_debugger.explanations.corpus import CorpusError

    with pytest.raises(CorpusError, match="give --corpus"):
        corpus(tiny, 100, seed=1)


def test_streaming_statistics_equal_brute_force(tiny, user_corpus):
    rows = corpus(tiny, 1500, seed=3, spec=user_corpus)
    valid = valid_of(tiny, rows)
    assert rows.shape[1] == 24 and rows[:, 1:].numel() >= 1500 and 0 < valid.sum() < rows[:, 1:].numel()
    cfg = Config(k=5, r=4, batch=7)
    miner = mine(tiny, rows, valid, cfg, progress=False)
    acts = torch.cat([batch_activations(tiny, rows[b:b + 7])[0] for b in range(0, len(rows), 7)])
    flat = acts.reshape(-1, acts.shape[-1])[valid.reshape(-1)]
    want = flat.T.topk(5, dim=1).values
    assert torch.allclose(miner.s["top_val"], want, atol=1e-5)
    assert torch.allclose(miner.s["active"] / miner.s["n_tokens"], (flat > 0).float().mean(0), atol=1e-6)
    assert torch.allclose(miner.s["max"], flat.max(0).values, atol=1e-5)
    assert torch.allclose(miner.s["sum"], flat.sum(0), rtol=1e-4, atol=1e-3)
    from circuit_debugger.explanations.mine import EDGES

    bins = torch.bucketize(flat, EDGES)  # [tokens, nodes]
    want_hist = torch.stack([torch.bincount(bins[:, n], minlength=len(EDGES) + 1) for n in range(flat.shape[1])])
    assert torch.equal(miner.s["hist"], want_hist.float())
    # each kept top example's window holds its own activation at the centre
    assert torch.allclose(miner.s["top_win"][:, :, cfg.before], miner.s["top_val"], atol=1e-5)
    # random samples are real active activations
    ok = miner.s["rnd_idx"] >= 0
    assert (miner.s["rnd_val"][ok] > 0).all()


def test_resume_equals_uninterrupted(tiny, tmp_path, user_corpus):
    rows = corpus(tiny, 1200, seed=4, spec=user_corpus)
    assert torch.equal(rows, corpus(tiny, 1200, seed=4, spec=user_corpus))  # deterministic for a seed
    valid = valid_of(tiny, rows)
    cfg = Config(k=4, r=3, batch=8)
    whole = mine(tiny, rows, valid, cfg, progress=False)
    half = len(rows) // 2 // 8 * 8
    mine(tiny, rows[:half], valid[:half], cfg, tmp_path, every=1, progress=False)  # "stopped" midway
    resumed = mine(tiny, rows, valid, cfg, tmp_path, every=1, progress=False)
    for k, v in whole.s.items():
        assert torch.equal(v, resumed.s[k]), k


def test_pagination(planted):
    _, store, _ = planted
    first = store.node("L0.N1", offset=0, limit=3)["examples"]["top"]
    second = store.node("L0.N1", offset=3, limit=3)["examples"]["top"]
    assert first["total"] == second["total"] >= 6
    assert [x["rank"] for x in first["items"]] == [0, 1, 2] and [x["rank"] for x in second["items"]] == [3, 4, 5]


class FakeLLM:
    """An OpenAI-compatible endpoint on loopback: explains, then simulates with real numbers."""

    def __init__(self):
        from http.server import BaseHTTPRequestHandler, HTTPServer

        calls = self.calls = []

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                prompt = body["messages"][0]["content"]
                calls.append(prompt)
                if "predict" in prompt:
                    words = json.loads(prompt.split("For each token of ")[1].split(" predict")[0])
                    content = json.dumps([10 if w == "3" else 0 for w in words])
                else:
                    content = "the token 3"
                data = json.dumps({"choices": [{"message": {"content": content}}]}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_routes_offline_and_llm_explainers(planted, monkeypatch):
    from circuit_debugger.engine import Debugger
    from circuit_debugger.server.app import Settings, create_app

    m, store, _ = planted
    dbg = Debugger([m])
    dbg.attach_explanations(m.name, store.path)
    c = TestClient(create_app(Settings(models=[]), debugger=dbg))
    r = c.get(f"/api/explanations/{m.name}/node/L0.N1", params={"limit": 2})
    assert r.status_code == 200 and len(r.json()["examples"]["top"]["items"]) == 2
    assert c.get(f"/api/explanations/{m.name}/node/L0.N99").status_code == 422
    assert c.get("/api/explanations/nope/node/L0.N1").status_code == 404
    off = c.post("/api/explain", json={"model": m.name, "node": "L0.N3"})
    assert off.status_code == 200 and off.json()["score"] >= 0.99
    monkeypatch.delenv("CD_LLM_BASE_URL", raising=False)
    none = c.post("/api/explain", json={"model": m.name, "node": "L0.N3", "explainer": "llm"})
    assert none.status_code == 422 and "no LLM is configured" in none.json()["detail"]
    fake = FakeLLM()
    monkeypatch.setenv("CD_LLM_BASE_URL", fake.url)
    monkeypatch.setenv("CD_LLM_MODEL", "fake")
    r = c.post("/api/explain", json={"model": m.name, "node": "L0.N3", "explainer": "llm"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["text"] == "the token 3" and body["score_kind"] == "simulation_correlation"
    assert fake.calls and body["details"]["simulated_tokens"] > 0
    fake.server.shutdown()
    kinds = {e["explainer"] for e in c.get(f"/api/explanations/{m.name}/node/L0.N3").json()["explanations"]}
    assert kinds == {"offline", "llm"}


# ---------------------------------------------------------------- heads: what they attend to and write
def test_within_query_auc_equals_brute_force():
    from circuit_debugger.explanations.heads import _auc, _ranks

    g = torch.Generator().manual_seed(0)
    B, H, T = 2, 3, 7
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))[None].expand(B, T, T)
    pat = torch.where(causal[:, None], torch.rand(B, H, T, T, generator=g), torch.zeros(()))
    mask = torch.rand(B, T, T, generator=g) > 0.6
    got = _auc(_ranks(pat, causal[:, None]).transpose(0, 1), mask[None], causal[None])  # [H, B, T]
    for h in range(H):
        for b in range(B):
            for q in range(T):
                pos = [pat[b, h, q, k] for k in range(q + 1) if mask[b, q, k]]
                neg = [pat[b, h, q, k] for k in range(q + 1) if not mask[b, q, k]]
                if not pos or not neg:
                    assert torch.isnan(got[h, b, q])
                    continue
                want = sum(float(p > n) + 0.5 * float(p == n) for p in pos for n in neg) / (len(pos) * len(neg))
                assert float(got[h, b, q]) == pytest.approx(want, abs=1e-9)


@pytest.mark.parametrize("program,rule", [("prev_token", "prev"), ("lib_shift_by_1", "prev"),
                                          ("first_token", "after")])
def test_planted_attention_heads_are_named_and_scored(program, rule):
    """tracr heads built to attend to the previous / first token are found, with held-out AUC 1."""
    from circuit_debugger.explanations.heads import head_explanations

    m = load_model(f"tracr/{program}")
    rows = corpus(m, 1200, seed=5)
    e = head_explanations(m, rows, valid_of(m, rows))["L0.H0"]
    assert e["details"]["rule"] == rule and e["score"] >= 0.99
    if rule == "after":
        assert "after 'compiler_bos'" in e["text"]


def test_ioi_heads_found_by_the_debugger_are_not_explained_at_chance():
    """The default model's IOI heads (L0.H0, L1.H3, L1.H0: models/default/README.md) get
    attention explanations whose held-out score is well above chance (0.5)."""
    from circuit_debugger.explanations.heads import head_explanations

    m = load_model("default")
    rows = corpus(m, 3000, seed=778)
    out = head_explanations(m, rows, valid_of(m, rows))
    for h in ("L0.H0", "L1.H3", "L1.H0"):
        assert out[h]["score"] is not None and out[h]["score"] > 0.6, (h, out[h])
