"""Explain attention heads by what they attend to and what they write, scored on held-out text.

A head is described by the attention rule that best predicts where it looks, among:
previous token, itself, the first token (a resting position), earlier occurrences of the
current token (duplicate token), the token after an earlier occurrence of the current token
(induction), tokens that occurred earlier in the context (e.g. the repeated name), a fitted
set of key tokens (e.g. names), the token after a fitted token w (e.g. the name after
" and") and the token before a fitted token w.

Score ("attention_auc"): for each query, the probability that a key the rule names gets more
attention than a key it does not (the within-query ROC AUC; 0.5 = chance, 1 = the rule ranks
every key right), averaged over queries weighted by the head's write norm there (a head
matters where it writes). The rule and its parameters are chosen on one half of the held-out
rows and scored on the other half, so the score is not inflated by the choice.

What it writes: on the scoring half, at the queries where it writes most, the sign of its
write's direct effect on the logit of the token it attends to most (through the final layer
norm's gain; centred over the vocabulary): "copies" when positive in most, "suppresses" when
negative in most.

    python -m circuit_debugger.explanations.heads [--model default|llama] [--db ../explanations/MODEL.sqlite]
        [--corpus PATH] [--tokens 6000] [--seed 777]
"""

from __future__ import annotations

import argparse
from typing import Optional

import torch

from ..execution import RunRequest, execute
from ..nodes import HEAD, NodeId, activation_hook, pattern_hook

FIXED = {
    "prev": "the previous token",
    "self": "the current token itself",
    "first": "the first token (a resting position: the head does little)",
    "dup": "earlier occurrences of the current token (duplicate-token head)",
    "ind": "the token after an earlier occurrence of the current token (induction head)",
    "rep": "tokens that occurred earlier in the context (e.g. the repeated name)",
}
FITTED = ("set", "after", "before")


def _passes(model, rows: torch.Tensor, valid: torch.Tensor, batch: int = 16):
    """Per batch: tokens, valid, and per layer the pattern [B, H, T, T] and z [B, T, H, dh]."""
    L = model.shape.n_layers
    names = [n for l in range(L) for n in (pattern_hook(l), activation_hook(NodeId(HEAD, l), L))]
    for b in range(0, len(rows), batch):
        ids = rows[b:b + batch]
        store = execute(model, None, RunRequest(capture=names, tokens=ids.to(model.device))).acts
        yield ids, valid[b:b + batch], [(store[pattern_hook(l)].float().cpu(),
                                         store[activation_hook(NodeId(HEAD, l), L)].float().cpu()) for l in range(L)]


def _fixed_masks(tok: torch.Tensor) -> dict:
    B, T = tok.shape
    q = torch.arange(T)[:, None]
    k = torch.arange(T)[None, :]
    causal = (k <= q)[None].expand(B, T, T)
    same = tok[:, :, None] == tok[:, None, :]  # [B, q, k]
    prev_tok = torch.cat([torch.full((B, 1), -1), tok[:, :-1]], 1)
    earlier = (torch.triu(torch.ones(T, T, dtype=torch.bool), 1)[None] & (tok[:, :, None] == tok[:, None, :])).any(1)
    return {"prev": (k == q - 1)[None].expand(B, T, T), "self": (k == q)[None].expand(B, T, T),
            "first": (k == 0)[None].expand(B, T, T) & causal, "dup": same & (k < q)[None],
            "ind": (prev_tok[:, None, :] == tok[:, :, None]) & (k < q)[None] & (k >= 1)[None],
            "rep": earlier[:, None, :] & causal & (k > 0)[None], "causal": causal}


def _fitted_mask(rule: str, param, tok: torch.Tensor, causal: torch.Tensor) -> torch.Tensor:
    """Keys the fitted rule names (never position 0: resting on the first token is its own rule)."""
    B, T = tok.shape
    causal = causal & (torch.arange(T) > 0)[None, None, :]
    if rule == "set":
        m = torch.isin(tok, torch.tensor(param))
    elif rule == "after":
        m = torch.cat([torch.zeros(B, 1, dtype=torch.bool), tok[:, :-1] == param], 1)
    else:  # before: the key is followed by w, and that w is not in the future of the query
        m = torch.cat([tok[:, 1:] == param, torch.zeros(B, 1, dtype=torch.bool)], 1)
        return m[:, None, :] & causal & (torch.arange(T)[None, :] < torch.arange(T)[:, None])[None]
    return m[:, None, :] & causal


class _Acc:
    """Write-norm-weighted mean of within-query AUCs, per head and rule."""

    def __init__(self):
        self.num, self.den = {}, {}

    def add(self, key, auc_q: torch.Tensor, w: torch.Tensor) -> None:  # [H, B, T] each (NaN: undefined)
        ok = ~torch.isnan(auc_q)
        self.num[key] = self.num.get(key, 0) + torch.where(ok, auc_q * w, torch.zeros(())).sum((1, 2))
        self.den[key] = self.den.get(key, 0) + torch.where(ok, w, torch.zeros(())).sum((1, 2))

    def get(self, key) -> Optional[torch.Tensor]:
        if key not in self.num:
            return None
        return torch.where(self.den[key] > 0, self.num[key] / self.den[key].clamp(min=1e-12), torch.full_like(self.num[key], float("nan")))


def _auc(ranks: torch.Tensor, mask: torch.Tensor, causal: torch.Tensor) -> torch.Tensor:
    """Within-query AUC [H, B, T] of `mask` keys vs the other causal keys, from ranks [H, B, T, T]."""
    pos = mask & causal
    npos = pos.sum(-1).double()
    nneg = causal.sum(-1).double() - npos
    s = torch.where(pos, ranks, torch.zeros((), dtype=ranks.dtype)).sum(-1)
    auc = (s - npos * (npos + 1) / 2) / (npos * nneg)
    return torch.where((npos > 0) & (nneg > 0), auc, torch.full_like(auc, float("nan")))


def _ranks(pat: torch.Tensor, causal: torch.Tensor) -> torch.Tensor:
    """Rank (1 = least attended) of each causal key among its query's causal keys."""
    T = pat.shape[-1]
    x = torch.where(causal, pat.double(), torch.full((), -1.0, dtype=torch.double))
    order = x.argsort(dim=-1, stable=True)
    r = torch.empty_like(order, dtype=torch.double)
    r.scatter_(-1, order, torch.arange(1, T + 1, dtype=torch.double).expand_as(order).contiguous())
    return r - (T - causal.sum(-1, keepdim=True).double())


def head_explanations(model, rows: torch.Tensor, valid: torch.Tensor, k_set: int = 8) -> dict:
    """{head id: explanation dict} from held-out rows (first half fits, second half scores)."""
    L, H = model.shape.n_layers, model.shape.n_heads
    half = max(1, len(rows) // 2)
    fit_rows, fit_valid, score_rows, score_valid = rows[:half], valid[:half], rows[half:], valid[half:]
    V = int(max(rows.max(), 0)) + 2  # the last id stands for "no previous / next token"
    # ---- fit: fixed-rule AUCs, and attention mass per key token / previous / next token
    acc_fit = _Acc()
    mass = {k: torch.zeros(L, H, V, dtype=torch.double) for k in ("set", "after", "before")}
    base = {k: torch.zeros(L, H, V, dtype=torch.double) for k in ("set", "after", "before")}
    for tok, val, per_layer in _passes(model, fit_rows, fit_valid):
        masks = _fixed_masks(tok)
        causal = masks["causal"]
        for l, (pat, z) in enumerate(per_layer):
            w = _write_norm(model, l, z, val)  # [H, B, T]
            ranks = _ranks(pat, causal[:, None])
            for name in FIXED:
                acc_fit.add((l, name), _auc(ranks.transpose(0, 1), masks[name][None], causal[None]), w)
            # attention mass (weighted by write norm) and the uniform-attention baseline per token
            a = pat.double() * w.transpose(0, 1)[..., None]  # [B, H, T, T]
            a[..., 0] = 0  # the first token is the "first" rule's, not a fitted one's
            u = causal[:, None].double() / causal.sum(-1)[:, None, :, None].double() * w.transpose(0, 1)[..., None]
            u[..., 0] = 0
            for key, ktok in (("set", tok), ("after", torch.cat([torch.full_like(tok[:, :1], V - 1), tok[:, :-1]], 1)),
                              ("before", torch.cat([tok[:, 1:], torch.full_like(tok[:, :1], V - 1)], 1))):
                idx = ktok[:, None, None, :].expand_as(a).reshape(a.shape[0], H, -1).transpose(0, 1).reshape(H, -1)
                mass[key][l].scatter_add_(1, idx, a.transpose(0, 1).reshape(H, -1))
                base[key][l].scatter_add_(1, idx, u.transpose(0, 1).reshape(H, -1))
    params = _fit_params(mass, base, k_set)
    # ---- choose per head on the fitting half (fitted rules scored there too), then score on the other half
    acc_fit2, acc_score, copies = _Acc(), _Acc(), {}
    for phase, (rs, vs) in (("fit", (fit_rows, fit_valid)), ("score", (score_rows, score_valid))):
        for tok, val, per_layer in _passes(model, rs, vs):
            masks = _fixed_masks(tok)
            causal = masks["causal"]
            for l, (pat, z) in enumerate(per_layer):
                w = _write_norm(model, l, z, val)
                ranks = _ranks(pat, causal[:, None]).transpose(0, 1)  # [H, B, T, T]
                acc = acc_fit2 if phase == "fit" else acc_score
                if phase == "score":
                    for name in FIXED:
                        acc.add((l, name), _auc(ranks, masks[name][None], causal[None]), w)
                    _copy_stats(model, l, tok, pat, z, w, copies)
                for rule in FITTED:
                    m = torch.stack([_fitted_mask(rule, params[rule][l][h], tok, causal) for h in range(H)])
                    acc.add((l, rule), _auc(ranks, m, causal[None]), w)
    out = {}
    for l in range(L):
        for h in range(H):
            cand = {}
            for name in list(FIXED) + list(FITTED):
                src = acc_fit if name in FIXED else acc_fit2
                v = src.get((l, name))
                if v is not None and not torch.isnan(v[h]):
                    cand[name] = float(v[h])
            if not cand:
                continue
            best = max(cand, key=cand.get)
            held = acc_score.get((l, best))
            score = None if held is None or torch.isnan(held[h]) else float(held[h])
            out[f"L{l}.H{h}"] = _describe(model, best, params, l, h, score, cand[best], copies.get((l, h)))
    return out


def _write_norm(model, l: int, z: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """[H, B, T] ‖z·W_O‖ per head and query (0 at invalid queries)."""
    W_O = model.W.W_O[l].float().cpu()
    w = torch.einsum("bthe,hed->bthd", z, W_O).norm(dim=-1)  # [B, T, H]
    return (w * valid[..., None]).permute(2, 0, 1).double()


def _fit_params(mass: dict, base: dict, k_set: int) -> dict:
    """Per rule, layer and head: the key-token set / the w of 'after w' / 'before w', by the
    write-weighted attention mass they draw beyond what uniform attention would give them."""
    params = {r: [] for r in FITTED}
    for rule in FITTED:
        for l in range(mass[rule].shape[0]):
            row = []
            for h in range(mass[rule].shape[1]):
                excess = mass[rule][l, h] - base[rule][l, h]
                excess[-1] = float("-inf")  # the id standing for "no previous / next token"
                if rule == "set":  # the fewest tokens covering half the positive excess (at most k_set)
                    order = torch.argsort(excess, descending=True)
                    total = float(excess.clamp(min=0).sum())
                    chosen, got = [], 0.0
                    for t in order[:k_set].tolist():
                        if excess[t] <= 0:
                            break
                        chosen.append(t)
                        got += float(excess[t])
                        if got >= 0.5 * total:
                            break
                    row.append(chosen or [int(order[0])])
                else:
                    row.append(int(torch.argmax(excess)))
            params[rule].append(row)
    return params


def _copy_stats(model, l, tok, pat, z, w, copies: dict, top_frac: float = 0.25) -> None:
    """Sign of each strong write's direct effect on the logit of its most-attended token."""
    W = model.W
    W_U = W.W_U.float().cpu()
    gain = W.ln["ln_final"][0].float().cpu() if "ln_final" in W.ln else torch.ones(W_U.shape[0])
    U = (gain[:, None] * W_U)
    U = U - U.mean(1, keepdim=True)
    write = torch.einsum("bthe,hed->bthd", z, W.W_O[l].float().cpu())  # [B, T, H, d]
    att = pat.argmax(-1).permute(0, 2, 1)  # [B, T, H] key position
    key_tok = torch.gather(tok[:, :, None].expand(-1, -1, att.shape[-1]), 1, att)  # [B, T, H]
    if int(key_tok.max()) >= U.shape[1]:
        return
    eff = (write * U.T[key_tok]).sum(-1)  # [B, T, H]
    wn = w.permute(1, 2, 0)  # [B, T, H]
    for h in range(att.shape[-1]):
        x, s = eff[..., h].reshape(-1), wn[..., h].reshape(-1)
        keep = s > 0
        if keep.sum() == 0:
            continue
        x, s = x[keep], s[keep]
        n = max(1, int(top_frac * len(s)))
        strong = x[s.topk(n).indices]
        c = copies.setdefault((l, h), [0, 0, 0.0])
        c[0] += int((strong > 0).sum())
        c[1] += len(strong)
        c[2] += float(strong.sum())


def _describe(model, rule, params, l, h, score, fit_score, copy) -> dict:
    name = lambda t: repr(model.codec.token_strs([int(t)])[0]) if hasattr(model.codec, "token_strs") else str(t)
    if rule in FIXED:
        what = FIXED[rule]
    elif rule == "set":
        what = "the tokens " + ", ".join(name(t) for t in params["set"][l][h])
    elif rule == "after":
        what = f"the token after {name(params['after'][l][h])}"
    else:
        what = f"the token before {name(params['before'][l][h])}"
    text = f"attends to {what}"
    details = {"rule": rule, "fit_auc": round(fit_score, 4)}
    if copy and copy[1]:
        frac = copy[0] / copy[1]
        details.update(copy_fraction=round(frac, 3), copy_mean_effect=round(copy[2] / copy[1], 4))
        if frac >= 0.7:
            text += f"; its strongest writes raise the attended token's logit ({frac:.0%}: copies it)"
        elif frac <= 0.3:
            text += f"; its strongest writes lower the attended token's logit ({1 - frac:.0%}: suppresses it)"
    if rule in FITTED:
        details["param"] = params[rule][l][h]
    return {"explainer": "offline", "text": text, "score": score, "score_kind": "attention_auc", "details": details}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--db", default=None, help="write the head explanations into this explanations database")
    ap.add_argument("--corpus", default=None)
    ap.add_argument("--column", default="text")
    ap.add_argument("--tokens", type=int, default=6000)
    ap.add_argument("--seed", type=int, default=777)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    from ..loading import load_model
    from .build import CorpusSpec, corpus, valid_of

    m = load_model(a.model)
    spec = CorpusSpec(a.corpus, a.column) if a.corpus else None
    rows = corpus(m, a.tokens, a.seed, spec, split="held") if spec else corpus(m, a.tokens, a.seed + 1)
    out = head_explanations(m, rows, valid_of(m, rows))
    for nid, e in out.items():
        print(f"{nid:7s} {e['score'] if e['score'] is None else round(e['score'], 3)!s:6s} {e['text']}")
    scores = sorted(e["score"] for e in out.values() if e["score"] is not None)
    if scores:
        print(f"median attention AUC over heads: {scores[len(scores) // 2]:.3f} (min {scores[0]:.3f}, max {scores[-1]:.3f})")
    if a.db:
        from .store import Store

        store = Store(a.db, m.codec)
        for nid, e in out.items():
            store.put_explanation(nid, e)
        print(f"wrote {len(out)} head explanations into {a.db}")


if __name__ == "__main__":
    main()
