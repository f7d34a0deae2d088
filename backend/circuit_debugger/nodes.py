"""Node addresses: the one short id used in tables, interventions, traces and URLs.

    L{l}.H{h}     attention head h of layer l
    L{l}.N{i}     MLP neuron i of layer l (its post-activation)
    L{l}.ATTN     whole attention sublayer output of layer l
    L{l}.MLP      whole MLP sublayer output of layer l
    L{l}.RESID    residual stream entering layer l (l == n_layers: the final residual)
    EMB / POS     token / position embeddings
    L{l}.T{i}     transcoder latent i of layer l   (needs an autoencoder)
    L{l}.S{i}     SAE latent i of layer l           (needs an autoencoder)
    L{l}.TERR     the transcoder's reconstruction error at layer l (what it misses of the MLP)
    L{l}.SERR     the SAE's reconstruction error at layer l (what it misses of the attention output)
    L{l}.R{i}     residual-stream SAE latent i of the residual entering layer l (l == n_layers: final)
    L{l}.RERR     that residual SAE's reconstruction error
    ...@{p}       optional suffix: only token position p, e.g. L1.H3@7

This module is the only place that knows TransformerLens hook names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Optional

from .errors import UserError

HEAD, NEURON, ATTN, MLP, RESID, EMB, POS, TRANSCODER, SAE = (
    "head", "neuron", "attn", "mlp", "resid", "embed", "pos_embed", "transcoder", "sae",
)
TRANSCODER_ERR, SAE_ERR = "transcoder_error", "sae_error"
RESID_SAE, RESID_SAE_ERR = "resid_sae", "resid_sae_error"  # residual-stream SAEs (issue 15)
LATENT_KINDS = (TRANSCODER, SAE, RESID_SAE)
AUTOENCODER_KINDS = (TRANSCODER, SAE, TRANSCODER_ERR, SAE_ERR, RESID_SAE, RESID_SAE_ERR)
ERROR_OF = {TRANSCODER: TRANSCODER_ERR, SAE: SAE_ERR, RESID_SAE: RESID_SAE_ERR}
FAMILY_OF = {TRANSCODER: TRANSCODER, TRANSCODER_ERR: TRANSCODER, SAE: SAE, SAE_ERR: SAE, RESID_SAE: RESID_SAE,
             RESID_SAE_ERR: RESID_SAE}

_INDEXED = {"H": HEAD, "N": NEURON, "T": TRANSCODER, "S": SAE, "R": RESID_SAE}
_SUBLAYER = {"ATTN": ATTN, "MLP": MLP, "RESID": RESID, "TERR": TRANSCODER_ERR, "SERR": SAE_ERR,
             "RERR": RESID_SAE_ERR}
# ASCII digits only (`\d` would take any Unicode digit: 'L١.H٣' read as L1.H3), at most 9 of
# them per number, so int() never meets a 5,000-digit string and every number fits an int32.
_NUMBER = r"[0-9]{1,9}"
_PATTERN = re.compile(
    rf"^(?:(?P<emb>EMB|POS)"
    rf"|L(?P<layer>{_NUMBER})\.(?:(?P<letter>[HNTSR])(?P<index>{_NUMBER})|(?P<sub>ATTN|MLP|RESID|TERR|SERR|RERR)))"
    rf"(?:@(?P<pos>{_NUMBER}))?$"
)
MAX_NODE_ID = 64  # characters; longer text is refused before any matching


@dataclass(frozen=True)
class Shape:
    """The sizes a node id is validated against."""

    n_layers: int
    n_heads: int
    d_mlp: int
    d_model: int
    d_head: int
    has_pos: bool = True  # a learned position embedding (POS) exists


@dataclass(frozen=True, order=True)
class NodeId:
    kind: str
    layer: Optional[int] = None
    index: Optional[int] = None
    position: Optional[int] = None

    def __str__(self) -> str:
        if self.kind == EMB:
            base = "EMB"
        elif self.kind == POS:
            base = "POS"
        elif self.kind in _SUBLAYER.values():
            base = f"L{self.layer}.{ {v: k for k, v in _SUBLAYER.items()}[self.kind] }"
        else:
            letter = {v: k for k, v in _INDEXED.items()}[self.kind]
            base = f"L{self.layer}.{letter}{self.index}"
        return base if self.position is None else f"{base}@{self.position}"

    def at(self, position: Optional[int]) -> "NodeId":
        return replace(self, position=position)

    @property
    def component(self) -> "NodeId":
        """The same node with no position."""
        return replace(self, position=None)


def parse_node(text: str) -> NodeId:
    if isinstance(text, str) and len(text) > MAX_NODE_ID:
        raise UserError(f"node id too long ({len(text)} characters; a node id has at most {MAX_NODE_ID})")
    m = _PATTERN.match(text.strip()) if isinstance(text, str) else None
    if not m:
        raise UserError(
            f"unknown node id {text!r}: expected e.g. 'L1.H3', 'L0.N117', 'L2.MLP', 'L1.ATTN', "
            "'L0.RESID', 'EMB', 'POS', 'L1.T300', 'L1.S5', 'L3.R12', optionally with '@position' (ASCII "
            "digits, at most 9 per number)"
        )
    pos = int(m["pos"]) if m["pos"] is not None else None
    if m["emb"]:
        return NodeId(EMB if m["emb"] == "EMB" else POS, position=pos)
    layer = int(m["layer"])
    if m["sub"]:
        return NodeId(_SUBLAYER[m["sub"]], layer, position=pos)
    return NodeId(_INDEXED[m["letter"]], layer, int(m["index"]), pos)


def validate(node: NodeId, shape: Shape, seq_len: Optional[int] = None,
             latents: Optional[dict] = None) -> NodeId:
    """Check the node exists in a model of this shape (and position < seq_len).

    `latents` maps 'transcoder' / 'sae' to {layer: number of latents} for the loaded autoencoders.
    """
    if node.kind in AUTOENCODER_KINDS:
        family = FAMILY_OF[node.kind]
        sizes = (latents or {}).get(family, {})
        if node.layer not in sizes:
            have = ", ".join(f"L{l}" for l in sorted(sizes)) or "none"
            raise UserError(f"node {node}: no {family} is loaded for layer {node.layer} of this model (loaded: {have})")
        if node.kind in LATENT_KINDS and node.index >= sizes[node.layer]:
            raise UserError(f"node {node}: latent {node.index} out of range ({family} has latents 0..{sizes[node.layer] - 1})")
    if node.kind == POS and not shape.has_pos:
        raise UserError(f"node {node}: this model has no learned position embedding (its positions are rotary, "
                        "ALiBi or absent and never written to the residual stream)")
    if node.layer is not None:
        top = shape.n_layers if node.kind in (RESID, RESID_SAE, RESID_SAE_ERR) else shape.n_layers - 1
        if node.layer > top:
            raise UserError(f"node {node}: layer {node.layer} out of range (model has layers 0..{shape.n_layers - 1})")
    if node.kind == HEAD and node.index >= shape.n_heads:
        raise UserError(f"node {node}: head {node.index} out of range (layer has heads 0..{shape.n_heads - 1})")
    if node.kind == NEURON and node.index >= shape.d_mlp:
        raise UserError(f"node {node}: neuron {node.index} out of range (MLP has neurons 0..{shape.d_mlp - 1})")
    if seq_len is not None and node.position is not None and node.position >= seq_len:
        raise UserError(f"node {node}: position {node.position} out of range (prompt has positions 0..{seq_len - 1})")
    return node


# ---- the mapping to TransformerLens hook names (nowhere else) ----

EMBED_HOOK, POS_EMBED_HOOK = "hook_embed", "hook_pos_embed"

def activation_hook(node: NodeId, n_layers: int) -> str:
    """Hook whose tensor holds this node's activation (and where interventions act).

    Heads act at `hook_z` [batch, pos, head, d_head]; neurons at `mlp.hook_post`
    [batch, pos, neuron]; everything else is [batch, pos, d_model]. `hook_resid_mid` is
    deliberately absent: on TransformerBridge it aliases `ln2.hook_in`, so patching it would
    not change the residual stream.
    """
    l = node.layer
    if node.kind == HEAD:
        return f"blocks.{l}.attn.hook_z"
    if node.kind == NEURON:
        return f"blocks.{l}.mlp.hook_post"
    if node.kind == ATTN:
        return f"blocks.{l}.hook_attn_out"
    if node.kind == MLP:
        return f"blocks.{l}.hook_mlp_out"
    if node.kind == RESID:
        return f"blocks.{l}.hook_resid_pre" if l < n_layers else f"blocks.{n_layers - 1}.hook_resid_post"
    if node.kind == EMB:
        return EMBED_HOOK
    if node.kind == POS:
        return POS_EMBED_HOOK
    if node.kind in (TRANSCODER, TRANSCODER_ERR):
        return f"blocks.{l}.hook_mlp_out"  # latents live inside the transcoder splice there
    if node.kind in (SAE, SAE_ERR):
        return f"blocks.{l}.hook_attn_out"
    if node.kind in (RESID_SAE, RESID_SAE_ERR):
        return activation_hook(NodeId(RESID, l), n_layers)
    raise UserError(f"node {node} has no activation hook")


def ln_normalized_hook(ln: str) -> str:
    """The layer norm's output before its gain and bias (what our transcoders read)."""
    return f"{ln}.hook_normalized"


def pattern_hook(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_pattern"


def scores_hook(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_attn_scores"


def value_hook(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_v"


def query_hook(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_q"


def key_hook(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_k"


def pre_hook(layer: int) -> str:
    return f"blocks.{layer}.mlp.hook_pre"


def ln_scale_hook(ln: str) -> str:
    """`ln` is 'ln_final' or 'blocks.{l}.ln1' / 'blocks.{l}.ln2'."""
    return f"{ln}.hook_scale"


def ln_params(ln: str) -> tuple[str, str]:
    """TransformerLens parameter names of a layer norm's weight and bias."""
    return f"{ln}.w", f"{ln}.b"


def up_hook(layer: int) -> str:
    """A gated MLP's up-projection value (`mlp.hook_pre` holds the gate pre-activation there)."""
    return f"blocks.{layer}.mlp.hook_pre_linear"


def qk_normed_hook(layer: int, which: str) -> str:
    """Queries ('q') or keys ('k') after their q/k norm (Qwen3, Gemma-3, OLMo-2), before rotary."""
    return f"blocks.{layer}.attn.hook_{which}_normed"


def qk_norm(layer: int, which: str) -> str:
    """The name of a q/k norm (its scale hook is `ln_scale_hook` of it)."""
    return f"blocks.{layer}.attn.{which}_norm"


def ln_out_hook(ln: str) -> str:
    """A norm's output (gain and bias applied): `ln_out_hook('ln_final')` is what the unembedding reads."""
    return f"{ln}.hook_out"


def rotary_hooks(layer: int) -> tuple[str, str]:
    """The cos / sin a rotary attention layer applied ([batch, pos, rotary_dim])."""
    return f"blocks.{layer}.attn.hook_cos", f"blocks.{layer}.attn.hook_sin"
