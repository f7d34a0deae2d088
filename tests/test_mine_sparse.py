"""Mining with TopK dictionaries kept sparse (SparseBlock) gives the state dense mining gives,
both equal brute force computed independently (plain captures, direct head-write norms,
dense encoders, sorting over every token), interrupted mining on a user JSONL corpus resumes
to the identical state, and the mining forward never runs the unembedding."""

import json

import pytest
import torch

from helpers import CORPUS

from circuit_debugger.autoencoders import place
from circuit_debugger.autoencoders.format import Autoencoder
from circuit_debugger.execution import RunRequest, execute
from circuit_debugger.explanations.activations import batch_activations
from circuit_debugger.explanations.build import CorpusSpec, corpus, valid_of
from circuit_debugger.explanations.mine import EDGES, Config, Miner, mine
from circuit_debugger.explanations.sparse_block import SparseBlock
from circuit_debugger.nodes import HEAD, NEURON, NodeId, activation_hook


@pytest.fixture(scope="module")
def topk_model(tiny_dir):
    """The tiny model with a TopK residual SAE (layer 1) and a TopK transcoder (layer 0)."""
    from circuit_debugger.loading import load_model

    m = load_model(str(tiny_dir), name="tiny-topk")
    d, g = m.shape.d_model, torch.Generator().manual_seed(3)
    res = Autoencoder("res1", torch.randn(d, 40, generator=g) / d ** 0.5, torch.randn(40, generator=g) * 0.1,
                      torch.randn(40, d, generator=g) / 40 ** 0.5, torch.zeros(d), "blocks.1.hook_resid_pre",
                      activation="topk", k=5)
    tc = Autoencoder("tc0", torch.randn(d, 24, generator=g) / d ** 0.5, torch.zeros(24),
                     torch.randn(24, d, generator=g) / 24 ** 0.5, torch.zeros(d), "blocks.0.ln2.hook_normalized",
                     "blocks.0.hook_mlp_out", activation="topk", k=3)
    place(m, res, "res1")
    place(m, tc, "tc0")
    return m


@pytest.fixture(scope="module")
def user_corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "mine.jsonl"
    path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(CORPUS * 3)))
    return CorpusSpec(str(path), "text", 20)


def brute_force(m, rows):
    """Every node's value at every token, computed without the miner's code: plain captures,
    ‖z_h W_O[h]‖ directly, dense `ae.encode` on the captured encoder inputs."""
    L = m.shape.n_layers
    aes = m.autoencoders
    tc, res = aes.transcoders[0], aes.resids[1]
    names = [activation_hook(NodeId(HEAD, l), L) for l in range(L)] + [activation_hook(NodeId(NEURON, l), L) for l in range(L)]
    names += ["blocks.0.ln2.hook_normalized", "blocks.1.hook_resid_pre"]
    st = execute(m, None, RunRequest(capture=names, tokens=rows)).acts
    cols = [torch.einsum("bphe,hed->bphd", st[names[l]], m.W.W_O[l]).norm(dim=-1) for l in range(L)]
    cols += [st[names[L + l]] for l in range(L)]
    cols += [tc.encode(st["blocks.0.ln2.hook_normalized"]), res.encode(st["blocks.1.hook_resid_pre"])]
    return torch.cat(cols, -1)


def test_sparse_block_is_the_dense_encoding(topk_model):
    res = topk_model.autoencoders.resids[1]
    x = torch.randn(3, 7, topk_model.shape.d_model)
    sb = SparseBlock.topk(res, x)
    assert torch.equal(sb.dense(), res.encode(x))
    b, t, j = torch.tensor([0, 2, 1]), torch.tensor([6, 0, 3]), torch.tensor([4, 39, 17])
    assert torch.equal(sb.at(b, t, j), res.encode(x)[b, t, j])
    assert (torch.diff(sb.idx, dim=1) > 0).all()  # latents ascending within each token


def test_sparse_equals_dense_equals_brute_force(topk_model, user_corpus):
    m = topk_model
    rows = corpus(m, 700, seed=3, spec=user_corpus)
    valid = valid_of(m, rows)
    cfg = Config(k=4, r=3, batch=5)
    sparse = mine(m, rows, valid, cfg, progress=False)
    dense = Miner(sparse.s["top_val"].shape[0], m.shape.n_layers * m.shape.n_heads, cfg)
    for b in range(0, len(rows), cfg.batch):
        blocks, pats, vns = batch_activations(m, rows[b:b + cfg.batch], blocks=True)
        assert not any(isinstance(x, SparseBlock) for x in blocks)
        dense.update(blocks, valid[b:b + cfg.batch], pats, vns, b)
    dense.finish()
    for k, v in dense.s.items():
        if k == "sum":  # the same numbers added in another order
            assert torch.allclose(v, sparse.s[k], rtol=1e-6, atol=1e-5), k
        else:
            assert torch.equal(v, sparse.s[k]), k
    # brute force over every real token
    acts = torch.cat([brute_force(m, rows[b:b + 16]) for b in range(0, len(rows), 16)])
    flat = acts.reshape(-1, acts.shape[-1])[valid.reshape(-1)]
    n_tc, n_res = 24, 40
    assert flat.shape[1] == sparse.s["top_val"].shape[0] and (flat[:, -(n_tc + n_res):] == 0).float().mean() > 0.8
    assert torch.allclose(sparse.s["top_val"], flat.T.topk(cfg.k, dim=1).values, atol=1e-5)
    every = acts.reshape(-1, acts.shape[-1])
    assert torch.allclose(every[sparse.s["top_idx"], torch.arange(flat.shape[1])[:, None]], sparse.s["top_val"], atol=1e-5)
    assert torch.equal(sparse.s["active"], (flat > 0).sum(0).float())
    assert torch.allclose(sparse.s["max"], flat.max(0).values, atol=1e-5)
    assert torch.allclose(sparse.s["sum"], flat.sum(0), rtol=1e-4, atol=1e-3)
    bins = torch.bucketize(flat, EDGES)
    lat = slice(flat.shape[1] - n_tc - n_res, None)  # latents: far from bin edges with probability 1
    want = torch.stack([torch.bincount(bins[:, n], minlength=len(EDGES) + 1) for n in range(flat.shape[1])])
    assert torch.equal(sparse.s["hist"][lat], want[lat].float())
    assert torch.allclose(sparse.s["top_win"][:, :, cfg.before], sparse.s["top_val"], atol=1e-5)
    ok = sparse.s["rnd_idx"] >= 0
    assert (sparse.s["rnd_val"][ok] > 0).all()
    assert torch.allclose(every[sparse.s["rnd_idx"].clamp(min=0), torch.arange(flat.shape[1])[:, None]][ok],
                          sparse.s["rnd_val"][ok], atol=1e-5)


def test_resume_on_a_user_corpus_is_exact(topk_model, user_corpus, tmp_path):
    m = topk_model
    rows = corpus(m, 600, seed=4, spec=user_corpus)
    valid = valid_of(m, rows)
    cfg = Config(k=3, r=2, batch=4)
    whole = mine(m, rows, valid, cfg, progress=False)
    half = len(rows) // 2 // 4 * 4
    mine(m, rows[:half], valid[:half], cfg, tmp_path, every=1, progress=False)  # "stopped" midway
    resumed = mine(m, rows, valid, cfg, tmp_path, every=1, progress=False)
    for k, v in whole.s.items():
        assert torch.equal(v, resumed.s[k]), k


def test_mining_forward_stops_before_the_unembedding(topk_model):
    m = topk_model
    calls = []
    h = m.bridge.unembed.register_forward_hook(lambda *a: calls.append(1))  # after the [tokens, vocab] product
    try:
        m.run(torch.tensor([[m.codec.bos_id, 5, 6]]))
        assert calls == [1]  # the hook sees an ordinary forward
        batch_activations(m, torch.tensor([[m.codec.bos_id, 5, 6]]), blocks=True, sparse=True)
        assert calls == [1]
    finally:
        h.remove()
