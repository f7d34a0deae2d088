"""The debugger as a library: ask why, intervene, trace upstream, inspect.

    dbg = Debugger([load_model("default")])
    r = dbg.attribute("default", "When Mary and John went to the store, John gave a drink to",
                      target=" Mary", distractor=" John")
    r["logit_diff"], r["nodes"][:5]

Every method validates its input and raises `UserError` (with an HTTP status) for bad input.
Results are plain JSON-able dicts. Clean forward passes, mean activations and whole results
are cached, so repeating a request or toggling interventions recomputes only what changed.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from . import attribution as A
from .cache import LRU, request_key
from .errors import NotFound, UserError
from .engine_datasets import DatasetMixin
from .engine_explaining import ExplainingMixin
from .engine_inspection import InspectionMixin
from .engine_tracing import TracingMixin
from .engine_generation import GenerationMixin
from .engine_ui import UIMixin
from .ground_truth import ground_truth
from .execution import RunRequest, execute
from .interventions import Intervention, check, needed_sources
from .autoencoders.splice import SpliceChoice
from .linear import mlp_read, post_norm_hooks, residual_direction
from .model import DebugModel
from .nodes import FAMILY_OF, RESID_SAE, SAE, EMBED_HOOK, POS_EMBED_HOOK, ATTN, AUTOENCODER_KINDS, HEAD, LATENT_KINDS, MLP, NEURON, RESID, TRANSCODER, TRANSCODER_ERR, \
    NodeId, activation_hook, ln_scale_hook, parse_node, pattern_hook, validate
from .targets import AttentionScore, HeadOutput, LatentPre, LogitDiff, NeuronPre, Readout, Target, check_head, \
    check_position


@dataclass
class Limits:
    max_top_k: int = 5000
    max_verify: int = 64
    max_interventions: int = 64
    max_reference_prompts: int = 256
    max_graph_latents: int = 5000


def _finite(x) -> Optional[float]:
    x = float(x)
    return x if math.isfinite(x) else None


def _picked(table: "A.Table", which: int, rows: list[int]) -> list[float]:
    """Column `which` of the table at `rows`, as Python floats (exactly float(tensor[i]))."""
    col = table.stacked(which)
    return col[torch.tensor(rows, dtype=torch.long, device=col.device)].tolist()


def _require_finite(logits: torch.Tensor) -> None:
    if not bool(torch.isfinite(logits).all()):
        raise UserError("the interventions drove the model's outputs to NaN or infinity; use smaller values")


class Debugger(InspectionMixin, TracingMixin, ExplainingMixin, DatasetMixin, UIMixin, GenerationMixin):
    def __init__(self, models: Sequence[DebugModel] = (), *, cache_size: int = 512, limits: Limits | None = None):
        self.models: dict[str, DebugModel] = {}
        self.limits = limits or Limits()
        # clean passes and cores hold activations and full tables (large for big models): fewer of them
        self._clean = LRU(max(4, min(32, cache_size // 4)))
        self._cores = LRU(max(4, min(64, cache_size // 4)))
        self._means = LRU(16)
        self._results = LRU(cache_size)
        self.explanations: dict = {}  # model name -> explanations.store.Store
        # where a newer store may have appeared (a finished mining job): model -> path or None
        self.find_explanations: Optional[Callable[[str], Optional[str]]] = None
        self._held: dict = {}  # model name -> held-out activations for on-demand explaining
        for m in models:
            self.add_model(m)

    def add_model(self, model: DebugModel) -> None:
        self.models[model.name] = model

    def model(self, name: str) -> DebugModel:
        if name not in self.models:
            raise NotFound(f"unknown model {name!r}; loaded models: {', '.join(sorted(self.models)) or 'none'}")
        return self.models[name]

    # ------------------------------------------------------------------ sources
    def clean_pass(self, m: DebugModel, ids: Sequence[int], keep: bool = True) -> dict:
        """No-grad activations at every intervention point, the patterns and the logits.
        `keep=False`: not added to the cache (a mean over many reference prompts would
        otherwise push every prompt people are looking at out of it)."""
        key = (m.name, tuple(ids))
        hit = self._clean.get(key)
        if hit is not None:
            return hit
        L = m.shape.n_layers
        names = [EMBED_HOOK, POS_EMBED_HOOK] + [activation_hook(NodeId(RESID, l), L) for l in range(L + 1)]
        for l in range(L):
            names += [activation_hook(NodeId(k, l), L) for k in (HEAD, NEURON, ATTN, MLP)] + [pattern_hook(l)]
        names += post_norm_hooks(m)  # what unit writes pass through (logit lens of a head / neuron)
        aes = m.autoencoders
        cap = execute(m, ids, RunRequest(capture=names, splice=aes.every()))
        store = cap.acts
        store["logits"] = cap.logits
        return self._clean.put(key, store) if keep else store

    def mean_activations(self, m: DebugModel, prompts: Sequence[str]) -> dict:
        """Per hook: the mean activation over all tokens of `prompts` (BOS excluded)."""
        key = (m.name, tuple(prompts))
        hit = self._means.get(key)
        if hit is not None:
            return hit
        sums: dict = {}
        count = 0
        for p in prompts:
            ids = m.tokenize(p)
            skip = 1 if m.codec.bos_id is not None and ids[0] == m.codec.bos_id and len(ids) > 1 else 0
            acts = self.clean_pass(m, ids, keep=False)
            for k, v in acts.items():
                if k == "logits" or "pattern" in k:
                    continue
                s = v[0, skip:].sum(0)
                sums[k] = s if k not in sums else sums[k] + s
            count += len(ids) - skip
        return self._means.put(key, {k: v / max(count, 1) for k, v in sums.items()})

    def _sources(self, m, ids, interventions, counterfactual_prompt, reference_prompts) -> dict:
        means, patches = needed_sources(interventions, m.shape.n_layers)
        src: dict = {}
        if patches:
            cf_ids = m.tokenize(counterfactual_prompt)
            if len(cf_ids) != len(ids):
                raise UserError(
                    f"counterfactual_prompt is {len(cf_ids)} tokens but the prompt is {len(ids)}; patching "
                    "needs prompts of the same token length"
                )
            cf = self.clean_pass(m, cf_ids)
            src.update({"patch:" + h: cf[h] for h in patches})
        if means:
            refs = reference_prompts or m.reference_prompts
            mean = self.mean_activations(m, refs)
            src.update({"mean:" + h: mean[h] for h in means})
        return src

    def _interventions(self, m, ids, interventions, counterfactual_prompt, reference_prompts) -> list[Intervention]:
        items = [iv if isinstance(iv, Intervention) else Intervention.make(**iv) for iv in interventions or ()]
        if len(items) > self.limits.max_interventions:
            raise UserError(f"{len(items)} interventions; at most {self.limits.max_interventions} are allowed")
        if reference_prompts is not None and len(reference_prompts) > self.limits.max_reference_prompts:
            raise UserError(f"at most {self.limits.max_reference_prompts} reference_prompts are allowed")
        has_means = bool(reference_prompts) or bool(m.reference_prompts)
        for iv in items:
            check(iv, m.shape, len(ids), has_counterfactual=bool(counterfactual_prompt), has_means=has_means,
                  latents=m.autoencoders.sizes())
        return items

    @staticmethod
    def _choice(m: DebugModel, ivs, mlp_basis: str, attn_basis: str, resid_basis: str = "none") -> SpliceChoice:
        """Autoencoders spliced in: those the basis asks for, and those interventions name."""
        if mlp_basis not in ("neurons", "transcoders") or attn_basis not in ("heads", "saes") \
                or resid_basis not in ("none", "saes"):
            raise UserError("mlp_basis must be 'neurons' or 'transcoders'; attn_basis 'heads' or 'saes'; "
                            "resid_basis 'none' or 'saes'")
        aes = m.autoencoders
        tc = set(aes.mlp_layers()) if mlp_basis == "transcoders" else set()
        sae = set(aes.saes) if attn_basis == "saes" else set()
        res = set(aes.resids) if resid_basis == "saes" else set()
        if tc and aes.clt is not None:  # a CLT's latents write every later layer: all or none
            tc = set(aes.mlp_layers())
        if resid_basis == "saes" and not aes.resids:
            raise UserError(f"model {m.name!r} has no residual-stream SAEs loaded")
        if mlp_basis == "transcoders" and not tc:
            raise UserError(f"model {m.name!r} has no transcoders loaded")
        if attn_basis == "saes" and not aes.saes:
            raise UserError(f"model {m.name!r} has no SAEs loaded")
        for iv in ivs:
            if iv.node.kind in AUTOENCODER_KINDS:
                {TRANSCODER: tc, SAE: sae, RESID_SAE: res}[FAMILY_OF[iv.node.kind]].add(iv.node.layer)
        if tc and aes.clt is not None:
            tc = set(aes.mlp_layers())
        return SpliceChoice(tuple(sorted(tc)), tuple(sorted(sae)), tuple(sorted(res)))

    # ------------------------------------------------------------------ why
    def attribute(self, model: str, prompt: str, target: str, distractor: Optional[str] = None,
                  position: Optional[int] = None, **options) -> dict:
        """Why does the model say `target` (and not `distractor`) at `position`?"""
        m = self.model(model)
        ids = m.tokenize(prompt)
        pos = check_position(position, len(ids))
        t = m.codec.output_token(target, "target")
        d = None if distractor in (None, "") else m.codec.output_token(distractor, "distractor")
        if d == t:
            raise UserError("target and distractor are the same token")
        return self._explain(m, prompt, ids, lambda: LogitDiff(m, pos, t, d),
                             ("logit", pos, t, d), **options)

    def trace(self, model: str, prompt: str, target: dict, **options) -> dict:
        """The same table for an upstream target: a neuron's pre-activation, a head's attention
        score (through query or key), or a head's output along a later neuron's input direction."""
        m = self.model(model)
        ids = m.tokenize(prompt)
        build = self._trace_target(m, ids, dict(target))
        return self._explain(m, prompt, ids, build, ("trace", request_key(target)), **options)

    def _trace_target(self, m: DebugModel, ids, spec: dict) -> Callable[[], Target]:
        kind = spec.get("kind")
        seq = len(ids)
        if kind == "neuron":
            node = validate(parse_node(spec.get("node", "")), m.shape, seq)
            if node.kind != NEURON:
                raise UserError(f"trace target 'neuron' needs a neuron node (L{{l}}.N{{i}}), got {node}")
            pos = check_position(spec.get("position", node.position), seq)
            which = spec.get("input") or "gate"
            NeuronPre(m, node.component, pos, which)  # validates `input` now (a 422, not a cached failure)
            return lambda: NeuronPre(m, node.component, pos, which)
        if kind == "attention":
            node = check_head(m, spec.get("node", ""), seq)
            q = check_position(spec.get("query"), seq, "query")
            k = check_position(spec.get("key"), seq, "key")
            if k > q and m.bridge.cfg.attention_dir != "bidirectional":
                raise UserError(f"key position {k} is after query position {q}; this model's attention is causal")
            through = spec.get("through", "query")
            if through not in ("query", "key"):
                raise UserError("trace 'through' must be 'query' or 'key'")
            return lambda: AttentionScore(m, node.component, q, k, through)
        if kind == "head_output":
            node = check_head(m, spec.get("node", ""), seq)
            pos = check_position(spec.get("position", node.position), seq)
            direction, label, hooks = self._direction(m, node, pos, spec, seq)
            return lambda: HeadOutput(m, node.component, pos, direction, label, hooks)
        if kind == "latent":
            node = validate(parse_node(spec.get("node", "")), m.shape, seq, latents=m.autoencoders.sizes())
            if node.kind not in LATENT_KINDS:
                raise UserError(f"trace target 'latent' needs an SAE or transcoder latent (L{{l}}.S{{i}} / L{{l}}.T{{i}}), got {node}")
            pos = check_position(spec.get("position", node.position), seq)
            return lambda: LatentPre(m, node.component, pos)
        raise UserError("trace target kind must be 'neuron', 'attention', 'head_output' or 'latent'")

    def _direction(self, m, head: NodeId, pos: int, spec: dict, seq: int):
        if spec.get("direction_node"):
            node = validate(parse_node(spec["direction_node"]), m.shape, seq)
            if node.kind != NEURON:
                raise UserError(f"direction_node {node}: only MLP neurons (L{{l}}.N{{i}}) are supported")
            if node.layer < head.layer:
                raise UserError(f"direction_node {node} is in an earlier layer than head {head}; it cannot read its output")
            if node.layer == head.layer and m.arch.block == "parallel":
                raise UserError(f"direction_node {node} is in the same layer as head {head}; in this model's parallel "
                                "blocks the MLP reads the layer's input, not its heads' output")
            stage, ln = mlp_read(m, node.layer)
            ro = Readout(node.layer, stage, ln, [pos], m.W.W_pre[node.layer][:, node.index][None], 0.0)
            hooks = {ln_scale_hook(ro.ln)} if ro.ln in m.W.ln else set()
            return (lambda acts: residual_direction(m, ro, acts)[0]), f"input of {node}", hooks
        vec = spec.get("direction_vector")
        if vec is not None:
            if len(vec) != m.shape.d_model or not all(math.isfinite(float(x)) for x in vec):
                raise UserError(f"direction_vector must have {m.shape.d_model} finite numbers")
            g = torch.tensor(vec, dtype=m.dtype, device=m.device)
            return (lambda acts: g), "given vector", set()
        raise UserError("head_output trace needs direction_node (a later neuron) or direction_vector")

    def _explain(self, m: DebugModel, prompt: str, ids, build: Callable[[], Target], tkey, *,
                 interventions: Sequence = (), counterfactual_prompt: Optional[str] = None,
                 reference_prompts: Optional[Sequence[str]] = None, top_k: Optional[int] = 100,
                 granularity: str = "component", verify_top: int = 0, mlp_basis: str = "neurons",
                 attn_basis: str = "heads", resid_basis: str = "none") -> dict:
        if top_k is not None and not 1 <= top_k <= self.limits.max_top_k:
            raise UserError(f"top_k must be between 1 and {self.limits.max_top_k}")
        if not 0 <= verify_top <= self.limits.max_verify:
            raise UserError(f"verify_top must be between 0 and {self.limits.max_verify}")
        if granularity not in ("component", "position"):
            raise UserError("granularity must be 'component' or 'position'")
        ivs = self._interventions(m, ids, interventions, counterfactual_prompt, reference_prompts)
        choice = self._choice(m, ivs, mlp_basis, attn_basis, resid_basis)
        key = request_key(m.name, ids, tkey, [str(i) + str(i.vector) for i in ivs], counterfactual_prompt,
                   reference_prompts, top_k, granularity, verify_top, choice)
        hit = self._results.get(key)
        if hit is not None:
            return hit
        t0 = time.perf_counter()
        core = self._core(m, ids, build, tkey, ivs, counterfactual_prompt, reference_prompts, granularity, choice)
        rows = A.select_rows(core["table"], top_k)
        nodes = self._rows(core, rows, ground_truth(m))
        if verify_top:
            target_obj, src = core["target"], core["source"]
            check_nodes = [core["table"].node_at(i) for i in rows[:verify_top]]
            exact = self._exact_ablation(m, ids, target_obj, ivs, src, check_nodes, core["value"], choice)
            for row, e in zip(nodes, exact):
                row["exact_effect"] = e
        out = {
            "model": m.name, "prompt": prompt, "tokens": m.codec.token_strs(ids), "token_ids": list(ids),
            "target": core["target"].describe(), "position": core["target"].position,
            "logit_diff": core["value"], "value": core["value"],
            "top_predictions": self._top(m, core["logits"], core["target"].position),
            "sum_check": core["sum_check"], "bias_terms": core["bias"],
            "interventions": [str(i) for i in ivs], "granularity": granularity, "nodes": nodes,
            "mlp_basis": mlp_basis, "attn_basis": attn_basis, "resid_basis": resid_basis,
            "decomposed": core["target"].decomposed,
            "n_nodes_total": int(core["table"].stacked(2).numel()),
        }
        if ivs:
            base = self._core(m, ids, build, tkey, [], None, None, granularity, choice)
            out["baseline_logit_diff"] = base["value"]
            out["baseline_top_predictions"] = self._top(m, base["logits"], base["target"].position)
            for name, j in (("activation", 2), ("direct_effect", 3), ("total_effect", 4)):
                for r, x in zip(nodes, _picked(base["table"], j, rows)):
                    r["baseline_" + name] = _finite(x)
        out["elapsed_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        return self._results.put(key, out)

    def _core(self, m, ids, build, tkey, ivs, cf, refs, granularity, choice: SpliceChoice) -> dict:
        """Forward + backward + tables (cached; the baseline of an intervened request reuses it)."""
        key = request_key("core", m.name, ids, tkey, [str(i) + str(i.vector) for i in ivs], cf, refs, granularity, choice)
        hit = self._cores.get(key)
        if hit is not None:
            return hit
        target = build()
        src = self._sources(m, ids, ivs, cf, refs)
        fw = A.run_captured(m, ids, target, ivs, src, grad=True, choice=choice)
        _require_finite(fw.logits)
        if not math.isfinite(float(fw.value.detach())):
            raise UserError("the target's value is NaN or infinite under these interventions")
        ro = target.readout(fw.acts)
        met = A.metrics(m, fw, A.groups(m, choice), ro)
        value = float(fw.value.detach())
        table = A.build_table(met, target.position, granularity == "position")
        total_sum = A.atomic_sum(met)
        core = {
            "target": target, "source": src, "value": value, "logits": fw.logits.detach(), "table": table,
            "bias": met.bias, "head_sources": met.head_sources,
            "sum_check": {"value": value, "sum_of_direct_effects": total_sum, "residual": value - total_sum},
        }
        return self._cores.put(key, core)

    def _rows(self, core, rows: list[int], gt=None) -> list[dict]:
        t = core["table"]
        # the chosen rows as Python floats in one conversion each (not one tensor read per number)
        act, direct, total = (_picked(t, j, rows) for j in (2, 3, 4))
        out = []
        for k, i in enumerate(rows):
            n = t.node_at(i)
            row = {"id": str(n), "kind": n.kind, "layer": n.layer, "index": n.index, "position": n.position,
                   "activation": _finite(act[k]), "direct_effect": _finite(direct[k]),
                   "total_effect": _finite(total[k])}
            if n.kind == HEAD and n.position is None and n.layer in core["head_sources"]:
                row["direct_by_source"] = [_finite(x) for x in core["head_sources"][n.layer][n.index].tolist()]
            if gt is not None:
                row["label"] = gt.label(row["id"])
            out.append(row)
        return out

    @staticmethod
    def _top(m: DebugModel, logits: torch.Tensor, position: int, k: int = 10) -> list[dict]:
        row = logits[0, position].float()
        probs = row.softmax(-1)
        vals, idx = row.topk(min(k, row.numel()))
        return [{"token": m.codec.output_str(int(i)), "id": int(i), "logit": float(v), "prob": float(probs[i])}
                for v, i in zip(vals, idx)]

    # ------------------------------------------------------------------ intervene
    def _partial_ok(self, m: DebugModel, splice) -> bool:
        """Re-runs may start at the first edited layer: nothing spliced, the model in one piece."""
        return not splice and not getattr(getattr(m.bridge, "original_model", None), "hf_device_map", None)

    def _blocks(self, m: DebugModel, ids):
        """(clean logits, every block's clean output) for `ids`, cached: one plain forward that
        serves as the baseline and lets re-runs start at a later layer."""
        from .partial_run import capture

        key = ("blocks", m.name, tuple(ids))
        hit = self._clean.get(key)
        return hit if hit is not None else self._clean.put(key, capture(m, ids))

    def _exact_ablation(self, m: DebugModel, ids, target: Target, ivs, src, nodes, value: float, choice) -> list:
        """Each node's exact zero-ablation effect, batched; for a logit difference with no other
        intervention each batch starts at its nodes' layer (`partial_run`, equal to full passes)."""
        if ivs or not isinstance(target, LogitDiff) or not self._partial_ok(m, choice):
            return A.exact_ablation(m, ids, target, ivs, src, nodes, value, choice=choice)
        from .partial_run import exact_ablation_from_layers

        return exact_ablation_from_layers(m, ids, target, nodes, value, self._blocks(m, ids)[1],
                                          logit_position=target.position)

    def _rerun(self, m: DebugModel, ids, req: RunRequest, pos: int) -> torch.Tensor:
        """Logits of `ids` under `req`, read at `pos` only. Without autoencoder splices and on a
        model in one piece, blocks before the first edited layer are not recomputed: their
        outputs come from a cached clean pass (`partial_run`; equal to a full re-run, tested)."""
        if not self._partial_ok(m, req.splice):
            return execute(m, ids, req).logits
        from .partial_run import execute_partial

        return execute_partial(m, self._blocks(m, ids)[1], req, logit_position=pos).logits

    def intervene(self, model: str, prompt: str, interventions: Sequence, *, target: Optional[str] = None,
                  distractor: Optional[str] = None, position: Optional[int] = None,
                  counterfactual_prompt: Optional[str] = None, reference_prompts: Optional[Sequence[str]] = None,
                  top: int = 10) -> dict:
        """Re-run with interventions: new and baseline logits side by side (one forward)."""
        m = self.model(model)
        ids = m.tokenize(prompt)
        pos = check_position(position, len(ids))
        if not 1 <= top <= 100:
            raise UserError("top must be between 1 and 100")
        ivs = self._interventions(m, ids, interventions, counterfactual_prompt, reference_prompts)
        key = request_key("intervene", m.name, ids, pos, target, distractor, [str(i) + str(i.vector) for i in ivs],
                   counterfactual_prompt, reference_prompts, top)
        hit = self._results.get(key)
        if hit is not None:
            return hit
        src = self._sources(m, ids, ivs, counterfactual_prompt, reference_prompts)
        choice = self._choice(m, ivs, "neurons", "heads")
        base = self._blocks(m, ids)[0] if self._partial_ok(m, choice) else self.clean_pass(m, ids)["logits"]
        new = self._rerun(m, ids, RunRequest(ivs, src, splice=choice), pos)
        _require_finite(new)
        out = {"model": m.name, "tokens": m.codec.token_strs(ids), "position": pos,
               "interventions": [str(i) for i in ivs],
               "top_predictions": self._top(m, new, pos, top), "baseline_top_predictions": self._top(m, base, pos, top)}
        if target:
            t = m.codec.output_token(target, "target")
            d = None if distractor in (None, "") else m.codec.output_token(distractor, "distractor")
            lt = LogitDiff(m, pos, t, d)
            out["logit_diff"] = float(lt.value({}, new)[0])
            out["baseline_logit_diff"] = float(lt.value({}, base)[0])
            out["change"] = out["logit_diff"] - out["baseline_logit_diff"]
        return self._results.put(key, out)
