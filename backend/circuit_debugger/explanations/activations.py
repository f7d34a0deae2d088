"""Every node's activation at every token of a batch, as one [batch, pos, n_nodes] tensor.

Columns follow `node_index(model)`: heads (their write norm ‖z·W_O‖ at the query position),
MLP neurons (post-activation), then transcoder and SAE latents for the layers that have them.
Heads also give their attention patterns, for (query token, key token) statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..execution import RunRequest, execute
from ..autoencoders.splice import SpliceChoice, latent_key
from ..nodes import HEAD, NEURON, SAE, TRANSCODER, NodeId, activation_hook, pattern_hook, value_hook


@dataclass
class NodeIndex:
    ids: list  # node id strings, in column order
    kinds: list
    layers: list
    indices: list

    def __len__(self):
        return len(self.ids)


def node_index(model) -> NodeIndex:
    L, H, N = model.shape.n_layers, model.shape.n_heads, model.shape.d_mlp
    out = NodeIndex([], [], [], [])

    def add(kind, layer, n, letter):
        for i in range(n):
            out.ids.append(f"L{layer}.{letter}{i}")
            out.kinds.append(kind)
            out.layers.append(layer)
            out.indices.append(i)

    for l in range(L):
        add(HEAD, l, H, "H")
    for l in range(L):
        add(NEURON, l, N, "N")
    for l, ae in sorted(model.autoencoders.transcoders.items()):
        add(TRANSCODER, l, ae.d_sae, "T")
    for l, ae in sorted(model.autoencoders.saes.items()):
        add(SAE, l, ae.d_sae, "S")
    return out


def batch_activations(model, ids: torch.Tensor) -> tuple[torch.Tensor, list, list]:
    """([batch, pos, n_nodes], patterns per layer [batch, head, q, k], head value-write norms
    per layer [batch, head, k]) for token ids [batch, pos]."""
    L = model.shape.n_layers
    aes = model.autoencoders
    names = []
    for l in range(L):
        names += [activation_hook(NodeId(HEAD, l), L), activation_hook(NodeId(NEURON, l), L), pattern_hook(l), value_hook(l)]
    store = execute(model, None, RunRequest(capture=names, tokens=ids.to(model.device),
                                            splice=SpliceChoice(tuple(sorted(aes.transcoders)), tuple(sorted(aes.saes))))).acts
    W = model.W
    cols = []
    for l in range(L):
        z = store[activation_hook(NodeId(HEAD, l), L)]  # [b, p, h, e]
        cols.append(torch.einsum("bphe,hed->bphd", z, W.W_O[l]).norm(dim=-1))
    cols += [store[activation_hook(NodeId(NEURON, l), L)] for l in range(L)]
    cols += [store[latent_key(TRANSCODER, l)] for l in sorted(aes.transcoders)]
    cols += [store[latent_key(SAE, l)] for l in sorted(aes.saes)]
    patterns = [store[pattern_hook(l)] for l in range(L)]
    # GQA/MQA: a query head reads its shared key/value head h // (n_heads / n_kv_heads)
    group = model.arch.group_size
    vnorms = [torch.einsum("bkhe,hed->bhkd", store[value_hook(l)].repeat_interleave(group, dim=2), W.W_O[l]).norm(dim=-1)
              for l in range(L)]
    return torch.cat(cols, -1).float(), patterns, vnorms
