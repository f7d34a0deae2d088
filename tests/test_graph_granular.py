"""Mixed-granularity graphs (heads, neurons, SAE and transcoder latents, errors as nodes), QK
edges and pruning, checked against an independent frozen model: the real model run with hooks
that freeze every LN scale and attention pattern and hold every node's value fixed."""

import random

import pytest
import torch

from circuit_debugger.autoencoders import load_onto
from circuit_debugger.autoencoders.granular import Granularity, capture
from circuit_debugger.autoencoders.pruning import FullGraph, prune
from circuit_debugger.engine import Debugger
from circuit_debugger.loading import load_model
from test_autoencoders import random_tensors, write_saelens_folder

PROMPT = "When Mary and John went to the store, John gave a drink to"
CONFIGS = [(["sae", "heads"], ["transcoder", "neurons"]), (["heads", "ov"], ["neurons", "transcoder"])]


@pytest.fixture(scope="module")
def model_mixed(tiny_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed")
    for l in range(2):
        write_saelens_folder(root / f"tc{l}", random_tensors(32, 32, 50 + l), {
            "architecture": "standard", "hook_name": f"blocks.{l}.ln2.hook_normalized",
            "hook_name_out": f"blocks.{l}.hook_mlp_out"})
        write_saelens_folder(root / f"sae{l}", random_tensors(32, 32, 60 + l), {
            "architecture": "standard", "hook_name": f"blocks.{l}.hook_attn_out", "apply_b_dec_to_input": True})
    m = load_model(str(tiny_dir), name="tiny-mixed")
    assert load_onto(m, root) == {}
    return m


@pytest.fixture(scope="module")
def dbg_mixed(model_mixed):
    return Debugger([model_mixed])


def clean_heads(m, ids):
    """Every head's output per layer [H, seq, d] from the real model's hook_z (no freezing)."""
    store = {}
    hooks = [(f"blocks.{l}.attn.hook_z", (lambda l: lambda x, hook: store.setdefault(l, x[0].detach()) is None or x)(l))
             for l in range(m.shape.n_layers)]
    m.run(m.tokens_tensor(ids), hooks)
    return {l: torch.einsum("qhe,hed->hqd", z, m.W.W_O[l]) for l, z in store.items()}


def hook_frozen(m, ids, f, src, heads_dir):
    """Reads of the frozen model built from hooks on the real model: {node id: value}, logits."""
    L, W = m.shape.n_layers, m.W
    fixed = {f"blocks.{l}.ln{i}.hook_scale": (f.s1 if i == 1 else f.s2)[l][None] for l in range(L) for i in (1, 2)}
    fixed["ln_final.hook_scale"] = f.sf[None]
    fixed.update({f"blocks.{l}.attn.hook_pattern": f.patterns[l][None] for l in range(L)})
    fixed["hook_embed"], fixed["hook_pos_embed"] = src["emb"][None], src["pos"][None]
    hooks = [(k, (lambda v: lambda x, hook: v)(v)) for k, v in fixed.items()]
    reads: dict = {}

    def cap(name, fn):
        hooks.append((name, lambda x, hook: (fn(x[0]), x)[1]))

    for l in range(L):
        attn, mlp = f.g.attn[l], f.g.mlp[l]
        if attn == "heads":
            def z_read(z, l=l):
                o = torch.einsum("qhe,hed->hqd", z, W.W_O[l])
                for (h, q), v in zip([(h, q) for h in range(o.shape[0]) for q in range(o.shape[1])],
                                     (o * heads_dir[l]).sum(-1).flatten().tolist()):
                    reads[f"L{l}.H{h}@{q}"] = v
            cap(f"blocks.{l}.attn.hook_z", z_read)
            hooks.append((f"blocks.{l}.hook_attn_out", (lambda l: lambda x, hook: (src[f"head{l}"].sum(0) + W.b_O[l])[None])(l)))
        elif attn == "sae":
            ae = m.autoencoders.saes[l]

            def sae_out(x, hook, l=l, ae=ae):
                pre = ae.pre(x[0])
                for p, i in src[f"sae{l}"].nonzero().tolist():
                    reads[f"L{l}.S{i}@{p}"] = float(pre[p, i])
                return (src[f"sae{l}"] @ ae.W_dec + ae.b_dec + src[f"saeerr{l}"])[None]
            hooks.append((f"blocks.{l}.hook_attn_out", sae_out))
        if mlp == "transcoder":
            ae = m.autoencoders.transcoders[l]

            def tc_in(x, l=l, ae=ae):
                pre = x @ ae.W_enc + ae.b_enc
                for p, i in src[f"tc{l}"].nonzero().tolist():
                    reads[f"L{l}.T{i}@{p}"] = float(pre[p, i])
            cap(f"blocks.{l}.ln2.hook_normalized", tc_in)
            hooks.append((f"blocks.{l}.hook_mlp_out",
                          (lambda l, ae: lambda x, hook: (src[f"tc{l}"] @ ae.W_dec + ae.b_dec + src[f"tcerr{l}"])[None])(l, ae)))
        else:
            def n_in(pre, l=l):
                for p, i in src[f"neur{l}"].nonzero().tolist():
                    reads[f"L{l}.N{i}@{p}"] = float(pre[p, i])
            cap(f"blocks.{l}.mlp.hook_pre", n_in)
            hooks.append((f"blocks.{l}.hook_mlp_out",
                          (lambda l: lambda x, hook: (src[f"neur{l}"] @ W.W_out[l] + W.b_out[l] + src[f"rest{l}"])[None])(l)))
    logits = m.run(m.tokens_tensor(ids), hooks)[0]
    return reads, logits


def zero(src, node_id):
    out = {k: v.clone() for k, v in src.items()}
    name, p = node_id.split("@")
    p = int(p)
    if name in ("EMB", "POS"):
        out[name.lower() if name == "POS" else "emb"][p] = 0
        return out
    layer, unit = name[1:].split(".")
    l = int(layer)
    key = {"TERR": f"tcerr{l}", "SERR": f"saeerr{l}", "MLP": f"rest{l}"}.get(unit)
    if key:
        out[key][p] = 0
    elif unit[0] == "H":
        out[f"head{l}"][int(unit[1:]), p] = 0
    else:
        out[{"T": "tc", "S": "sae", "N": "neur"}[unit[0]] + str(l)][p, int(unit[1:])] = 0
    return out


@pytest.mark.parametrize("attn,mlp", CONFIGS)
def test_mixed_edges_equal_removal_in_hook_frozen_model(model_mixed, dbg_mixed, attn, mlp):
    m = model_mixed
    g = dbg_mixed.graph("tiny-mixed", PROMPT, " Mary", " John", node_threshold=1.0, edge_threshold=1.0,
                        attn=attn, mlp=mlp, neurons_per_position=4, qk_per_head=0)
    ids = m.tokenize(PROMPT)
    f = capture(m, ids, Granularity.parse(m, attn, mlp, 4))
    real = clean_heads(m, ids)
    dirs = {l: o / o.norm(dim=-1, keepdim=True) for l, o in real.items()}
    src = dict(f.src, emb=f.emb, pos=f.pos)
    for l in range(2):  # the held head values are the real model's head outputs
        if attn[l] == "heads":
            assert torch.allclose(src[f"head{l}"], real[l], atol=1e-5)
    a, b = m.codec.output_token(" Mary"), m.codec.output_token(" John")
    base, base_logits = hook_frozen(m, ids, f, src, dirs)
    assert float(base_logits[-1, a] - base_logits[-1, b]) == pytest.approx(g["target"]["value"], abs=1e-4)
    kinds = {n["kind"] for n in g["nodes"]}
    assert {"head", "neuron", "mlp_rest"} <= kinds and ("sae" in kinds) == ("sae" in attn)
    by_id = {n["id"]: n for n in g["nodes"]}
    for n in g["nodes"]:  # every node's read: frozen torch model == hook-frozen real model
        if n["id"] in base:
            assert n["input"] == pytest.approx(base[n["id"]], abs=1e-4), n
    edges = g["edges"]
    kinds_src = {}
    for e in edges:
        kinds_src.setdefault(by_id[e["source"]]["kind"], e)
    sample = list(kinds_src.values()) + random.Random(1).sample(edges, min(30, len(edges)))
    assert {"head", "neuron", "embed"} <= {by_id[e["source"]]["kind"] for e in sample}
    for e in sample:
        reads, logits = hook_frozen(m, ids, f, zero(src, e["source"]), dirs)
        if e["target"] == "TARGET":
            change = float(base_logits[-1, a] - base_logits[-1, b] - logits[-1, a] + logits[-1, b])
        else:
            change = base[e["target"]] - reads[e["target"]]
        assert change == pytest.approx(e["weight"], abs=1e-4), e


def test_qk_edges_sum_to_the_attention_score(model_mixed, dbg_mixed):
    m = model_mixed
    g = dbg_mixed.graph("tiny-mixed", PROMPT, " Mary", " John", node_threshold=1.0, edge_threshold=1.0,
                        attn=["heads", "heads"], mlp=["transcoder", "neurons"], qk_per_head=1000)
    ids = m.tokenize(PROMPT)
    store = {}
    hooks = [(f"blocks.{l}.attn.hook_attn_scores", (lambda l: lambda x, hook: store.setdefault(l, x[0].detach()) is None or x)(l))
             for l in range(2)]
    pat = {}
    hooks += [(f"blocks.{l}.attn.hook_pattern", (lambda l: lambda x, hook: pat.setdefault(l, x[0].detach()) is None or x)(l))
              for l in range(2)]
    m.run(m.tokens_tensor(ids), hooks)
    assert len(g["qk"]) >= 10
    for h in g["qk"]:
        l, hh, q, k = h["layer"], h["head"], h["query"], h["key"]
        assert k == int(torch.argmax(pat[l][hh, q]))
        assert h["score"] == pytest.approx(float(store[l][hh, q, k]), abs=1e-4)
        assert h["sum_edges"] + h["constant"] == pytest.approx(float(store[l][hh, q, k]), abs=1e-4)
        assert len(h["edges"]) == h["n_edges"]
        assert sum(e["weight"] for e in h["edges"]) == pytest.approx(h["sum_edges"], abs=1e-4)
        sides = {e["side"] for e in h["edges"]}
        assert sides <= {"query", "key"} and "query" in sides
        if l == 1:  # layer-1 heads read layer-0 heads at both positions
            assert any(e["source"].startswith("L0.H") for e in h["edges"])


def random_graph(seed, n_in=4, n_mid=30, n_err=6):
    """A random DAG: inputs, internal nodes in topological order, errors, one output."""
    g = torch.Generator().manual_seed(seed)
    N = n_in + n_mid + n_err + 1
    roles = ["input"] * n_in + ["internal"] * n_mid + ["error"] * n_err + ["output"]
    M = torch.zeros(N, N)
    for d in list(range(n_in, n_in + n_mid)) + [N - 1]:
        for s in range(N - 1):
            ok = s < n_in or n_in + n_mid <= s < N - 1 or (n_in <= s < d)
            if ok and torch.rand(1, generator=g) < 0.5:
                M[d, s] = torch.randn(1, generator=g) * torch.rand(1, generator=g) ** 3
    w = torch.zeros(N)
    w[-1] = 1
    return FullGraph(M, roles, w)


@pytest.mark.parametrize("mode", ["circuit-tracer", "ours"])
def test_pruning_is_monotone_in_its_thresholds(mode):
    for seed in range(5):
        g = random_graph(seed)
        before = None
        for nt in (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0):  # nodes kept before the edge step: only grow
            keep = prune(g, nt, 1.0, mode).node_mask
            if before is not None:
                assert bool((before <= keep).all()), (seed, nt)
            before = keep
        for nt in (0.5, 0.8):
            before_e, before_n = None, None
            for et in (0.5, 0.8, 0.9, 0.98, 1.0):
                p = prune(g, nt, et, mode)
                if before_e is not None:
                    assert bool((before_e <= p.edge_mask).all()) and bool((before_n <= p.node_mask).all()), (seed, nt, et)
                before_e, before_n = p.edge_mask, p.node_mask
        full = prune(g, 1.0, 1.0, mode)
        assert full.node_mask[-1] and bool(full.node_mask[:4].all())
        assert bool((full.edge_mask == (g.adjacency != 0) & full.node_mask[:, None] & full.node_mask[None, :]).all())


def test_pruning_definitions_differ_as_documented():
    """circuit-tracer counts errors and inputs in the node threshold, so it keeps fewer internal
    nodes than ours at the same threshold, and it prunes error nodes too."""
    fewer = 0
    for seed in range(5):
        g = random_graph(seed, n_err=10)
        internal = torch.tensor([r == "internal" for r in g.roles])
        ct, ours = prune(g, 0.8, 0.98, "circuit-tracer"), prune(g, 0.8, 0.98, "ours")
        fewer += int((ct.node_mask & internal).sum()) < int((ours.node_mask & internal).sum())
        # circuit-tracer's loop: every kept internal node has a kept input and output edge
        for j in (ct.node_mask & internal).nonzero().flatten().tolist():
            assert ct.edge_mask[j].any() and ct.edge_mask[:, j].any()
    assert fewer >= 3


def test_selection_rows_equal_the_full_graph_and_follow_influence(model_mixed, dbg_mixed):
    """With fewer rows allowed than internal nodes, the chosen nodes' edges are the full
    graph's, and the chosen nodes carry most of the full graph's internal influence."""
    from circuit_debugger.autoencoders.attribution_graph import build

    m = model_mixed
    ids = m.tokenize(PROMPT)
    a, b = m.codec.output_token(" Mary"), m.codec.output_token(" John")
    full = build(m, ids, a, b, len(ids) - 1, node_threshold=1.0, edge_threshold=1.0, max_latents=5000)
    n = full["n_internal_total"]
    part = build(m, ids, a, b, len(ids) - 1, node_threshold=1.0, edge_threshold=1.0, max_latents=5000,
                 max_nodes=n // 4)
    assert part["n_internal_with_rows"] == n // 4 and part["n_internal_total"] == n
    fe = {(e["source"], e["target"]): e["weight"] for e in full["edges"]}
    assert part["edges"] and all(fe[(e["source"], e["target"])] == pytest.approx(e["weight"], abs=1e-6) for e in part["edges"])
    fb = {x["id"]: x for x in full["nodes"]}
    for x in part["nodes"]:
        if "bias" in x:
            assert x["bias"] == pytest.approx(fb[x["id"]]["bias"], abs=1e-5)
    infl = {x["id"]: x["influence"] for x in full["nodes"] if x["kind"] == "transcoder"}
    chosen = {x["id"] for x in part["nodes"] if x["kind"] == "transcoder"}
    share = sum(infl.get(i, 0) for i in chosen) / sum(infl.values())
    assert share > 0.6, share


def test_ov_granular_walk_equals_the_autograd_checked_walk(model_mixed):
    """Transcoders and OV attention: the mixed walk's edges and head contributions equal
    graph.py's walk (itself checked against autograd in test_graph.py)."""
    from circuit_debugger.autoencoders import graph as old
    from circuit_debugger.autoencoders.granular_edges import edges

    m = model_mixed
    ids = m.tokenize(PROMPT)
    f = capture(m, ids, Granularity.parse(m, "ov", "transcoder"))
    fo = old.capture(m, ids)
    u, _ = old.logit_direction(m, m.codec.output_token(" Mary"), m.codec.output_token(" John"))
    picks = [(1, 9, int(i)) for i in (f.src["tc1"][9] != 0).nonzero().flatten()[:4]] + \
            [(0, 4, int(i)) for i in (f.src["tc0"][4] != 0).nonzero().flatten()[:3]]
    outs: list = []
    with torch.no_grad():
        old.forward_leaves(fo, old.make_leaves(fo), heads=outs)
    want, heads = old.edges_linear(fo, picks + [("target", len(ids) - 1, u)], outs)
    got, (hv, hi) = edges(f, [("transcoder", l, p, i, None) for l, p, i in picks] + [("target", None, len(ids) - 1, None, u)],
                          chunk=3, heads_k=5)
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(hv, heads.flatten(1).gather(1, hi), atol=1e-5)
    assert torch.allclose(hv.abs(), heads.flatten(1).abs().topk(5, dim=1).values, atol=1e-5)


def test_edges_do_not_depend_on_chunks_buckets_or_the_write_cache(model_mixed, monkeypatch):
    """The memory-bounding choices (reads per walk, position ranges, cached padded writes or
    position by position) give the same edges."""
    from circuit_debugger.autoencoders import granular_edges as GE

    m = model_mixed
    ids = m.tokenize(PROMPT)
    f = capture(m, ids, Granularity.parse(m, ["sae", "heads"], ["transcoder", "neurons"], 4))
    reads = [n.read() for n in GE.nodes(f) if n.role == "internal"]
    want, (hv, _) = GE.edges(f, reads)
    got, (hv2, _) = GE.edges(f, reads, chunk=7, buckets=1)
    assert torch.allclose(got, want, atol=1e-5) and torch.allclose(hv, hv2, atol=1e-5)
    f2 = capture(m, ids, Granularity.parse(m, ["sae", "heads"], ["transcoder", "neurons"], 4))
    monkeypatch.setattr(GE.padded_writes, "__defaults__", (0,))
    got2, _ = GE.edges(f2, reads, buckets=3)
    assert torch.allclose(got2, want, atol=1e-5)


def test_selection_in_small_batches(model_mixed):
    """Several rounds of choosing: each chosen row is the node's full row, chosen by influence."""
    from circuit_debugger.autoencoders import granular_edges as GE
    from circuit_debugger.autoencoders.graph import logit_direction
    from circuit_debugger.autoencoders.selection import select_rows

    m = model_mixed
    ids = m.tokenize(PROMPT)
    f = capture(m, ids, Granularity.parse(m, "ov", "transcoder"))
    ns = GE.nodes(f)
    internal = [n for n in ns if n.role == "internal"]
    u, _ = logit_direction(m, m.codec.output_token(" Mary"), m.codec.output_token(" John"))
    target = ("target", None, len(ids) - 1, None, u)
    chosen, rows, _, _ = select_rows(f, ns, internal, target, 20, 3, batch=5)
    assert len(chosen) == 20 and len(set(chosen)) == 20 and rows.shape[0] == 21
    want, _ = GE.edges(f, [internal[i].read() for i in chosen] + [target])
    assert torch.allclose(rows, want, atol=1e-6)
    direct = want[-1].abs()  # the first round takes the nodes with the largest direct edges into the target
    idx = {n.id: j for j, n in enumerate(ns)}
    first = [idx[internal[i].id] for i in chosen[:5]]
    assert set(first) == set(torch.tensor([idx[n.id] for n in internal])[direct[[idx[n.id] for n in internal]].topk(5).indices].tolist())
