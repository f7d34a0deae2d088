"""Debugger methods for tracing through transcoders: attribution graphs and latent connections."""

from __future__ import annotations

from typing import Optional

from .cache import request_key
from .errors import UserError
from .nodes import TRANSCODER, parse_node, validate
from .targets import check_position


class TracingMixin:
    # ------------------------------------------------------------------ transcoder tracing
    def graph(self, model: str, prompt: str, target: str, distractor: Optional[str] = None,
              position: Optional[int] = None, node_threshold: float = 0.8, edge_threshold: float = 0.98,
              max_latents: int = 500) -> dict:
        """An attribution graph through the transcoders for "why A and not B" (see autoencoders/attribution_graph.py)."""
        from .autoencoders.attribution_graph import build

        m = self.model(model)
        _graphable(m)
        ids = m.tokenize(prompt)
        pos = check_position(position, len(ids))
        t = m.codec.output_token(target, "target")
        d = None if distractor in (None, "") else m.codec.output_token(distractor, "distractor")
        if not (0 < node_threshold <= 1 and 0 < edge_threshold <= 1):
            raise UserError("node_threshold and edge_threshold must be in (0, 1]")
        if not 1 <= max_latents <= self.limits.max_graph_latents:
            raise UserError(f"max_latents must be between 1 and {self.limits.max_graph_latents}")
        key = request_key("graph", m.name, ids, pos, t, d, node_threshold, edge_threshold, max_latents)
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
        _graphable(m)
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
        _graphable(m)
        n = validate(parse_node(node), m.shape, latents=m.autoencoders.sizes())
        if n.kind != TRANSCODER:
            raise UserError(f"node {n}: weight-based connections are computed for transcoder latents (L{{l}}.T{{i}})")
        return {"model": m.name, **weights_only(m, n.layer, n.index, k)}


def _graphable(m) -> None:
    from .autoencoders.sites import graph_refusal

    why = graph_refusal(m.autoencoders)
    if why:
        raise UserError(f"model {m.name!r}: {why}")
