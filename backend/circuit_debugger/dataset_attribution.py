""""Why A and not B" over a whole prompt set: one batched forward and backward per token
length, per-node direct effect (at END, final LN scale frozen) and act×grad total effect for
every prompt, aggregated as mean and spread, with per-slot totals so positions line up by role
(S2, IO, END ...) rather than by index."""

from __future__ import annotations

import statistics
import time
from typing import Optional

import torch

from . import stopping
from .execution import LEAVES, RunRequest, execute
from .linear import centre, post_norm_hooks
from .model import DebugModel
from .nodes import HEAD, NEURON, NodeId, activation_hook, ln_out_hook, ln_scale_hook
from .promptsets import PromptSet, batches, logit_diff, split_batches


def per_prompt(m: DebugModel, ps: PromptSet, batch_size: Optional[int] = None) -> dict:
    """Arrays over prompts: metric [P], node ids, direct [P, N], total [P, N], slot totals
    {slot: [P, N]} (NaN where a prompt lacks the slot). At most `batch_size` prompts per
    forward (peak memory grows with it: ~4 MB per 63-token prompt on the default model)."""
    L, H, D = m.shape.n_layers, m.shape.n_heads, m.shape.d_mlp
    ids_names = [f"L{l}.H{h}" for l in range(L) for h in range(H)] + [f"L{l}.N{i}" for l in range(L) for i in range(D)]
    P, N = len(ps.rows), len(ids_names)
    metric = torch.zeros(P, dtype=torch.float64)
    direct = torch.zeros(P, N, dtype=torch.float64)
    total = torch.zeros(P, N, dtype=torch.float64)
    slots = {s: torch.full((P, N), float("nan"), dtype=torch.float64) for s in ps.slot_names}
    zs = [activation_hook(NodeId(HEAD, l), L) for l in range(L)]
    posts = [activation_hook(NodeId(NEURON, l), L) for l in range(L)]
    scale = ln_scale_hook("ln_final")
    # the embeddings are made leaves that require grad, so the graph reaches every activation
    # soft-capped logits (Gemma-2) are not linear in the residual: decompose the pre-cap difference
    pre_cap = ln_out_hook("ln_final") if m.arch.final_softcap else None
    names = list(LEAVES) + zs + posts + [scale] + post_norm_hooks(m) + ([pre_cap] if pre_cap else [])
    W = m.W
    for batch in split_batches(batches(m, ps), batch_size):
        stopping.check()  # a request whose client left, or past its time limit, stops here
        rows, ids, t, d = torch.tensor(batch.rows), batch.ids, batch.t, batch.d
        with m.lock:
            cap = execute(m, None, RunRequest(capture=names, grad=True, tokens=ids))
            store, logits = cap.acts, cap.logits
            last = logits[:, -1] if pre_cap is None else store[pre_cap][:, -1] @ W.W_U + W.b_U
            value = logit_diff(last, t, d)
            grads = torch.autograd.grad(value.sum(), [store[n] for n in zs + posts])
        # the readout direction per prompt, through the frozen final LN: G [n, d_model]
        U = W.W_U[:, t].T - torch.where((d >= 0)[:, None], W.W_U[:, d.clamp(min=0)].T, W.W_U.mean(-1)[None])
        if "ln_final" in W.ln:
            U = U * W.ln["ln_final"][0] / store[scale][:, -1].detach().reshape(-1, 1)
            U = centre(m, U)
        metric[rows] = value.detach().double().cpu()
        cols_d, cols_t = [], []

        def through_post(l: int, which: str) -> torch.Tensor:  # a post-norm (Gemma-2/3, OLMo-2), scale frozen
            name = f"blocks.{l}.{which}"
            if name not in W.norms:
                return U
            return U * W.norms[name] / store[ln_scale_hook(name)][:, -1].detach().reshape(-1, 1)

        for l in range(L):
            z, g = store[zs[l]].detach(), grads[l]
            cols_d.append(torch.einsum("bhe,hed,bd->bh", z[:, -1], W.W_O[l], through_post(l, "ln1_post")))
            cols_t.append((z * g).sum(-1))  # [n, T, H]
        for l in range(L):
            a, g = store[posts[l]].detach(), grads[L + l]
            cols_d.append(a[:, -1] * (W.W_out[l] @ through_post(l, "ln2_post").T).T)
            cols_t.append(a * g)  # [n, T, D]
        tp = torch.cat(cols_t, -1).double().cpu()  # [n, T, N]
        direct[rows] = torch.cat(cols_d, -1).double().cpu()
        total[rows] = tp.sum(1)
        for s in slots:
            have = [(j, sl[s]) for j, sl in enumerate(batch.slots) if s in sl]
            if have:
                j, pos = zip(*have)
                slots[s][rows[list(j)]] = tp[list(j), list(pos)]
    return {"metric": metric, "ids": ids_names, "direct": direct, "total": total, "slots": slots}


def summarize(m: DebugModel, ps: PromptSet, top_k: int = 50, drill: int = 10, batch_size: Optional[int] = None,
              r: Optional[dict] = None) -> dict:
    """The summary over the set; `r`: per-prompt arrays already computed (merged from jobs' shards)."""
    t0 = time.perf_counter()
    r = r if r is not None else per_prompt(m, ps, batch_size)
    ids, total, direct = r["ids"], r["total"], r["direct"]
    mean_t, mean_d = total.mean(0), direct.mean(0)
    std_t = total.std(0) if len(ps.rows) > 1 else torch.zeros_like(mean_t)
    std_d = direct.std(0) if len(ps.rows) > 1 else torch.zeros_like(mean_d)
    order = torch.argsort(mean_t.abs(), descending=True)[:top_k].tolist()
    order += [i for i in torch.argsort(mean_d.abs(), descending=True)[:top_k].tolist() if i not in order]
    nodes = [{"id": ids[i], "kind": "head" if ".H" in ids[i] else "neuron", "layer": int(ids[i][1:ids[i].index(".")]),
              "total_mean": float(mean_t[i]), "total_std": float(std_t[i]), "direct_mean": float(mean_d[i]),
              "direct_std": float(std_d[i]),
              "slots": {s: _nanmean(v[:, i]) for s, v in r["slots"].items()}} for i in order]
    drill_ids = order[:drill]
    prompts = [{"prompt": row.prompt, "target": row.target, "distractor": row.distractor,
                "metric": float(r["metric"][p]), "total": [float(total[p, i]) for i in drill_ids]}
               for p, row in enumerate(ps.rows)]
    ms = r["metric"].tolist()
    return {"n_prompts": len(ps.rows), "metric_mean": statistics.fmean(ms),
            "metric_std": statistics.stdev(ms) if len(ms) > 1 else 0.0, "slots": ps.slot_names,
            "nodes": nodes, "drill_nodes": [ids[i] for i in drill_ids], "prompts": prompts,
            "elapsed_ms": round((time.perf_counter() - t0) * 1000, 1)}


def _nanmean(x: torch.Tensor):
    x = x[~torch.isnan(x)]
    return float(x.mean()) if len(x) else None
