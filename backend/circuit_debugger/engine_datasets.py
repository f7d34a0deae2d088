"""Debugger methods over prompt sets: build/parse sets, dataset attribution, ablation over a
set, and circuit evaluation (faithfulness, completeness, minimality)."""

from __future__ import annotations

from .cache import request_key
from .errors import UserError
from .promptsets import PromptSet, builtin, from_template, parse_rows, rows_from_items

MAX_EVAL_PROMPTS = 500
MAX_CIRCUIT_NODES = 64


class DatasetMixin:
    batch_size = 64  # prompts per forward in dataset attribution (bounds memory; `serve --batch-size`)

    def prompt_set(self, model: str, spec: dict) -> PromptSet:
        """`spec` is one of {builtin, n, seed}, {template: {...}}, {text, format} or {rows}."""
        m = self.model(model)
        given = [k for k in ("builtin", "template", "text", "rows") if spec.get(k) is not None]
        if len(given) != 1:
            raise UserError("give exactly one of 'builtin', 'template', 'text' or 'rows' for the prompt set")
        n, seed = int(spec.get("n") or 100), int(spec.get("seed") or 0)
        if spec.get("builtin") is not None:  # made for the default model; any model whose tokens fit works
            return builtin(spec["builtin"], m.tokenize, n, seed)
        if spec.get("template") is not None:
            t = spec["template"]
            return from_template(m.tokenize, t["templates"], t["values"], t["target"], t.get("distractor"),
                                 t.get("counterfactual"), n, seed, t.get("name") or "template")
        if spec.get("text") is not None:
            return parse_rows(spec["text"], spec.get("format") or "jsonl", m.tokenize)
        return rows_from_items(list(spec["rows"]), m.tokenize, spec.get("name") or "rows")

    def dataset_attribute(self, model: str, spec: dict, top_k: int = 50, drill: int = 10) -> dict:
        from .dataset_attribution import summarize

        m = self.model(model)
        if not 1 <= top_k <= self.limits.max_top_k:
            raise UserError(f"top_k must be between 1 and {self.limits.max_top_k}")
        ps = self.prompt_set(model, spec)
        key = request_key("dataset_attribute", m.name, ps.to_dict(), top_k, drill)
        hit = self._results.get(key)
        if hit is not None:
            return hit
        return self._results.put(key, {"model": m.name, "name": ps.name, **summarize(m, ps, top_k, drill, self.batch_size)})

    def dataset_ablate(self, model: str, spec: dict, nodes: list, ablation: str = "mean") -> dict:
        from .circuits import ablate_over_set

        m = self.model(model)
        ps = self._bounded(model, spec)
        return {"model": m.name, "name": ps.name, **ablate_over_set(m, ps, nodes, ablation)}

    def evaluate_circuit(self, model: str, spec: dict, nodes: list, ablation: str = "mean", n_random: int = 10,
                         greedy_steps: int = 3, seed: int = 0) -> dict:
        from .circuits import evaluate_circuit

        m = self.model(model)
        ps = self._bounded(model, spec)
        if not 1 <= len(nodes) <= MAX_CIRCUIT_NODES:
            raise UserError(f"a circuit has 1..{MAX_CIRCUIT_NODES} nodes")
        if not (0 <= n_random <= 100 and 0 <= greedy_steps <= 10):
            raise UserError("n_random must be 0..100 and greedy_steps 0..10")
        key = request_key("circuit", m.name, ps.to_dict(), sorted(nodes), ablation, n_random, greedy_steps, seed)
        hit = self._results.get(key)
        if hit is not None:
            return hit
        out = evaluate_circuit(m, ps, nodes, ablation=ablation, n_random=n_random, greedy_steps=greedy_steps, seed=seed)
        return self._results.put(key, {"model": m.name, "name": ps.name, **out})

    def _bounded(self, model: str, spec: dict) -> PromptSet:
        ps = self.prompt_set(model, spec)
        if len(ps.rows) > MAX_EVAL_PROMPTS:
            raise UserError(f"ablations and circuit evaluation take at most {MAX_EVAL_PROMPTS} prompts")
        return ps
