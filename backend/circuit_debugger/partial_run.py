"""Re-running a prompt under interventions from the first edited layer only.

An intervention at layer l cannot change what blocks 0..l-1 compute, so a re-run may reuse
their outputs from the clean pass instead of recomputing them. `capture` runs the clean pass
once and keeps every block's output (the residual stream entering the next block, in the exact
structure the HuggingFace layer returned); `skipping` then makes blocks 0..k-1 return those
outputs without computing anything, and the model's own forward runs from block k on — with
its own masks, rotary tables and final norm, so nothing family-specific is re-implemented here.
The logits equal a full re-run's (tests/test_partial_run.py checks this on GPT-2, GPT-NeoX and
a GQA Llama through the bridge, and through the engine's intervention hooks).

How the engine uses it (`Debugger._rerun` for `intervene`, `Debugger._exact_ablation` for
`verify_top`, both only when nothing is spliced and the model is in one piece):

    from .partial_run import capture, execute_partial
    logits, blocks = capture(m, ids)                # once per prompt; logits are the baseline
    cap = execute_partial(m, blocks, RunRequest(ivs, src, splice=choice), logit_position=pos)
    # == execution.execute(m, ids, same request), blocks below the first edited layer skipped,
    #    cap.logits[:, pos] exact (other positions of the view are meaningless)
    exact_ablation_from_layers(m, ids, target, nodes, clean_value, blocks, logit_position=pos)
    # == attribution.exact_ablation(m, ids, target, [], {}, nodes, clean_value)

Limits, by construction: hooks at layers below k never fire during a partial re-run (so use it
only when nothing is captured there); interventions on EMB/POS start at 0 (no saving); the cache
is for one prompt at batch size 1 and holds one [1, seq, d_model] tensor per layer.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch


@dataclass
class BlockOutputs:
    """The clean pass's output of every block, for one prompt."""

    tokens: torch.Tensor  # [1, seq]
    outputs: list  # outputs[l]: what block l returned (a tensor, or the tuple the HF layer returns)


def _detached(x: Any, batch: int = 1) -> Any:
    """A copy of a block's output (tensors detached and cloned; batch-1 tensors repeated to
    `batch` rows)."""
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if batch != 1 and x.ndim >= 1 and x.shape[0] == 1:
            return x.expand(batch, *x.shape[1:]).clone()
        return x.clone()
    if isinstance(x, tuple):
        return tuple(_detached(v, batch) for v in x)
    if isinstance(x, list):
        return [_detached(v, batch) for v in x]
    return x


def blocks_of(bridge) -> list:
    blocks = getattr(bridge, "blocks", None)
    if blocks is None:
        raise NotImplementedError("partial re-runs need the bridge's standard 'blocks' stack")
    return list(blocks)


def capture(m, ids: Sequence[int], hooks: Sequence = ()) -> tuple[torch.Tensor, BlockOutputs]:
    """The clean pass (logits, with `hooks` attached) and every block's output."""
    tokens = m.tokens_tensor(ids)
    outputs: dict[int, Any] = {}
    handles = []
    with m.lock:
        try:
            for l, block in enumerate(blocks_of(m.bridge)):
                handles.append(block.register_forward_hook(
                    lambda mod, args, out, l=l: outputs.__setitem__(l, _detached(out))))
            logits = m.run(tokens, hooks)
        finally:
            for h in handles:
                h.remove()
    n = len(blocks_of(m.bridge))
    if sorted(outputs) != list(range(n)):
        raise RuntimeError(f"only blocks {sorted(outputs)} of {n} ran in the clean pass")
    return logits, BlockOutputs(tokens, [outputs[l] for l in range(n)])


@contextmanager
def skipping(bridge, cache: BlockOutputs, start: int, batch: int = 1) -> Iterator[None]:
    """Within the block, blocks 0..start-1 return their cached clean outputs (repeated to
    `batch` rows) instead of computing. The caller holds the model's lock (this edits shared
    modules)."""
    blocks = blocks_of(bridge)
    if not 0 <= start <= len(blocks):
        raise ValueError(f"start layer {start} out of range [0, {len(blocks)}]")
    replaced = []
    try:
        for l in range(min(start, len(blocks))):
            out = cache.outputs[l]
            # a fresh copy each time: a later layer may add into its input in place
            object.__setattr__(blocks[l], "forward", lambda *a, _out=out, **k: _detached(_out, batch))
            replaced.append(blocks[l])
        yield
    finally:
        for block in replaced:
            block.__dict__.pop("forward", None)


@contextmanager
def only_logits_at(bridge, position) -> Iterator[None]:
    """Within the block, the unembedding computes logits at `position` only (None: all). The
    returned logits are then a broadcast view [batch, seq, vocab] in which every position holds
    that one row, so `logits[:, position]` reads the right values and costs 1/seq of the
    unembedding; reading any other position is meaningless. The caller holds the model's lock."""
    if position is None:
        yield
        return
    unembed = getattr(bridge, "unembed", None)
    if unembed is None:
        raise NotImplementedError("only_logits_at needs the bridge's 'unembed' component")
    handle = unembed.register_forward_pre_hook(
        lambda mod, args, kwargs: ((args[0][:, position:position + 1],) + args[1:], kwargs)
        if args else (args, {**kwargs, "hidden_states": kwargs["hidden_states"][:, position:position + 1]}),
        with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


def _broadcast(logits: torch.Tensor, seq: int, position) -> torch.Tensor:
    if position is None or logits.shape[1] == seq:
        return logits
    return logits.expand(logits.shape[0], seq, *logits.shape[2:])


def start_layer(interventions: Sequence, n_layers: int) -> int:
    """The first block any intervention can change: its node's layer (a residual-stream node
    `L{l}.RESID` is the input of block l; past the last block, the last block re-runs so that
    hooks after it still fire). Nodes without a layer (EMB, POS) start at 0."""
    layers = []
    for iv in interventions:
        node = getattr(iv, "node", iv)
        layer = getattr(node, "layer", None)
        layers.append(0 if layer is None else min(int(layer), n_layers - 1))
    return min(layers) if layers else n_layers - 1


def rerun(m, cache: BlockOutputs, hooks: Sequence, start: int, grad: bool = False,
          logit_position=None) -> torch.Tensor:
    """Logits of the cached prompt with `hooks` attached, computing blocks start.. only (and,
    with `logit_position`, the unembedding at that position only; see `only_logits_at`)."""
    seq = cache.tokens.shape[1]
    with m.lock, skipping(m.bridge, cache, start), only_logits_at(m.bridge, logit_position):
        return _broadcast(m.run(cache.tokens, hooks, grad=grad), seq, logit_position)


def _hook_layer(name: str) -> int | None:
    parts = name.split(".")
    return int(parts[1]) if len(parts) > 2 and parts[0] == "blocks" and parts[1].isdigit() else None


def first_layer(model, req) -> int:
    """The first block a `execution.RunRequest` needs computed: its interventions' first layer,
    lowered to any block whose activations it captures or edits, and to any spliced
    autoencoder's layer (its latents are captured inside the splice)."""
    L = model.shape.n_layers
    k = start_layer(req.interventions, L)
    names = list(req.capture) + [n for n in req.edits if isinstance(n, str)]
    layers = [l for l in map(_hook_layer, names) if l is not None]
    splice = req.splice
    if splice is not None:
        layers += list(getattr(splice, "transcoders", ())) + list(getattr(splice, "saes", ()))
    if req.edits and any(_hook_layer(n) is None and n not in ("hook_embed", "hook_pos_embed") for n in req.edits):
        layers.append(0)  # an edit keyed by something else (a latent key): be safe
    return min([k] + layers)


def execute_partial(model, cache: BlockOutputs, req, start: int | None = None, logit_position=None):
    """`execution.execute(model, ids, req)` for the cached prompt, computing blocks from
    `first_layer(model, req)` (or `start`) on; with `logit_position`, logits at that position
    only (a broadcast view, see `only_logits_at`). Returns the same `execution.Capture`."""
    from .execution import Capture, compile_hooks

    store: dict = {}
    hooks, edited = compile_hooks(model, req, store)
    k = first_layer(model, req) if start is None else start
    seq = cache.tokens.shape[1]
    if req.tokens is not None and not torch.equal(req.tokens[:1].to(cache.tokens.device), cache.tokens):
        raise ValueError("execute_partial: the request's tokens are not the cached prompt")
    tokens = cache.tokens.expand(req.batch, -1).contiguous()
    with model.lock, skipping(model.bridge, cache, k, batch=req.batch), only_logits_at(model.bridge, logit_position):
        logits = _broadcast(model.run(tokens, hooks, grad=req.grad), seq, logit_position)
    return Capture(store, logits, edited)


def exact_ablation_from_layers(m, ids: Sequence[int], target, nodes: Sequence, clean_value: float,
                               blocks: BlockOutputs, chunk: int = 32, logit_position=None) -> list[float]:
    """`attribution.exact_ablation` without other interventions (clean value − value with the
    node zero-ablated, per node), computed as batched re-runs that start at each node's layer:
    nodes are grouped by layer, so ablating every head costs about half of full batched passes
    in a model of many layers. Targets that capture activations at block l start at l at most.
    `logit_position`: the only position whose logits the target reads (a logit difference's),
    so the unembedding runs there alone."""
    from .execution import RunRequest
    from .interventions import Intervention

    L = m.shape.n_layers
    floor = min([l for l in map(_hook_layer, target.hooks) if l is not None], default=L)
    order = sorted(range(len(nodes)), key=lambda i: start_layer([nodes[i]], L))
    out: dict[int, float] = {}
    i = 0
    while i < len(order):
        k = min(start_layer([nodes[order[i]]], L), floor)
        part = [j for j in order[i:i + chunk] if min(start_layer([nodes[j]], L), floor) == k]
        i += len(part)
        ablations = [Intervention(nodes[j].component, "zero", None if nodes[j].position is None
                                  else (nodes[j].position,)) for j in part]
        req = RunRequest(ablations, {}, sorted(target.hooks), batch_of=list(range(len(part))), batch=len(part))
        with torch.no_grad():
            cap = execute_partial(m, blocks, req, start=k, logit_position=logit_position)
        for j, v in zip(part, target.value(cap.acts, cap.logits)):
            out[j] = clean_value - float(v)
    return [out[j] for j in range(len(nodes))]
