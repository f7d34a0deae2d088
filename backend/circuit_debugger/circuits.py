"""Circuits over a prompt set: faithfulness, completeness and minimality (Wang et al., 2022,
"Interpretability in the Wild", section 4), with every ablation batched.

A circuit is a set of heads, MLP neurons and SAE / transcoder / residual-SAE latents (`L1.H3`,
`L0.N17`, `L1.T300`, `L2.R5`), each optionally restricted to a template slot (`L1.H3@S2`: kept only at S2's
position). The universe is every head, plus every neuron when the circuit has neurons, plus
every latent of the spliced autoencoders when it has latents (their error terms are always
kept, as the MLPs are for a heads-only circuit); F(S) is the mean logit difference over the set
when every universe component outside S is ablated: replaced by its mean over the reference
distribution at the same position (the rows' counterfactuals when they all have one, else the
prompts themselves), or by a resampled reference row's activation.

Many subsets are evaluated in one forward: the prompts are repeated once per subset and each
copy gets its own keep-mask, so a greedy search step is one batched pass.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Optional, Sequence

import torch


from .execution import RunRequest, execute
from .autoencoders.splice import SpliceChoice, latent_key
from . import stopping
from .errors import UserError
from .model import DebugModel
from .nodes import HEAD, NEURON, RESID_SAE, SAE, TRANSCODER, NodeId, activation_hook, parse_node

LETTER = {HEAD: "H", NEURON: "N", TRANSCODER: "T", SAE: "S", RESID_SAE: "R"}
LATENTS = (TRANSCODER, SAE, RESID_SAE)
from .promptsets import PromptSet, batches, logit_diff

WALK_MAX = 16  # minimality's greedy walks only for circuits this small (their cost grows as n²)
MAX_BATCH = 1024  # sequences per forward (larger batches ran slower per sequence on CPU)


@dataclass(frozen=True)
class Component:
    kind: str  # HEAD, NEURON, TRANSCODER, SAE or RESID_SAE
    layer: int
    index: int
    slot: Optional[str]  # kept only at this slot's position (None: at every position)

    def __str__(self) -> str:
        base = f"L{self.layer}.{LETTER[self.kind]}{self.index}"
        return base + (f"@{self.slot}" if self.slot else "")


def parse_circuit(m: DebugModel, nodes: Sequence[str], slots: Sequence[str]) -> list:
    out = []
    for text in nodes:
        base, _, slot = str(text).partition("@")
        n = parse_node(base)
        if n.kind not in LETTER or n.position is not None:
            raise UserError(f"circuit node {text!r}: circuits are made of heads (L1.H3), neurons (L0.N17) and "
                            "latents (L1.T300, L0.S5, L2.R7), optionally @SLOT")
        top = m.shape.n_layers + 1 if n.kind == RESID_SAE else m.shape.n_layers  # L{n_layers}.R: final residual
        if n.kind in LATENTS:
            family = m.autoencoders.family(n.kind)
            if n.layer not in family:
                raise UserError(f"circuit node {text!r}: this model has no {n.kind} on layer {n.layer}")
            limit = family[n.layer].d_sae
        else:
            limit = m.shape.n_heads if n.kind == HEAD else m.shape.d_mlp
        if not (0 <= n.layer < top and 0 <= n.index < limit):
            raise UserError(f"circuit node {text!r} is out of range for this model")
        if slot and slot not in slots:
            raise UserError(f"circuit node {text!r}: slot {slot!r} is not in the prompt set (slots: {', '.join(slots)})")
        out.append(Component(n.kind, n.layer, n.index, slot or None))
    if len(set(out)) != len(out):
        raise UserError("the circuit lists a node twice")
    return out


class Evaluator:
    """F(config) for many configs at once. A config is (mode, frozenset of circuit indices):
    mode 'circuit' keeps exactly those components (the rest of the universe ablated), mode
    'model' ablates exactly those (everything else kept)."""

    def __init__(self, m: DebugModel, ps: PromptSet, circuit: list, ablation: str = "mean", seed: int = 0):
        if ablation not in ("mean", "resample", "zero", "patch"):
            raise UserError("ablation must be 'mean', 'resample', 'zero' or 'patch'")
        self.m, self.circuit, self.forwards, self.configs = m, circuit, 0, 0
        self.kinds = {c.kind for c in circuit} | {HEAD}
        L = m.shape.n_layers
        aes = m.autoencoders
        # heads and neurons are masked at their hook points; latents inside the autoencoder splice
        self.hooks = {(k, l): activation_hook(NodeId(k, l), L) for k in self.kinds & {HEAD, NEURON} for l in range(L)}
        # (residual SAEs: the residual entering the layer becomes latents + error there)
        self.splice = SpliceChoice(tuple(aes.mlp_layers()) if TRANSCODER in self.kinds else (),
                                   tuple(sorted(aes.saes)) if SAE in self.kinds else (),
                                   tuple(sorted(aes.resids)) if RESID_SAE in self.kinds else ())
        self.latents = {(k, l): latent_key(k, l) for k, layers in ((TRANSCODER, self.splice.transcoders),
                                                                  (SAE, self.splice.saes),
                                                                  (RESID_SAE, self.splice.resids)) for l in layers}
        self.sizes = {key: aes.family(key[0])[key[1]].d_sae for key in self.latents}
        use_cf = all(r.counterfactual for r in ps.rows)
        if ablation == "patch" and not use_cf:
            raise UserError("'patch' takes each row's activations from its counterfactual; every row needs one")
        self.reference = "counterfactuals" if use_cf else "prompts"
        rng = torch.Generator().manual_seed(seed)
        self.groups = []
        for batch in batches(m, ps, counterfactuals=use_cf):
            n = len(batch.rows)
            store = execute(m, None, RunRequest(capture=list(self.hooks.values()), splice=self.splice,
                                                tokens=batch.refs)).acts
            names = list(self.hooks.values()) + list(self.latents.values())
            store = {h: store[h].detach() for h in names}
            if ablation == "zero":
                values = {h: torch.zeros_like(store[h]) for h in names}
            elif ablation == "patch":  # each row gets its own counterfactual's activations
                values = store
            elif ablation == "mean":
                values = {h: store[h].mean(0, keepdim=True).expand_as(store[h]) for h in names}
            else:  # each row gets another reference row's activations
                perm = torch.randperm(n, generator=rng) if n > 1 else torch.zeros(1, dtype=torch.long)
                values = {h: store[h][perm.to(m.device)] for h in names}
            self.groups.append({"ids": batch.ids, "values": values, "t": batch.t, "d": batch.d, "slots": batch.slots,
                                "n": n, "T": batch.ids.shape[1], "rows": torch.tensor(batch.rows)})
        self.n_rows = len(ps.rows)
        self.memo: dict = {}
        self.rows_memo: dict = {}  # config -> per-row metric [P] (in prompt-set order)

    # -------------------------------------------------------------- masks
    def _units(self, key: tuple) -> int:
        kind = key[0]
        return self.m.shape.n_heads if kind == HEAD else self.m.shape.d_mlp if kind == NEURON else self.sizes[key]

    def _mask(self, g: dict, mode: str, members: frozenset) -> dict:
        """keep[(kind, layer)]: bool [n, T, units] for one config on one length group."""
        n, T = g["n"], g["T"]
        keep = {key: torch.full((n, T, self._units(key)), mode == "model", dtype=torch.bool, device=self.m.device)
                for key in list(self.hooks) + list(self.latents)}
        for i in members:
            c = self.circuit[i]
            k = keep[(c.kind, c.layer)]
            if c.slot is None:
                k[:, :, c.index] = mode == "circuit"
            else:  # rows without this slot do not have the component at all
                have = [(j, s[c.slot]) for j, s in enumerate(g["slots"]) if c.slot in s]
                if have:
                    rows, pos = (torch.tensor(x, device=self.m.device) for x in zip(*have))
                    k[rows, pos, c.index] = mode == "circuit"
        return keep

    def _metric(self, g: dict, logits: torch.Tensor, copies: int) -> torch.Tensor:
        """Logit difference per config and row: [copies, n]."""
        # END is the last position of every prompt
        return logit_diff(logits[:, -1], g["t"].repeat(copies), g["d"].repeat(copies)).view(copies, g["n"])

    def evaluate(self, configs: Sequence) -> list:
        """F for each (mode, frozenset) config; memoised."""
        todo = list(dict.fromkeys(c for c in configs if c not in self.memo))
        if todo:
            totals = torch.zeros(len(todo), dtype=torch.float64)
            per_row = torch.zeros(len(todo), self.n_rows, dtype=torch.float64)
            for g in self.groups:
                per = max(1, MAX_BATCH // g["n"])
                for start in range(0, len(todo), per):
                    stopping.check()  # a request whose client left, or past its time limit, stops here
                    chunk = todo[start:start + per]
                    masks = [self._mask(g, mode, members) for mode, members in chunk]
                    keep = {key: torch.cat([mk[key] for mk in masks]) for key in masks[0]}
                    # heads/neurons masked at their hook points, latents inside the splice
                    edits = {name: self._hook(keep[key], g["values"][name], len(chunk))
                             for key, name in list(self.hooks.items()) + list(self.latents.items())}
                    logits = execute(self.m, None, RunRequest(splice=self.splice, edits=edits,
                                                              tokens=g["ids"].repeat(len(chunk), 1))).logits
                    self.forwards += 1
                    vals = self._metric(g, logits, len(chunk)).double().cpu()
                    totals[start:start + len(chunk)] += vals.sum(1)
                    per_row[start:start + len(chunk), g["rows"]] = vals
            for c, v, r in zip(todo, (totals / self.n_rows).tolist(), per_row):
                self.memo[c] = v
                self.rows_memo[c] = r
            self.configs += len(todo)
        return [self.memo[c] for c in configs]

    @staticmethod
    def _hook(keep: torch.Tensor, value: torch.Tensor, copies: int):
        def fn(x, hook=None):
            v = value.repeat(copies, *([1] * (value.dim() - 1))).to(x.dtype)
            k = keep if x.dim() == 3 else keep[..., None]  # neurons [b,t,n]; heads [b,t,h,e]
            return torch.where(k, x, v)
        return fn


def evaluate_circuit(m: DebugModel, ps: PromptSet, nodes: Sequence[str], *, ablation: str = "mean",
                     n_random: int = 10, greedy_steps: int = 3, seed: int = 0) -> dict:
    """Faithfulness, completeness (worst K over singles, random subsets and a greedy search)
    and minimality (per node, the best K found) of `nodes` on `ps`."""
    t0 = time.perf_counter()
    circuit = parse_circuit(m, nodes, ps.slot_names)
    if not circuit:
        raise UserError("the circuit is empty: select at least one head or neuron")
    with m.lock:  # many hooked passes: one evaluation at a time per model
        ev = Evaluator(m, ps, circuit, ablation, seed)
        out = _criteria(ev, circuit, n_random, greedy_steps, random.Random(seed))
    out.update({"n_prompts": len(ps.rows), "ablation": ablation, "reference": ev.reference,
                "universe": sorted(ev.kinds), "nodes": [str(c) for c in circuit],
                "cost": {"forwards": ev.forwards, "configs": ev.configs, "elapsed_ms": round((time.perf_counter() - t0) * 1000, 1)}})
    return out


def _criteria(ev: Evaluator, circuit: list, n_random: int, greedy_steps: int, rng: random.Random) -> dict:
    n = len(circuit)
    full = frozenset(range(n))
    C = lambda keep: ("circuit", frozenset(keep))  # noqa: E731
    M = lambda removed: ("model", frozenset(removed))  # noqa: E731
    f_model, f_circuit, f_empty = ev.evaluate([M(()), C(full), C(())])
    scale = abs(f_model) or 1.0

    # completeness: |F(C \ K) - F(M \ K)|
    def incompleteness(Ks):
        vals = ev.evaluate([C(full - K) for K in Ks] + [M(K) for K in Ks])
        return [abs(a - b) for a, b in zip(vals[:len(Ks)], vals[len(Ks):])]

    candidates = [frozenset([i]) for i in range(n)]
    candidates += [K for K in (frozenset(i for i in range(n) if rng.random() < 0.5) for _ in range(n_random)) if K]
    scores = incompleteness(candidates)
    K, best_k, best = frozenset(), None, -1.0
    for s, cand in zip(scores, candidates):
        if s > best:
            best, best_k = s, cand
    greedy = []
    for _ in range(min(greedy_steps, n)):
        options = [K | {i} for i in range(n) if i not in K]
        vals = incompleteness(options)
        j = max(range(len(options)), key=vals.__getitem__)
        K = options[j]
        greedy.append({"K": [str(circuit[i]) for i in sorted(K)], "incompleteness": vals[j]})
        if vals[j] > best:
            best, best_k = vals[j], K
    single = dict(zip([str(c) for c in circuit], scores[:n]))

    # minimality: for each v, max over K ⊆ C \ {v} of |F(C \ (K ∪ {v})) - F(C \ K)|; every v's
    # candidates (empty, random, a greedy walk that makes v matter most) go into shared batches
    def effect(pairs):  # [(v, K)] -> |F(C \ (K ∪ {v})) - F(C \ K)|
        vals = ev.evaluate([C(full - K - {v}) for v, K in pairs] + [C(full - K) for v, K in pairs])
        return [abs(a - b) for a, b in zip(vals[:len(pairs)], vals[len(pairs):])]

    others = {v: [i for i in range(n) if i != v] for v in range(n)}
    Ks = {v: [frozenset()] + [frozenset(i for i in others[v] if rng.random() < 0.5) for _ in range(n_random // 2)]
          for v in range(n)}
    walk = {v: frozenset() for v in range(n)}
    # the walks cost ~n² subsets per step: beyond WALK_MAX nodes only ∅ and random subsets are tried
    walk_steps = min(max(1, greedy_steps - 1), n - 1) if n <= WALK_MAX and greedy_steps else 0
    for _ in range(walk_steps):
        pairs = [(v, walk[v] | {i}) for v in range(n) for i in others[v] if i not in walk[v]]
        gains = effect(pairs)
        for v in range(n):
            mine = [(g, K) for (w, K), g in zip(pairs, gains) if w == v]
            if mine:
                walk[v] = max(mine, key=lambda x: x[0])[1]
                Ks[v].append(walk[v])
    pairs = [(v, K) for v in range(n) for K in dict.fromkeys(Ks[v])]
    gains = effect(pairs)
    minimality = []
    for v in range(n):
        g, K = max(((g, K) for (w, K), g in zip(pairs, gains) if w == v), key=lambda x: x[0])
        minimality.append({"node": str(circuit[v]), "score": g, "relative": g / (abs(f_circuit) or 1.0),
                           "K": [str(circuit[i]) for i in sorted(K)]})

    return {
        "metric": "mean logit difference (target − distractor, or − mean logit) at the last position",
        "faithfulness": {"model": f_model, "circuit": f_circuit, "empty": f_empty, "gap": abs(f_model - f_circuit),
                         "fraction": f_circuit / f_model if f_model else None,
                         "normalized": (f_circuit - f_empty) / (f_model - f_empty) if f_model != f_empty else None},
        "completeness": {"worst_incompleteness": best, "relative": best / scale,
                         "worst_K": [str(circuit[i]) for i in sorted(best_k)] if best_k else [],
                         "single_nodes": single, "greedy": greedy, "n_subsets_tried": len(candidates) + sum(
                             n - i for i in range(min(greedy_steps, n)))},
        "minimality": minimality,
        "notes": [f"minimality: K from ∅, {n_random // 2} random subsets"
                  + (f" and a {walk_steps}-step greedy walk per node" if walk_steps else
                     f" (no greedy walk: {n} nodes is more than {WALK_MAX})" if n > WALK_MAX else "")],
    }


def ablate_over_set(m: DebugModel, ps: PromptSet, nodes: Sequence[str], ablation: str = "mean") -> dict:
    """Ablate `nodes` (at their slots, if given) on every prompt of the set, batched: the
    metric per prompt before and after. 'patch' sets them to the row's counterfactual values."""
    circuit = parse_circuit(m, nodes, ps.slot_names)
    with m.lock:
        ev = Evaluator(m, ps, circuit, ablation)
        before, after = ev.evaluate([("model", frozenset()), ("model", frozenset(range(len(circuit))))])
        rb, ra = ev.rows_memo[("model", frozenset())], ev.rows_memo[("model", frozenset(range(len(circuit))))]
    return {"nodes": [str(c) for c in circuit], "ablation": ablation, "reference": ev.reference,
            "before_mean": before, "after_mean": after, "change_mean": after - before,
            "change_std": float((ra - rb).std()) if len(rb) > 1 else 0.0,
            "before": rb.tolist(), "after": ra.tolist()}
