"""What a "why" question explains: a scalar computed in the forward pass.

Every target has two faces:
- `value(acts, logits)`: the scalar per batch element, differentiable (for act×grad);
- `readout(acts)`: the same scalar written as a linear read of the residual stream at one
  point (with that point's layer-norm scale frozen), so that each upstream component's
  direct effect is its write dotted with a direction. The directions and constant are exact:
  component direct effects + bias terms sum to the value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional

import torch

from .errors import UserError
from .model import DebugModel
from .nodes import HEAD, NodeId, key_hook, pre_hook, query_hook, scores_hook, validate, activation_hook, \
    pattern_hook

Acts = Mapping[str, torch.Tensor]


@dataclass
class Readout:
    """target = Σ_i LN(resid[stage, layer, positions[i]]) · U[i] + const   (LN scale frozen)

    `layer`/`stage`: the residual read is the one entering block `layer` ('pre'), or between
    its attention and MLP ('mid'); layer == n_layers with 'pre' is the final residual.
    `ln`: the layer norm applied there ('ln_final', 'blocks.L.ln1', 'blocks.L.ln2').
    """

    layer: int
    stage: str
    ln: str
    positions: list[int]
    U: torch.Tensor  # [P, d_model], in the layer norm's output space
    const: float
    affine: bool = True  # False: the read is of the normalised residual before the LN gain and bias


@dataclass
class Target:
    kind: str
    position: int  # the position the question is about (shown in tables as "activation at")
    hooks: set = field(default_factory=set)  # extra hooks `value`/`readout` need captured

    def value(self, acts: Acts, logits: torch.Tensor) -> torch.Tensor:  # [batch]
        raise NotImplementedError

    def readout(self, acts: Acts) -> Readout:
        raise NotImplementedError

    def describe(self) -> dict:
        raise NotImplementedError


class LogitDiff(Target):
    """logit(A) − logit(B), or logit(A) − mean logit when B is absent."""

    def __init__(self, model: DebugModel, position: int, target: int, distractor: Optional[int]):
        super().__init__("logit_diff", position)
        self.model, self.target, self.distractor = model, target, distractor
        W = model.W
        if model.d_vocab_out == 1:  # a numerical output: the value is the single output logit
            if distractor is not None:
                raise UserError("this model has a single numerical output; give no distractor")
            self.u, self.bias = W.W_U[:, target], float(W.b_U[target])
        elif distractor is None:
            self.u = W.W_U[:, target] - W.W_U.mean(1)
            self.bias = float(W.b_U[target] - W.b_U.mean())
        else:
            self.u = W.W_U[:, target] - W.W_U[:, distractor]
            self.bias = float(W.b_U[target] - W.b_U[distractor])

    def value(self, acts, logits):
        row = logits[:, self.position]
        if self.model.d_vocab_out == 1:
            return row[:, self.target]
        other = row.mean(-1) if self.distractor is None else row[:, self.distractor]
        return row[:, self.target] - other

    def readout(self, acts):
        n = self.model.shape.n_layers
        return Readout(n, "pre", "ln_final", [self.position], self.u[None], self.bias)

    def describe(self):
        m = self.model.codec
        return {"kind": self.kind, "position": self.position, "target": m.output_str(self.target),
                "distractor": None if self.distractor is None else m.output_str(self.distractor)}


class NeuronPre(Target):
    """A neuron's pre-activation at a position."""

    def __init__(self, model: DebugModel, node: NodeId, position: int):
        super().__init__("neuron_pre", position, {pre_hook(node.layer)})
        self.model, self.node = model, node

    def value(self, acts, logits):
        return acts[pre_hook(self.node.layer)][:, self.position, self.node.index]

    def readout(self, acts):
        l, i = self.node.layer, self.node.index
        W = self.model.W
        return Readout(l, "mid", f"blocks.{l}.ln2", [self.position], W.W_in[l][:, i][None], float(W.b_in[l][i]))

    def describe(self):
        return {"kind": self.kind, "node": str(self.node), "position": self.position}


class AttentionScore(Target):
    """A head's pre-softmax score from query position q to key position k.

    The direct decomposition is "through the query" (the key vector held fixed) or
    "through the key" (the query vector held fixed); act×grad always covers both.
    """

    def __init__(self, model: DebugModel, node: NodeId, query: int, key: int, through: str):
        l = node.layer
        super().__init__("attention_score", query, {scores_hook(l), query_hook(l), key_hook(l)})
        self.model, self.node, self.query, self.key, self.through = model, node, query, key, through

    def value(self, acts, logits):
        return acts[scores_hook(self.node.layer)][:, self.node.index, self.query, self.key]

    def readout(self, acts):
        l, h, W, s = self.node.layer, self.node.index, self.model.W, self.model.attn_scale
        if self.through == "query":
            other = acts[key_hook(l)][0, self.key, h].detach()
            u, b, pos = W.W_Q[l, h] @ other / s, W.b_Q[l, h] @ other / s, self.query
        else:
            other = acts[query_hook(l)][0, self.query, h].detach()
            u, b, pos = W.W_K[l, h] @ other / s, W.b_K[l, h] @ other / s, self.key
        return Readout(l, "pre", f"blocks.{l}.ln1", [pos], u[None], float(b))

    def describe(self):
        return {"kind": self.kind, "node": str(self.node), "query": self.query, "key": self.key,
                "through": self.through, "position": self.query}


class HeadOutput(Target):
    """A head's write at a position, read along a direction (a later node's input direction).

    Decomposed through the head's values: each source position k contributes
    pattern[q, k] · (LN1(resid_k) W_V + b_V) W_O · g, with the pattern frozen.
    """

    def __init__(self, model: DebugModel, node: NodeId, position: int, direction: Callable[[Acts], torch.Tensor],
                 label: str, direction_hooks: set):
        l = node.layer
        super().__init__("head_output", position,
                         {pattern_hook(l), activation_hook(node, model.shape.n_layers)} | direction_hooks)
        self.model, self.node, self.direction, self.label = model, node, direction, label
        self.g: Optional[torch.Tensor] = None  # frozen at the first forward that computes it

    def value(self, acts, logits):
        l, h = self.node.layer, self.node.index
        if self.g is None:
            self.g = self.direction(acts).detach()
        z = acts[activation_hook(self.node, self.model.shape.n_layers)][:, self.position, h]
        return z @ (self.model.W.W_O[l, h] @ self.g)

    def readout(self, acts):
        l, h, W = self.node.layer, self.node.index, self.model.W
        pattern = acts[pattern_hook(l)][0, h, self.position].detach()  # [k]
        og = W.W_O[l, h] @ self.g  # [d_head]
        positions = [k for k in range(pattern.shape[0]) if pattern[k] != 0]
        p = pattern[positions]
        U = p[:, None] * (W.W_V[l, h] @ og)[None]
        const = float(p.sum() * (W.b_V[l, h] @ og))
        return Readout(l, "pre", f"blocks.{l}.ln1", positions, U, const)

    def describe(self):
        return {"kind": self.kind, "node": str(self.node), "position": self.position, "direction": self.label}


def check_position(position: Optional[int], seq_len: int, what: str = "position") -> int:
    if position is None:
        return seq_len - 1
    p = position + seq_len if position < 0 else position
    if not 0 <= p < seq_len:
        raise UserError(f"{what} {position} out of range (prompt has positions 0..{seq_len - 1})")
    return p


def check_head(model: DebugModel, node_text: str, seq_len: int) -> NodeId:
    from .nodes import parse_node

    node = validate(parse_node(node_text), model.shape, seq_len)
    if node.kind != HEAD:
        raise UserError(f"node {node}: expected an attention head (L{{l}}.H{{h}})")
    return node


class LatentPre(Target):
    """An SAE or transcoder latent's pre-activation at a position.

    A transcoder latent reads the MLP input normalised by ln2 (gain and bias are folded into
    its encoder), so its readout is the residual at 'mid' without the LN affine. An SAE latent
    reads one attention sublayer's output, so only that layer's heads write to it directly.
    """

    def __init__(self, model: DebugModel, node: NodeId, position: int):
        from .nodes import ATTN, TRANSCODER, ln_normalized_hook

        ae = model.autoencoders.family(node.kind)[node.layer]
        self.is_tc = node.kind == TRANSCODER
        hook = ln_normalized_hook(f"blocks.{node.layer}.ln2") if self.is_tc else activation_hook(NodeId(ATTN, node.layer),
                                                                                                 model.shape.n_layers)
        super().__init__("latent_pre", position, {hook})
        self.model, self.node, self.ae, self.hook = model, node, ae, hook

    def value(self, acts, logits):
        x = acts[self.hook][:, self.position]
        if self.ae.apply_b_dec_to_input and not self.ae.is_transcoder:
            x = x - self.ae.b_dec
        return x @ self.ae.W_enc[:, self.node.index] + self.ae.b_enc[self.node.index]

    def readout(self, acts):
        i, ae, l = self.node.index, self.ae, self.node.layer
        u = ae.W_enc[:, i]
        if self.is_tc:
            return Readout(l, "mid", f"blocks.{l}.ln2", [self.position], u[None], float(ae.b_enc[i]), affine=False)
        shift = float(ae.b_dec @ u) if ae.apply_b_dec_to_input else 0.0
        return Readout(l, "attn_out", "", [self.position], u[None], float(ae.b_enc[i]) - shift)

    def describe(self):
        return {"kind": self.kind, "node": str(self.node), "position": self.position}
