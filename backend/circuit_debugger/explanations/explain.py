"""Describe nodes from their mined examples, and score each description on held-out tokens.

- offline (the default): names the trigger tokens (the example tokens that cover most top
  examples), a preceding-context token when one dominates, density and, for neurons and
  latents, the tokens its write promotes. Score: ROC AUC of "the token is a trigger (and the
  previous one the context)" for predicting strong activation (≥ half the mined max) on
  held-out tokens.
- llm: any OpenAI-compatible chat endpoint, configured by CD_LLM_BASE_URL, CD_LLM_API_KEY
  and CD_LLM_MODEL; never imported or called at start-up. Score: simulation — the LLM
  predicts each held-out token's activation (0–10) from the explanation; Pearson correlation
  with the real activations.

    python -m circuit_debugger.explanations.explain [--db ../explanations/default.sqlite] [--explainer offline]
"""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from collections import Counter
from typing import Optional

import torch

from ..errors import UserError


def auc(scores: torch.Tensor, labels: torch.Tensor) -> Optional[float]:
    """ROC AUC with ties counted half (Mann–Whitney)."""
    pos, neg = int(labels.sum()), int((~labels).sum())
    if pos == 0 or neg == 0:
        return None
    s_pos, s_neg = scores[labels], scores[~labels]
    greater = (s_pos[:, None] > s_neg[None, :]).double().sum() if pos * neg <= 4_000_000 else None
    if greater is None:  # large: rank formulation
        order = torch.argsort(scores)
        ranks = torch.empty_like(scores, dtype=torch.double)
        ranks[order] = torch.arange(1, len(scores) + 1, dtype=torch.double)
        for v in torch.unique(scores):  # average ranks over ties
            m = scores == v
            ranks[m] = ranks[m].mean()
        return float((ranks[labels].sum() - pos * (pos + 1) / 2) / (pos * neg))
    ties = (s_pos[:, None] == s_neg[None, :]).double().sum()
    return float((greater + 0.5 * ties) / (pos * neg))


def triggers(examples: list, codec) -> tuple[list[int], Optional[int]]:
    """Token ids at the example centres covering ≥ 60% of examples (at most 4), and a previous
    token shared by ≥ 50% of them, if any."""
    centres = [t[c] for t, _, c in examples if t[c] is not None]
    if not centres:
        return [], None
    chosen, covered = [], 0
    for tok, n in Counter(centres).most_common(4):
        chosen.append(tok)
        covered += n
        if covered >= 0.6 * len(centres):
            break
    prev = Counter(t[c - 1] for t, _, c in examples if c > 0 and t[c - 1] is not None).most_common(1)
    ctx = prev[0][0] if prev and prev[0][1] >= 0.5 * len(centres) else None
    return chosen, ctx


def offline(node: dict, examples: list, codec, held: dict) -> dict:
    """`held`: {'tokens': [n] ids, 'prev': [n] ids, 'acts': [n] this node's activations}."""
    trig, ctx = triggers(examples, codec)
    name = lambda ids: ", ".join(repr(codec.token_strs([i])[0]) for i in ids)
    if not trig or not node.get("max") or node["max"] <= 0:
        return {"explainer": "offline", "text": f"never active on the mined corpus (density {node['density']:.2%})",
                "score": None, "score_kind": "auc", "details": {"triggers": [], "context": None}}
    text = f"fires on {name(trig)}" + (f" after {name([ctx])}" if ctx is not None else "")
    pairs = [p for p in node.get("head_pairs", []) if p["criterion"] == "write_norm"][:5]
    if pairs:  # a head: say where its strongest writes read from
        queries = Counter(p["query"] for p in pairs).most_common(2)
        keys = Counter(p["key"] for p in pairs).most_common(3)
        text = (f"strongest writes attend from {', '.join(repr(q) for q, _ in queries)} to "
                f"{', '.join(repr(k) for k, _ in keys)}; writes most at {name(trig)}")
    text += f" (density {node['density']:.1%}, max {node['max']:.2f})"
    if node.get("logit_lens"):
        text += "; promotes " + ", ".join(repr(x["token"]) for x in node["logit_lens"][:3])
    tok, prev, acts = held["tokens"], held["prev"], held["acts"]
    score_in = torch.isin(tok, torch.tensor(trig)).double()
    if ctx is not None:
        score_in = score_in + 0.5 * (prev == ctx).double() * score_in
    labels = acts >= 0.5 * float(node["max"] or 0) if node["max"] and node["max"] > 0 else acts > 0
    return {"explainer": "offline", "text": text, "score": auc(score_in, labels), "score_kind": "auc",
            "details": {"triggers": trig, "context": ctx, "held_out_tokens": int(len(tok)),
                        "held_out_active": int(labels.sum())}}


# ---------------------------------------------------------------- LLM (optional)
def llm_config() -> Optional[dict]:
    base = os.environ.get("CD_LLM_BASE_URL")
    if not base:
        return None
    return {"base": base.rstrip("/"), "key": os.environ.get("CD_LLM_API_KEY", ""),
            "model": os.environ.get("CD_LLM_MODEL", "gpt-4o-mini")}


def _chat(cfg: dict, prompt: str, timeout: float = 60) -> str:
    body = json.dumps({"model": cfg["model"], "messages": [{"role": "user", "content": prompt}], "temperature": 0})
    req = urllib.request.Request(cfg["base"] + "/chat/completions", data=body.encode(), method="POST",
                                 headers={"content-type": "application/json", "authorization": f"Bearer {cfg['key']}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())["choices"][0]["message"]["content"].strip()
    except Exception as e:  # a 5xx body carries no internals (address, exception text): the log has them
        logging.getLogger("circuit_debugger.server").error("the LLM endpoint %s failed: %r", cfg["base"], e)
        raise UserError("the configured LLM endpoint failed (the server's log has why); try the offline explainer",
                        status=502) from None


def _show(tokens, acts, codec) -> str:
    return " ".join(f"{codec.token_strs([t])[0]!r}:{a:.1f}" for t, a in zip(tokens, acts) if t is not None)


def llm(node: dict, examples: list, codec, held_windows: list, cfg: Optional[dict] = None) -> dict:
    cfg = cfg or llm_config()
    if cfg is None:
        raise UserError("no LLM is configured (set CD_LLM_BASE_URL, CD_LLM_API_KEY, CD_LLM_MODEL)")
    shown = "\n".join(_show(t, a, codec) for t, a, _ in examples[:10])
    text = _chat(cfg, "These are the top-activating contexts of one unit of a language model, each token "
                      "followed by the unit's activation:\n" + shown +
                      "\nIn one short sentence, what does the unit respond to?")
    preds, truth = [], []
    for toks, acts in held_windows[:8]:
        words = [codec.token_strs([t])[0] for t in toks if t is not None]
        reply = _chat(cfg, f"A unit of a language model is explained as: {text}\nFor each token of "
                           f"{json.dumps(words)} predict the unit's activation from 0 to 10. Reply with a JSON list "
                           "of numbers only.")
        try:
            nums = [float(x) for x in json.loads(reply)]
        except (ValueError, TypeError):
            continue
        real = [a for t, a in zip(toks, acts) if t is not None]
        if len(nums) == len(real):
            preds += nums
            truth += real
    score = None
    if len(preds) > 2:
        p, t = torch.tensor(preds, dtype=torch.double), torch.tensor(truth, dtype=torch.double)
        if p.std() > 0 and t.std() > 0:
            score = float(((p - p.mean()) * (t - t.mean())).mean() / (p.std(unbiased=False) * t.std(unbiased=False)))
    return {"explainer": "llm", "text": text, "score": score, "score_kind": "simulation_correlation",
            "details": {"model": cfg["model"], "simulated_tokens": len(preds)}}


def held_out(model, rows: torch.Tensor, valid: torch.Tensor) -> dict:
    """All nodes' activations on held-out rows: tokens, previous tokens, acts [n_tokens, n_nodes]."""
    from .activations import batch_activations

    acts = []
    for b in range(0, len(rows), 16):
        acts.append(batch_activations(model, rows[b:b + 16])[0].cpu())
    acts = torch.cat(acts)
    prev = torch.cat([torch.full((rows.shape[0], 1), -1), rows[:, :-1]], 1)
    keep = valid.reshape(-1)
    return {"tokens": rows.reshape(-1)[keep], "prev": prev.reshape(-1)[keep], "acts": acts.reshape(-1, acts.shape[-1])[keep]}


def explain_all(model, store, held: dict, index, nodes: Optional[list] = None, heads: Optional[dict] = None) -> int:
    """Offline explanations for `nodes` (default: all); heads with an entry in `heads` (see
    heads.py: what they attend to and write) get that one instead of the token-based one."""
    made, done = [], 0
    position = {nid: i for i, nid in enumerate(index.ids)}
    for nid in nodes or index.ids:
        node = store.node(nid, limit=0)
        if node is None:
            continue
        if heads and nid in heads:
            made.append((nid, heads[nid]))
            continue
        h = {"tokens": held["tokens"], "prev": held["prev"], "acts": held["acts"][:, position[nid]]}
        made.append((nid, offline(node, store.top_examples(nid), model.codec, h)))
        if len(made) >= 1000:  # one transaction per thousand nodes, not one per node
            store.put_explanations(made)
            done, made = done + len(made), []
    store.put_explanations(made)
    return done + len(made)
