"""Debugger methods serving and making node explanations."""

from __future__ import annotations

from pathlib import Path

from .errors import NotFound, UserError
from .nodes import HEAD, LATENT_KINDS, NEURON, parse_node, validate


class ExplainingMixin:
    # ------------------------------------------------------------------ explanations
    def attach_explanations(self, model: str, path) -> None:
        from .explanations.store import Store

        self.explanations[model] = Store(path, self.model(model).codec)

    def _store(self, model: str):
        self.model(model)
        found = self.find_explanations(model) if self.find_explanations else None
        if found is not None and (model not in self.explanations or self.explanations[model].path != Path(found)):
            self.attach_explanations(model, found)  # a newer store (a mining job finished here or on a replica)
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

