"""Three numbers per head (and, on request, per MLP neuron) for one question: the act×grad
estimate, the exact ablation effect, and integrated gradients; so a table can show where the
cheap estimate is wrong.

Definitions (all summed over token positions; `value` is the target under the request's own
interventions; `a` a unit's activation there; `a'` its ablated activation: 0 for zero-ablation,
its mean over the reference corpus for mean-ablation):

    estimate = Σ_pos (a − a') · ∂value/∂a                      (attribution patching; for zero
                                                                 ablation: the table's act×grad)
    exact    = value − value(the unit set to a' at every position)
    ig       = Σ_pos (a − a') · (1/N) Σ_{k=1..N} ∂value/∂a |_{path(α_k)},   α_k = (k − ½)/N
               path(α): the unit's whole *group* (every head of its layer, or every neuron of
               its MLP) moved together from a' to a, the rest of the model running normally
               downstream (EAP-IG with the interpolation done at that layer, midpoint rule).

Completeness: the ig of a group's units sums to value − value(whole group ablated), up to
the midpoint rule's error (it is exact when the value is quadratic or less along the path).
Where the value is linear in a unit (no nonlinearity between it and the target) ig = exact.

Cost: one forward + backward (estimate), ⌈units / chunk⌉ batched forwards (exact, one batch
copy per unit), one batched forward + backward of N copies per group (ig).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from . import attribution as A
from .autoencoders.splice import SpliceChoice
from .execution import RunRequest, execute
from .interventions import Intervention
from .model import DebugModel
from .nodes import HEAD, NEURON, NodeId, activation_hook
from .targets import Target


@dataclass
class Group:
    kind: str  # HEAD or NEURON
    layer: int
    hook: str
    units: int


def unit_groups(m: DebugModel, neurons: bool) -> list[Group]:
    L = m.shape.n_layers
    out = [Group(HEAD, l, activation_hook(NodeId(HEAD, l), L), m.shape.n_heads) for l in range(L)]
    if neurons:
        out += [Group(NEURON, l, activation_hook(NodeId(NEURON, l), L), m.shape.d_mlp) for l in range(L)]
    return out


def _reduce(g: Group, x: torch.Tensor) -> torch.Tensor:
    """[seq, units(, d_head)] -> [units]: sum over positions (and a head's dimensions)."""
    return x.sum(0) if g.kind == NEURON else x.sum((0, 2))


def compute(m: DebugModel, ids: Sequence[int], target: Target, ivs: Sequence[Intervention], src: dict,
            choice: SpliceChoice, groups: list[Group], ablation: str, means: Optional[dict],
            ig_steps: int, chunk: int = 64) -> dict:
    """Per unit of `groups`: estimate, exact, ig (ig None when ig_steps == 0); per group: the
    sum of its ig and the exact effect of ablating the whole group."""
    fw = A.run_captured(m, ids, target, ivs, src, grad=True, choice=choice)
    value = float(fw.value.detach())
    grads = torch.autograd.grad(fw.value, [fw.acts[g.hook] for g in groups], allow_unused=True)
    clean = {g.hook: fw.acts[g.hook].detach() for g in groups}  # [1, seq, units(, d_head)]

    def base(g: Group) -> torch.Tensor:
        if ablation == "zero":
            return torch.zeros_like(clean[g.hook])
        return means[g.hook].to(clean[g.hook].dtype).expand_as(clean[g.hook])

    estimate = {}
    for g, gr in zip(groups, grads):
        delta = (clean[g.hook] - base(g))[0].float()
        estimate[g.hook] = _reduce(g, delta * (torch.zeros_like(delta) if gr is None else gr[0].float()))

    # Causality: a group the value has no autograd path from (a trace target in an earlier layer)
    # cannot change it, whatever is done at its hook (captured after the request's interventions):
    # its effects are exactly 0 and are not computed (a batched forward would give rounding noise).
    live = [g for g, gr in zip(groups, grads) if gr is not None]
    # exact: one batch copy per unit, the unit set to its ablated value on top of `ivs`
    units = [NodeId(g.kind, g.layer, i) for g in live for i in range(g.units)]
    op_src = dict(src)
    if ablation == "mean":
        op_src.update({"mean:" + g.hook: means[g.hook] for g in groups})
    exact: list[float] = []
    for start in range(0, len(units), chunk):
        part = units[start:start + chunk]
        exact += _ablated_values(m, ids, target, ivs, op_src, choice,
                                 [[Intervention(n, ablation)] for n in part], value)
    whole = _ablated_values(m, ids, target, ivs, op_src, choice,
                            [[Intervention(NodeId(g.kind, g.layer, i), ablation) for i in range(g.units)]
                             for g in live], value) if live else []
    exact_of = dict(zip((str(n) for n in units), exact))
    whole_of = dict(zip((g.hook for g in live), whole))

    ig = {g.hook: (_ig(m, ids, target, ivs, src, choice, g, clean[g.hook], base(g), ig_steps) if g in live
                   else torch.zeros(g.units)) for g in groups} if ig_steps else {}
    rows = []
    for g in groups:
        for i in range(g.units):
            node = str(NodeId(g.kind, g.layer, i))
            rows.append({"id": node, "kind": g.kind, "layer": g.layer, "index": i,
                         "estimate": float(estimate[g.hook][i]), "exact": exact_of.get(node, 0.0),
                         "ig": float(ig[g.hook][i]) if ig else None})
    checks = [{"group": f"L{g.layer} {'heads' if g.kind == HEAD else 'neurons'}",
               "sum_ig": float(ig[g.hook].sum()) if ig else None,
               "sum_estimate": float(estimate[g.hook].sum()), "exact_all_ablated": whole_of.get(g.hook, 0.0)}
              for g in groups]
    return {"value": value, "rows": rows, "groups": checks}


def _ablated_values(m, ids, target, ivs, src, choice, per_copy: list[list[Intervention]], value: float) -> list[float]:
    """value − the target with copy b's interventions added (one batched forward)."""
    extra = [iv for ivl in per_copy for iv in ivl]
    batch_of = [None] * len(ivs) + [b for b, ivl in enumerate(per_copy) for _ in ivl]
    cap = execute(m, ids, RunRequest(list(ivs) + extra, src, sorted(target.hooks), splice=choice, batch_of=batch_of,
                                     batch=len(per_copy)))
    store, logits = cap.acts, cap.logits
    return [value - float(v) for v in target.value(store, logits)]


def _ig(m, ids, target, ivs, src, choice, g: Group, clean: torch.Tensor, base: torch.Tensor, steps: int) -> torch.Tensor:
    alphas = (torch.arange(steps, dtype=torch.float32) + 0.5) / steps
    alphas = alphas.to(clean.device).view(-1, *([1] * (clean.dim() - 1)))
    delta = clean - base
    path = (base + alphas.to(clean.dtype) * delta).detach().requires_grad_(True)  # [N, seq, units(, d_head)]

    # the path replaces the unit's group outright; the request's other interventions stay (those at
    # this hook are already in `clean`, the value at α = 1)
    L = m.shape.n_layers
    rest = [iv for iv in ivs if iv.node.kind not in (HEAD, NEURON) or activation_hook(iv.node, L) != g.hook]
    cap = execute(m, ids, RunRequest(rest, src, sorted(target.hooks), grad=True, splice=choice, batch=steps,
                                     edits={g.hook: lambda x: path.to(x.dtype)}))
    store, logits = cap.acts, cap.logits
    v = target.value(store, logits).sum()
    # a target upstream of this group (a trace into an earlier layer) does not depend on it: IG 0
    grad = torch.autograd.grad(v, path, allow_unused=True)[0] if v.requires_grad else None
    if grad is None:
        grad = torch.zeros_like(path)
    return _reduce(g, delta[0].float() * grad.float().mean(0))


def disagreement(estimate: Optional[float], exact: float, floor: float) -> Optional[str]:
    """'sign' when the two have opposite signs, 'magnitude' when they differ by more than half
    of |exact|; differences below `floor` (numerical noise near zero) are never flagged."""
    if estimate is None or abs(estimate - exact) <= floor:
        return None
    if estimate * exact < 0:
        return "sign"
    if abs(estimate - exact) > 0.5 * abs(exact):
        return "magnitude"
    return None


def spearman(x: Sequence[float], y: Sequence[float]) -> Optional[float]:
    if len(x) < 2:
        return None
    rx = torch.tensor(x, dtype=torch.float64).argsort().argsort().double()
    ry = torch.tensor(y, dtype=torch.float64).argsort().argsort().double()
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = float(rx.norm() * ry.norm())
    return float(rx @ ry) / den if den else None
