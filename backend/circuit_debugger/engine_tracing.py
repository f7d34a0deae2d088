"""Debugger methods for tracing through dictionaries: attribution graphs and latent connections
(transcoders, cross-layer transcoders, attention SAEs; see autoencoders/graph_dictionaries.py)."""

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
              max_latents: int = 500, pruning: str = "circuit-tracer", attn=None, mlp=None,
              neurons_per_position: int = 8, qk_per_head: int = 8, interventions=(), max_nodes: int = 1024) -> dict:
        """An attribution graph for "why A and not B" at the chosen granularity (see
        autoencoders/attribution_graph.py); only the pruned graph is returned."""
        from .autoencoders.attribution_graph import build
        from .autoencoders.granular import Granularity
        from .autoencoders.pruning import MODES

        m = self.model(model)
        ids = m.tokenize(prompt)
        pos = check_position(position, len(ids))
        t = m.codec.output_token(target, "target")
        d = None if distractor in (None, "") else m.codec.output_token(distractor, "distractor")
        if not (0 < node_threshold <= 1 and 0 < edge_threshold <= 1):
            raise UserError("node_threshold and edge_threshold must be in (0, 1]")
        if not 1 <= max_latents <= self.limits.max_graph_latents:
            raise UserError(f"max_latents must be between 1 and {self.limits.max_graph_latents}")
        if pruning not in MODES:
            raise UserError(f"pruning must be one of {list(MODES)}, not {pruning!r}")
        if not 1 <= max_nodes <= 100_000:
            raise UserError("max_nodes must be between 1 and 100000")
        if not 0 <= qk_per_head <= 1000:
            raise UserError("qk_per_head must be between 0 and 1000")
        g = Granularity.parse(m, attn, mlp, neurons_per_position)
        ivs = self._graph_interventions(m, ids, interventions, g)
        key = request_key("graph", m.name, ids, pos, t, d, node_threshold, edge_threshold, max_latents, pruning,
                          g.attn, g.mlp, g.neurons_per_position, qk_per_head, [str(i) for i in ivs], max_nodes)
        hit = self._results.get(key)
        if hit is None:
            with m.lock:  # keep one graph per model at a time
                out = build(m, ids, t, d, pos, node_threshold=node_threshold, edge_threshold=edge_threshold,
                            max_latents=max_latents, granularity=g, pruning=pruning, qk_per_head=qk_per_head,
                            interventions=ivs, max_nodes=max_nodes)
            hit = self._results.put(key, {"model": m.name, **out})
        return self._graph_labels(m.name, hit)

    def _graph_labels(self, model: str, graph: dict) -> dict:
        """Each node's label: the newest explanation of its unit (id without the position), if
        the model has an explanations database."""
        store = self.explanations.get(model)
        if store is None:
            return graph
        nodes = []
        for n in graph["nodes"]:
            unit = n["id"].split("@")[0]
            found = store.explanations(unit) if n["kind"] in ("head", "neuron", "transcoder", "sae") else []
            nodes.append(dict(n, label=found[-1]["text"]) if found else n)
        return dict(graph, nodes=nodes)

    def graph_export(self, graph: dict, pins=(), supernodes=(), notes=None, slug: str = "circuit-debugger-graph") -> dict:
        """A graph in circuit-tracer's / Neuronpedia's JSON (see autoencoders/graph_export.py)."""
        from .autoencoders.graph_export import export

        return export(graph, pins=pins, supernodes=supernodes, notes=notes, slug=slug)

    def graph_import(self, data: dict) -> dict:
        from .autoencoders.graph_export import import_graph

        return import_graph(data)

    def _graph_interventions(self, m, ids, interventions, g) -> list:
        """Interventions a graph can hold fixed: zero / scale / set on heads, neurons, sublayers,
        embeddings, and latents of the autoencoders the graph splices in."""
        from .nodes import AUTOENCODER_KINDS, RESID, SAE, SAE_ERR

        ivs = self._interventions(m, ids, interventions, None, None)
        for iv in ivs:
            if iv.op in ("mean", "patch"):
                raise UserError(f"graph: intervention {iv} patches from other prompts; graphs take zero, scale or "
                                f"add interventions")
            if iv.node.kind == RESID:
                raise UserError(f"graph: intervention {iv} on the residual stream cannot be held fixed in a graph")
            if iv.node.kind in AUTOENCODER_KINDS:
                attn = iv.node.kind in (SAE, SAE_ERR)
                if (g.attn if attn else g.mlp)[iv.node.layer] != ("sae" if attn else "transcoder"):
                    raise UserError(f"graph: intervention {iv} acts on an autoencoder this graph does not use at "
                                    f"layer {iv.node.layer}; choose it in the granularity")
        return ivs

    def latent_inputs(self, model: str, prompt: str, node: str, k: int = 20) -> dict:
        """Input-dependent connections into a transcoder latent at a position; they sum to its pre-activation."""
        from .autoencoders.attribution_graph import contributions

        from .autoencoders.graph_dictionaries import refuse_mlp_out_latent

        m = self.model(model)
        ids = m.tokenize(prompt)
        n = validate(parse_node(node), m.shape, len(ids), latents=m.autoencoders.sizes())
        if n.kind != TRANSCODER:
            raise UserError(f"node {n}: input connections are computed for transcoder latents (L{{l}}.T{{i}})")
        refuse_mlp_out_latent(m, n)
        pos = check_position(n.position, len(ids))
        with m.lock:
            return {"model": m.name, **contributions(m, ids, n.layer, n.index, pos, k)}

    def latent_weights(self, model: str, node: str, k: int = 10) -> dict:
        """Input-invariant connections of a transcoder latent (weights only)."""
        from .autoencoders.connections import weights_only

        from .autoencoders.graph_dictionaries import refuse_mlp_out_latent

        m = self.model(model)
        n = validate(parse_node(node), m.shape, latents=m.autoencoders.sizes())
        if n.kind != TRANSCODER:
            raise UserError(f"node {n}: weight-based connections are computed for transcoder latents (L{{l}}.T{{i}})")
        refuse_mlp_out_latent(m, n)
        return {"model": m.name, **weights_only(m, n.layer, n.index, k)}

