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

import json
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch

from . import attribution as A
from .errors import NotFound, UserError
from .ground_truth import ground_truth
from .interventions import Intervention, check, needed_sources
from .autoencoders.splice import SpliceChoice
from .linear import residual_direction, write_vector
from .model import DebugModel
from .nodes import ATTN, AUTOENCODER_KINDS, EMB, HEAD, LATENT_KINDS, MLP, NEURON, POS, RESID, SAE, TRANSCODER, \
    NodeId, activation_hook, ln_scale_hook, parse_node, pattern_hook, validate
from .targets import AttentionScore, HeadOutput, LatentPre, LogitDiff, NeuronPre, Readout, Target, check_head, \
    check_position


class LRU:
    def __init__(self, size: int):
        self.size, self.data, self.lock = size, OrderedDict(), threading.Lock()

    def get(self, key):
        with self.lock:
            if key in self.data:
                self.data.move_to_end(key)
                return self.data[key]
        return None

    def put(self, key, value):
        with self.lock:
            self.data[key] = value
            self.data.move_to_end(key)
            while len(self.data) > self.size:
                self.data.popitem(last=False)
        return value


@dataclass
class Limits:
    max_top_k: int = 5000
    max_verify: int = 64
    max_interventions: int = 64
    max_reference_prompts: int = 256


def _finite(x) -> Optional[float]:
    x = float(x)
    return x if math.isfinite(x) else None


def _require_finite(logits: torch.Tensor) -> None:
    if not bool(torch.isfinite(logits).all()):
        raise UserError("the interventions drove the model's outputs to NaN or infinity; use smaller values")


def _key(*parts) -> str:
    return json.dumps(parts, sort_keys=True, default=str)


class Debugger:
    def __init__(self, models: Sequence[DebugModel] = (), *, cache_size: int = 64, limits: Limits | None = None):
        self.models: dict[str, DebugModel] = {}
        self.limits = limits or Limits()
        self._clean = LRU(max(4, cache_size // 4))
        self._means = LRU(16)
        self._results = LRU(cache_size)
        self.explanations: dict = {}  # model name -> explanations.store.Store
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
    def clean_pass(self, m: DebugModel, ids: Sequence[int]) -> dict:
        """No-grad activations at every intervention point, the patterns and the logits."""
        key = (m.name, tuple(ids))
        hit = self._clean.get(key)
        if hit is not None:
            return hit
        L = m.shape.n_layers
        names = ["hook_embed", "hook_pos_embed"] + [activation_hook(NodeId(RESID, l), L) for l in range(L + 1)]
        for l in range(L):
            names += [activation_hook(NodeId(k, l), L) for k in (HEAD, NEURON, ATTN, MLP)] + [pattern_hook(l)]
        names = [n for n in names if n in m.hook_points]
        store: dict = {}
        from .interventions import build_hooks

        aes = m.autoencoders
        every = SpliceChoice(tuple(sorted(aes.transcoders)), tuple(sorted(aes.saes)))
        hooks = build_hooks([], L, autoencoders=aes, splice=every, store=store)
        logits = m.run(m.tokens_tensor(ids), hooks + A.capture_hooks(names, store, grad=False))
        store["logits"] = logits
        return self._clean.put(key, store)

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
            acts = self.clean_pass(m, ids)
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
    def _choice(m: DebugModel, ivs, mlp_basis: str, attn_basis: str) -> SpliceChoice:
        """Autoencoders spliced in: those the basis asks for, and those interventions name."""
        if mlp_basis not in ("neurons", "transcoders") or attn_basis not in ("heads", "saes"):
            raise UserError("mlp_basis must be 'neurons' or 'transcoders'; attn_basis 'heads' or 'saes'")
        aes = m.autoencoders
        tc = set(aes.transcoders) if mlp_basis == "transcoders" else set()
        sae = set(aes.saes) if attn_basis == "saes" else set()
        if mlp_basis == "transcoders" and not aes.transcoders:
            raise UserError(f"model {m.name!r} has no transcoders loaded")
        if attn_basis == "saes" and not aes.saes:
            raise UserError(f"model {m.name!r} has no SAEs loaded")
        for iv in ivs:
            if iv.node.kind in AUTOENCODER_KINDS:
                (tc if iv.node.kind.startswith(TRANSCODER) else sae).add(iv.node.layer)
        return SpliceChoice(tuple(sorted(tc)), tuple(sorted(sae)))

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
        return self._explain(m, prompt, ids, build, ("trace", _key(target)), **options)

    def _trace_target(self, m: DebugModel, ids, spec: dict) -> Callable[[], Target]:
        kind = spec.get("kind")
        seq = len(ids)
        if kind == "neuron":
            node = validate(parse_node(spec.get("node", "")), m.shape, seq)
            if node.kind != NEURON:
                raise UserError(f"trace target 'neuron' needs a neuron node (L{{l}}.N{{i}}), got {node}")
            pos = check_position(spec.get("position", node.position), seq)
            return lambda: NeuronPre(m, node.component, pos)
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
            ro = Readout(node.layer, "mid", f"blocks.{node.layer}.ln2", [pos], m.W.W_in[node.layer][:, node.index][None], 0.0)
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
                 attn_basis: str = "heads") -> dict:
        if top_k is not None and not 1 <= top_k <= self.limits.max_top_k:
            raise UserError(f"top_k must be between 1 and {self.limits.max_top_k}")
        if not 0 <= verify_top <= self.limits.max_verify:
            raise UserError(f"verify_top must be between 0 and {self.limits.max_verify}")
        if granularity not in ("component", "position"):
            raise UserError("granularity must be 'component' or 'position'")
        ivs = self._interventions(m, ids, interventions, counterfactual_prompt, reference_prompts)
        choice = self._choice(m, ivs, mlp_basis, attn_basis)
        key = _key(m.name, ids, tkey, [str(i) + str(i.vector) for i in ivs], counterfactual_prompt,
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
            exact = A.exact_ablation(m, ids, target_obj, ivs, src, check_nodes, core["value"], choice=choice)
            for row, e in zip(nodes, exact):
                row["exact_effect"] = e
        out = {
            "model": m.name, "prompt": prompt, "tokens": m.codec.token_strs(ids), "token_ids": list(ids),
            "target": core["target"].describe(), "position": core["target"].position,
            "logit_diff": core["value"], "value": core["value"],
            "top_predictions": self._top(m, core["logits"], core["target"].position),
            "sum_check": core["sum_check"], "bias_terms": core["bias"],
            "interventions": [str(i) for i in ivs], "granularity": granularity, "nodes": nodes,
            "mlp_basis": mlp_basis, "attn_basis": attn_basis,
            "n_nodes_total": int(core["table"].stacked(2).numel()),
        }
        if ivs:
            base = self._core(m, ids, build, tkey, [], None, None, granularity, choice)
            out["baseline_logit_diff"] = base["value"]
            out["baseline_top_predictions"] = self._top(m, base["logits"], base["target"].position)
            for name, j in (("activation", 2), ("direct_effect", 3), ("total_effect", 4)):
                arr = base["table"].stacked(j)
                for r, i in zip(nodes, rows):
                    r["baseline_" + name] = _finite(arr[i])
        out["elapsed_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        return self._results.put(key, out)

    def _core(self, m, ids, build, tkey, ivs, cf, refs, granularity, choice: SpliceChoice) -> dict:
        """Forward + backward + tables (cached; the baseline of an intervened request reuses it)."""
        key = _key("core", m.name, ids, tkey, [str(i) + str(i.vector) for i in ivs], cf, refs, granularity, choice)
        hit = self._results.get(key)
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
        return self._results.put(key, core)

    def _rows(self, core, rows: list[int], gt=None) -> list[dict]:
        t = core["table"]
        act, direct, total = t.stacked(2), t.stacked(3), t.stacked(4)
        out = []
        for i in rows:
            n = t.node_at(i)
            row = {"id": str(n), "kind": n.kind, "layer": n.layer, "index": n.index, "position": n.position,
                   "activation": _finite(act[i]), "direct_effect": _finite(direct[i]),
                   "total_effect": _finite(total[i])}
            if n.kind == HEAD and n.position is None and n.layer in core["head_sources"]:
                row["direct_by_source"] = [_finite(x) for x in core["head_sources"][n.layer][n.index]]
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
        key = _key("intervene", m.name, ids, pos, target, distractor, [str(i) + str(i.vector) for i in ivs],
                   counterfactual_prompt, reference_prompts, top)
        hit = self._results.get(key)
        if hit is not None:
            return hit
        from .interventions import build_hooks

        src = self._sources(m, ids, ivs, counterfactual_prompt, reference_prompts)
        base = self.clean_pass(m, ids)["logits"]
        choice = self._choice(m, ivs, "neurons", "heads")
        new = m.run(m.tokens_tensor(ids), build_hooks(ivs, m.shape.n_layers, src, autoencoders=m.autoencoders,
                                                      splice=choice))
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

    # ------------------------------------------------------------------ transcoder tracing
    def graph(self, model: str, prompt: str, target: str, distractor: Optional[str] = None,
              position: Optional[int] = None, node_threshold: float = 0.8, edge_threshold: float = 0.98,
              max_latents: int = 500) -> dict:
        """An attribution graph through the transcoders for "why A and not B" (see autoencoders/attribution_graph.py)."""
        from .autoencoders.attribution_graph import build

        m = self.model(model)
        ids = m.tokenize(prompt)
        pos = check_position(position, len(ids))
        t = m.codec.output_token(target, "target")
        d = None if distractor in (None, "") else m.codec.output_token(distractor, "distractor")
        if not (0 < node_threshold <= 1 and 0 < edge_threshold <= 1):
            raise UserError("node_threshold and edge_threshold must be in (0, 1]")
        key = _key("graph", m.name, ids, pos, t, d, node_threshold, edge_threshold, max_latents)
        hit = self._results.get(key)
        if hit is not None:
            return hit
        with m.lock:  # the frozen model's backward passes are ours alone, but keep one graph per model at a time
            out = build(m, ids, t, d, pos, node_threshold=node_threshold, edge_threshold=edge_threshold,
                        max_latents=max_latents)
        return self._results.put(key, {"model": m.name, **out})

    def latent_inputs(self, model: str, prompt: str, node: str, k: int = 20) -> dict:
        """Input-dependent connections into a transcoder latent at a position; they sum to its pre-activation."""
        from .autoencoders.attribution_graph import contributions

        m = self.model(model)
        ids = m.tokenize(prompt)
        n = validate(parse_node(node), m.shape, len(ids), latents=m.autoencoders.sizes())
        if n.kind != TRANSCODER:
            raise UserError(f"node {n}: input connections are computed for transcoder latents (L{{l}}.T{{i}})")
        pos = check_position(n.position, len(ids))
        with m.lock:
            return {"model": m.name, **contributions(m, ids, n.layer, n.index, pos, k)}

    def latent_weights(self, model: str, node: str, k: int = 10) -> dict:
        """Input-invariant connections of a transcoder latent (weights only)."""
        from .autoencoders.connections import weights_only

        m = self.model(model)
        n = validate(parse_node(node), m.shape, latents=m.autoencoders.sizes())
        if n.kind != TRANSCODER:
            raise UserError(f"node {n}: weight-based connections are computed for transcoder latents (L{{l}}.T{{i}})")
        return {"model": m.name, **weights_only(m, n.layer, n.index, k)}

    # ------------------------------------------------------------------ explanations
    def attach_explanations(self, model: str, path) -> None:
        from .explanations.store import Store

        self.explanations[model] = Store(path, self.model(model).codec)

    def _store(self, model: str):
        self.model(model)
        if model not in self.explanations:
            raise NotFound(f"model {model!r} has no explanations database (build one with "
                           "`python -m circuit_debugger.explanations.build`)")
        return self.explanations[model]

    def node_explanation(self, model: str, node: str, offset: int = 0, limit: int = 10) -> dict:
        """A node's mined statistics, examples (paginated), head pairs and explanations."""
        m = self.model(model)
        n = validate(parse_node(node), m.shape, latents=m.autoencoders.sizes())
        if n.position is not None or n.kind not in (HEAD, NEURON) + LATENT_KINDS:
            raise UserError(f"node {n}: explanations exist for heads, neurons and latents (no position)")
        if not (0 <= offset <= 10_000 and 0 <= limit <= 100):
            raise UserError("offset must be 0..10000 and limit 0..100")
        out = self._store(model).node(str(n), offset, limit)
        if out is None:
            raise NotFound(f"node {n} is not in the explanations database of {model!r}")
        return {"model": model, **out}

    def explain(self, model: str, node: str, explainer: str = "offline") -> dict:
        """Explain a node now (offline from its mined examples, or with the configured LLM) and store it."""
        from .explanations import explain as E

        m = self.model(model)
        store = self._store(model)
        info = self.node_explanation(model, node, limit=0)
        examples = store.top_examples(info["id"])
        if explainer == "offline":
            if model not in self._held:
                from .explanations.activations import node_index
                from .explanations.build import corpus

                rows = corpus(m, 4000, seed=778)
                with m.lock:
                    self._held[model] = (E.held_out(m, rows, rows != m.codec.bos_id), node_index(m))
            held, index = self._held[model]
            col = index.ids.index(info["id"])
            result = E.offline(info, examples, m.codec, {"tokens": held["tokens"], "prev": held["prev"],
                                                          "acts": held["acts"][:, col]})
        elif explainer == "llm":
            windows = [(t, a) for t, a, _ in store.top_examples(info["id"], "random")]
            result = E.llm(info, examples, m.codec, windows)
        else:
            raise UserError("explainer must be 'offline' or 'llm'")
        store.put_explanation(info["id"], result)
        return {"model": model, "node": info["id"], **result}

    # ------------------------------------------------------------------ inspect
    def outputs(self, model: str, prompt: str) -> dict:
        """What the model outputs at every position: the top token (numerical testbeds: the value)."""
        m = self.model(model)
        ids = m.tokenize(prompt)
        logits = self.clean_pass(m, ids)["logits"][0]
        if m.d_vocab_out == 1:
            outs = [{"token": m.codec.output_str(0), "value": float(v)} for v in logits[:, 0]]
        else:
            probs = logits.softmax(-1)
            top = probs.argmax(-1)
            outs = [{"token": m.codec.output_str(int(t)), "value": float(probs[i, t])} for i, t in enumerate(top)]
        return {"model": m.name, "tokens": m.codec.token_strs(ids), "outputs": outs,
                "numerical": m.d_vocab_out == 1}

    def ground_truth(self, model: str) -> dict:
        """A testbed's RASP ops, the nodes implementing each, and a label per node."""
        m = self.model(model)
        gt = ground_truth(m)
        if gt is None:
            raise NotFound(f"model {model!r} has no ground truth (only tracr testbeds do)")
        return {**gt.data, "node_labels": {n: gt.label(n) for n in sorted(gt.labels)}}

    def tokenize(self, model: str, text: str) -> dict:
        m = self.model(model)
        ids = m.tokenize(text)
        return {"model": m.name, "token_ids": ids, "tokens": m.codec.token_strs(ids)}

    def attention(self, model: str, prompt: str, layer: int, head: Optional[int] = None) -> dict:
        m = self.model(model)
        ids = m.tokenize(prompt)
        if not 0 <= layer < m.shape.n_layers:
            raise UserError(f"layer {layer} out of range (model has layers 0..{m.shape.n_layers - 1})")
        if head is not None and not 0 <= head < m.shape.n_heads:
            raise UserError(f"head {head} out of range (layer has heads 0..{m.shape.n_heads - 1})")
        pat = self.clean_pass(m, ids)[pattern_hook(layer)][0]
        heads = range(m.shape.n_heads) if head is None else [head]
        return {"model": m.name, "tokens": m.codec.token_strs(ids), "layer": layer,
                "heads": {f"L{layer}.H{h}": pat[h].tolist() for h in heads}}

    def logit_lens(self, model: str, node: str, prompt: Optional[str] = None, position: Optional[int] = None,
                   k: int = 10) -> dict:
        """Tokens a node's write promotes and suppresses through the unembedding (final LN gain
        applied, its scale left out: it does not change the ranking)."""
        m = self.model(model)
        if not 1 <= k <= 200:
            raise UserError("k must be between 1 and 200")
        n = parse_node(node)
        if n.kind == RESID:
            raise UserError("logit lens of L{l}.RESID is not a node write; use a head, neuron, sublayer or embedding")
        if n.kind == NEURON and prompt is None:
            validate(n, m.shape)
            vec, where = m.W.W_out[n.layer, n.index], "weights (W_out row)"
        else:
            if prompt is None:
                raise UserError(f"logit lens of {n} needs a prompt (its write depends on the input)")
            ids = m.tokenize(prompt)
            validate(n, m.shape, len(ids))
            pos = check_position(position if n.position is None else n.position, len(ids))
            vec = write_vector(m, n.component, self.clean_pass(m, ids), pos)
            where = f"write at position {pos}"
        if "ln_final" in m.W.ln:
            vec = vec - vec.mean() if m.norm == "LN" else vec
            vec = vec * m.W.ln["ln_final"][0]
        logits = vec @ m.W.W_U
        top, bot = logits.topk(k), (-logits).topk(k)
        fmt = lambda vals, idx, sign: [{"token": m.codec.output_str(int(i)), "id": int(i), "value": sign * float(v)}
                                       for v, i in zip(vals, idx)]
        return {"model": m.name, "node": str(n), "source": where, "promoted": fmt(top.values, top.indices, 1),
                "suppressed": fmt(bot.values, bot.indices, -1)}
