"""The frozen linear model at mixed granularity: which units are graph nodes, per layer and sublayer.

Per layer, the attention sublayer is one of
- "ov": not a node; attention is a linear map through each head's OV circuit with the pattern
  frozen (edges pass through it: the circuit-tracer convention);
- "heads": every head at every query position is a node `L{l}.H{h}@{q}`; its output vector
  o[h,q] is held fixed as a source, and its *read* (its input, a scalar) is the projection of
  its output on its own clean direction, o·ô = |o| in the clean run, linear in upstream nodes
  through the frozen pattern, LN1 scale and W_V W_O;
- "sae": the attention output's SAE latents `L{l}.S{i}@{p}` and error `L{l}.SERR@{p}` (an SAE on
  hook_attn_out, or on hook_z: then the read is of the heads' z); a latent's read is its encoder
  pre-activation.
and the MLP sublayer one of
- "transcoder": its latents `L{l}.T{i}@{p}` (read: encoder pre-activation) and error `L{l}.TERR@{p}`
  — a per-layer transcoder (reading ln2's normalised input or the raw hook_resid_mid) or a
  cross-layer transcoder's layer (its latents write every later "transcoder" layer); what each
  dictionary kind reads and writes is in `graph_dictionaries.py`;
- "neurons": the `neurons_per_position` neurons with the largest |act|·‖W_out row‖ at each
  position are nodes `L{l}.N{i}@{p}` (read: pre-activation; the nonlinearity frozen); the
  other neurons' write (+ nothing else: the MLP is exact) is one source `L{l}.MLP@{p}`
  ("mlp_rest").

With the attention patterns, every LN scale and every node's value frozen, each read is an exact
linear function of the sources (embeddings, node values, errors) plus a constant; an edge is
that read's change when the source is removed (set to zero). `capture` runs the real model
once; `forward` is the frozen model in plain torch (the tests check it against hooks on the
real model).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch

from ..errors import UserError
from ..linear import centre as _centre, frozen_ln as ln, frozen_ln_back as ln_back
from ..nodes import EMBED_HOOK, POS_EMBED_HOOK, ln_scale_hook, pattern_hook
from .graph_dictionaries import sae_pre, tc_pre, tc_write

ATTN_MODES = ("ov", "heads", "sae")
MLP_MODES = ("transcoder", "neurons")


@dataclass(frozen=True)
class Granularity:
    attn: tuple  # per layer, one of ATTN_MODES
    mlp: tuple  # per layer, one of MLP_MODES
    neurons_per_position: int = 8

    @staticmethod
    def parse(model, attn=None, mlp=None, neurons_per_position: int = 8) -> "Granularity":
        """`attn`/`mlp`: one mode for every layer or a list with one per layer. Defaults: attention
        "ov"; MLPs "transcoder" where one is loaded, else "neurons"."""
        from ..architecture import require_plain_blocks

        require_plain_blocks(model.arch, "attribution graphs")
        L = model.shape.n_layers
        from .graph_dictionaries import graphable_mlp

        saes = model.autoencoders.saes

        def per_layer(x, default, allowed, what):
            if x is None:
                return tuple(default(l) for l in range(L))
            xs = [x] * L if isinstance(x, str) else list(x)
            if len(xs) != L:
                raise UserError(f"granularity.{what}: give one mode or a list of {L} (one per layer), not {len(xs)}")
            for v in xs:
                if v not in allowed:
                    raise UserError(f"granularity.{what}: {v!r} is not one of {list(allowed)}")
            return tuple(xs)

        a = per_layer(attn, lambda l: "ov", ATTN_MODES, "attn")
        m = per_layer(mlp, lambda l: "neurons" if graphable_mlp(model, l) else "transcoder", MLP_MODES, "mlp")
        for l in range(L):
            if a[l] == "sae" and l not in saes:
                raise UserError(f"granularity.attn: layer {l} has no SAE on its attention output")
            why = graphable_mlp(model, l) if m[l] == "transcoder" else None
            if why:
                raise UserError(f"granularity.mlp: {why}")
        if not 1 <= neurons_per_position <= model.shape.d_mlp:
            raise UserError(f"neurons_per_position must be between 1 and {model.shape.d_mlp}")
        if any(x != "ov" for x in a) or any(x != "transcoder" for x in m):
            _require_gpt2_like(model.arch, a, m)
        return Granularity(a, m, neurons_per_position)


def _require_gpt2_like(arch, attn, mlp) -> None:
    """Heads, SAE latents and neurons as nodes are modelled for GPT-2-style blocks; say what
    this model has instead (transcoders with attention through OV work wherever graphs do)."""
    odd = [x for x, bad in (
        ("a gated MLP", arch.mlp != "plain" and "neurons" in mlp),
        (f"{arch.positions} positions", arch.positions not in ("learned", "none") and "heads" in attn),
        (f"{arch.attention} attention", arch.attention != "MHA" and any(x != "ov" for x in attn)),
        ("query/key norms", arch.qk_norm != "none" and "heads" in attn),
        ("(1 + w) norm gains", bool(arch.gain_offset)), ("no pre-norms", not arch.pre_norms),
        ("an embedding norm", arch.embedding_norm)) if bad]
    if odd:
        raise UserError(f"graph granularity attn={list(attn)} mlp={list(mlp)} is modelled for GPT-2-style blocks; "
                        f"this model ({arch.family}) has {', '.join(odd)}: use attn='ov' and transcoders")


@dataclass
class Frozen:
    """What one real forward fixes, and the sources' clean values."""

    model: object
    ids: list
    g: Granularity
    emb: torch.Tensor
    pos: torch.Tensor
    s1: list
    s2: list
    sf: torch.Tensor
    patterns: list  # [H, q, k]
    src: dict  # source name -> tensor (see `source_names`)
    selected: dict = field(default_factory=dict)  # layer -> [seq, k] neuron indices (neurons mode)
    head_dir: dict = field(default_factory=dict)  # layer -> [H, seq, d] unit directions of head outputs
    heads_all: list = field(default_factory=list)  # per layer [H, seq, d]: every head's clean output
    real_attn: dict = field(default_factory=dict)  # layer -> the real run's attention output (interventions)
    logits: Optional[torch.Tensor] = None


def capture(model, ids: Sequence[int], g: Granularity, interventions: Sequence = ()) -> Frozen:
    """One real forward (autoencoders spliced where chosen) keeping what the freeze needs."""
    from ..architecture import require_plain_blocks
    from ..execution import RunRequest, execute
    from ..linear import scale_at
    from .splice import SpliceChoice

    require_plain_blocks(model.arch, "attribution graphs")
    L = model.shape.n_layers
    names = [EMBED_HOOK, POS_EMBED_HOOK] + [pattern_hook(l) for l in range(L)]
    names += [ln_scale_hook(n) for n in model.W.ln]
    names += [f"blocks.{l}.mlp.hook_post" for l in range(L) if g.mlp[l] == "neurons"]
    names += [f"blocks.{l}.hook_mlp_out" for l in range(L) if g.mlp[l] == "neurons"]
    if interventions:  # what an intervention changes in an attention output is held as a node
        names += [f"blocks.{l}.hook_attn_out" for l in range(L) if g.attn[l] != "sae"]
    choice = SpliceChoice(tuple(l for l in range(L) if g.mlp[l] == "transcoder"),
                          tuple(l for l in range(L) if g.attn[l] == "sae"))
    with torch.no_grad():
        cap = execute(model, ids, RunRequest(interventions=list(interventions), splice=choice,
                                             capture=[n for n in names if n in model.hook_points]))
    store, logits = cap.acts, cap.logits
    seq = len(ids)
    one = torch.ones(seq, 1, dtype=model.dtype)
    scale = lambda n: scale_at(store, ln_scale_hook(n), range(seq)) if n in model.W.ln else one
    emb = store[EMBED_HOOK][0].detach()
    f = Frozen(model, list(ids), g, emb, store[POS_EMBED_HOOK][0].detach() if POS_EMBED_HOOK in store
               else torch.zeros_like(emb), [scale(f"blocks.{l}.ln1") for l in range(L)],
               [scale(f"blocks.{l}.ln2") for l in range(L)], scale("ln_final"),
               [store[pattern_hook(l)][0].detach() for l in range(L)], {}, logits=logits[0].detach())
    W = model.W
    for l in range(L):
        if interventions and g.attn[l] != "sae":
            f.real_attn[l] = store[f"blocks.{l}.hook_attn_out"][0].detach()
        if g.attn[l] == "sae":
            f.src[f"sae{l}"], f.src[f"saeerr{l}"] = store[f"sae:{l}"][0].detach(), store[f"saeerr:{l}"][0].detach()
        if g.mlp[l] == "transcoder":
            f.src[f"tc{l}"], f.src[f"tcerr{l}"] = store[f"tc:{l}"][0].detach(), store[f"tcerr:{l}"][0].detach()
        else:
            post = store[f"blocks.{l}.mlp.hook_post"][0].detach()
            size = post.abs() * W.W_out[l].norm(dim=-1)[None]
            sel = size.topk(g.neurons_per_position, dim=-1).indices  # [seq, k]
            mask = torch.zeros_like(post, dtype=torch.bool).scatter(-1, sel, True)
            f.selected[l] = sel
            f.src[f"neur{l}"] = torch.where(mask, post, torch.zeros_like(post))
            out = store[f"blocks.{l}.hook_mlp_out"][0].detach()
            f.src[f"rest{l}"] = out - W.b_out[l] - f.src[f"neur{l}"] @ W.W_out[l]
    # head outputs (and their directions) come from the frozen model itself, layer by layer
    heads: list = []
    with torch.no_grad():
        forward(f, dict(f.src, emb=f.emb, pos=f.pos), heads=heads, fill_heads=True)
    f.heads_all = heads
    return f


def forward(f: Frozen, src: dict, heads: Optional[list] = None, fill_heads: bool = False,
            resid_in: Optional[list] = None) -> dict:
    """The frozen model on the given sources: every node's read ("pre" per layer and kind) and
    the final normalised residual. `heads` receives each layer's computed head outputs
    [H, seq, d]; `resid_in` each layer's attention input LN1(r) [seq, d]. With `fill_heads`
    (capture only), the computed head outputs become the "heads" sources and their directions."""
    m, W, g = f.model, f.model.W, f.g
    r = src["emb"] + src["pos"]
    reads: dict = {}
    for l in range(m.shape.n_layers):
        x = ln(m, f"blocks.{l}.ln1", r, f.s1[l])
        if resid_in is not None:
            resid_in.append(x)
        v = torch.einsum("kd,hde->hke", x, W.W_V[l]) + W.b_V[l][:, None]
        z = torch.einsum("hqk,hke->hqe", f.patterns[l], v)
        o = torch.einsum("hqe,hed->hqd", z, W.W_O[l])
        if heads is not None:
            heads.append(o)
        if g.attn[l] in ("ov", "heads"):
            if g.attn[l] == "heads":
                if fill_heads:
                    f.src[f"head{l}"] = o.clone()
                    nrm = o.norm(dim=-1, keepdim=True)
                    f.head_dir[l] = torch.where(nrm > 0, o / nrm.clamp_min(1e-30), torch.zeros_like(o))
                    src[f"head{l}"] = f.src[f"head{l}"]
                reads[("head", l)] = (o * f.head_dir[l]).sum(-1)  # [H, seq]
                out = src[f"head{l}"].sum(0) + W.b_O[l]
            else:
                out = o.sum(0) + W.b_O[l]
            if fill_heads and l in f.real_attn:  # an intervention's change, held fixed
                delta = f.real_attn[l] - out
                if float(delta.abs().max()) > 1e-6 * max(1.0, float(out.abs().max())):
                    f.src[f"iv{l}"] = src[f"iv{l}"] = delta
            if f"iv{l}" in src:
                out = out + src[f"iv{l}"]
            r = r + out
        else:
            ae = m.autoencoders.saes[l]
            reads[("sae", l)] = sae_pre(f, l, z, o.sum(0) + W.b_O[l])
            r = r + src[f"sae{l}"] @ ae.W_dec + ae.b_dec + src[f"saeerr{l}"]
        if g.mlp[l] == "transcoder":
            reads[("transcoder", l)] = tc_pre(f, l, r)
            r = r + tc_write(f, src, l)
        else:
            reads[("neuron", l)] = ln(m, f"blocks.{l}.ln2", r, f.s2[l]) @ W.W_in[l] + W.b_in[l]
            r = r + src[f"neur{l}"] @ W.W_out[l] + W.b_out[l] + src[f"rest{l}"]
    reads["final"] = ln(m, "ln_final", r, f.sf)
    return reads


def truncate(f: Frozen, P: int) -> Frozen:
    """The frozen model on the first P positions (attention is causal: reads at positions < P
    depend on nothing later, so their edges are the full model's)."""
    if P >= len(f.ids):
        return f
    views = f.__dict__.setdefault("_trunc", {})
    if P in views:
        return views[P]
    src = {k: (v[:, :P] if k.startswith("head") else v[:P]) for k, v in f.src.items()}
    t = Frozen(f.model, f.ids[:P], f.g, f.emb[:P], f.pos[:P], [s[:P] for s in f.s1], [s[:P] for s in f.s2],
                  f.sf[:P], [p[:, :P, :P] for p in f.patterns], src, {l: s[:P] for l, s in f.selected.items()},
                  {l: v[:, :P] for l, v in f.head_dir.items()}, [h[:, :P] for h in f.heads_all],
                  {l: v[:P] for l, v in f.real_attn.items()}, f.logits[:P] if f.logits is not None else None)
    t._root = f  # caches of derived tensors live on the full model (see granular_edges.padded_writes)
    views[P] = t
    return t


def zero_sources(f: Frozen) -> dict:
    return {k: torch.zeros_like(v) for k, v in dict(f.src, emb=f.emb, pos=f.pos).items()}


def clean_sources(f: Frozen) -> dict:
    return dict(f.src, emb=f.emb, pos=f.pos)
