"""Every node's activation at every token of a batch, as one [batch, pos, n_nodes] tensor.

Columns follow `node_index(model)`: heads (their write norm ‖z·W_O‖ at the query position),
MLP neurons (post-activation), then MLP-site (transcoder, MLP-out SAE or CLT), attention-site
and residual-stream latents for the layers that have them.
Heads also give their attention patterns, for (query token, key token) statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..execution import RunRequest, execute
from ..autoencoders.splice import latent_key, latent_readers
from ..nodes import HEAD, NEURON, RESID_SAE, SAE, TRANSCODER, NodeId, activation_hook, pattern_hook, value_hook


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
    aes = model.autoencoders
    for kind, letter in ((TRANSCODER, "T"), (SAE, "S"), (RESID_SAE, "R")):
        for l, ae in sorted(aes.family(kind).items()):
            add(kind, l, ae.d_sae, letter)
    return out


class _Stop(Exception):
    """Raised at the unembedding's input: mining reads nothing after the last block."""


def _write_norms(x: torch.Tensor, W_O: torch.Tensor) -> torch.Tensor:
    """‖x_h · W_O[h]‖ for x [..., h, e] per head h, through the heads' Gram matrices
    W_O[h] W_O[h]ᵀ [h, e, e]: e² multiply-adds per head and position instead of e·d."""
    G = torch.einsum("hed,hfd->hef", W_O, W_O)
    return (torch.einsum("...he,hef->...hf", x, G) * x).sum(-1).clamp_min(0).sqrt()


def batch_activations(model, ids: torch.Tensor, blocks: bool = False, sparse: bool = False) -> tuple:
    """([batch, pos, n_nodes], patterns per layer [batch, head, q, k], head value-write norms
    per layer [batch, head, k]) for token ids [batch, pos]. `blocks`: the activations as the
    list of per-layer column blocks, in node order, without concatenating them; `sparse` (with
    `blocks`): TopK dictionaries' blocks as `SparseBlock`s (their k nonzero entries per token).

    The forward stops at the unembedding's input (nothing after the last block is read), so
    mining never pays for the [tokens, vocab] logits."""
    from .sparse_block import SparseBlock

    L = model.shape.n_layers
    aes = model.autoencoders
    names = []
    for l in range(L):
        names += [activation_hook(NodeId(HEAD, l), L), activation_hook(NodeId(NEURON, l), L), pattern_hook(l), value_hook(l)]
    store: dict = {}
    encode = None
    if sparse and blocks:
        encode = lambda ae, x: SparseBlock.topk(ae, x) if getattr(ae, "activation", None) == "topk" else ae.encode(x)
    # latents only: no decode, no error (the model's own forward is what the splice computes)
    edits = latent_readers(aes, aes.every(), store, encode)
    for name in names:  # captured as edits that return their input, chained after any reader
        def keep(x, name=name, then=edits.get(name)):
            store[name] = x
            return then(x) if then else x
        edits[name] = keep
    if "unembed.hook_in" in model.hook_points:
        def stop(x):
            raise _Stop
        edits["unembed.hook_in"] = stop
    try:
        execute(model, None, RunRequest(tokens=ids.to(model.device), edits=edits))
    except _Stop:
        pass
    W = model.W
    cols = []
    for l in range(L):
        cols.append(_write_norms(store[activation_hook(NodeId(HEAD, l), L)], W.W_O[l]))  # z [b, p, h, e]
    cols += [store[activation_hook(NodeId(NEURON, l), L)] for l in range(L)]
    for kind in (TRANSCODER, SAE, RESID_SAE):
        cols += [store[latent_key(kind, l)] for l in sorted(aes.family(kind))]
    patterns = [store[pattern_hook(l)] for l in range(L)]
    # GQA/MQA: a query head reads its shared key/value head h // (n_heads / n_kv_heads)
    group = model.arch.group_size
    vnorms = [_write_norms(store[value_hook(l)].repeat_interleave(group, dim=2), W.W_O[l]).transpose(1, 2)
              for l in range(L)]
    if blocks:
        return cols, patterns, vnorms
    return torch.cat(cols, -1).float(), patterns, vnorms
