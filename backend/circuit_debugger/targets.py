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
from .nodes import HEAD, NodeId, key_hook, rotary_hooks, ln_out_hook, ln_scale_hook, pre_hook, qk_norm, qk_normed_hook, query_hook, \
    up_hook, validate, activation_hook, pattern_hook

Acts = Mapping[str, torch.Tensor]


@dataclass
class Readout:
    """target = Σ_i LN(resid[stage, layer, positions[i]]) · U[i] + const   (LN scale frozen)

    `layer`/`stage`: the residual read is the one entering block `layer` ('pre'), or between
    its attention and MLP ('mid'); layer == n_layers with 'pre' is the final residual.
    `ln`: the layer norm applied there ('ln_final', 'blocks.L.ln1', 'blocks.L.ln2').
    Stages of one sublayer's output instead of the residual (`SUBLAYER_READS`): 'attn_out' (the
    attention output), 'z' (the heads' outputs before W_O; U in z space, [P, heads·d_head]) and
    'mlp_out' (the MLP output); only that sublayer's units write them.
    """

    layer: int
    stage: str
    ln: str
    positions: list[int]
    U: torch.Tensor  # [P, d_model], in the layer norm's output space
    const: float
    affine: bool = True  # False: the read is of the normalised residual before the LN gain and bias


SUBLAYER_READS = {"attn_out": "attn", "z": "attn", "mlp_out": "mlp"}


@dataclass
class Target:
    kind: str
    position: int  # the position the question is about (shown in tables as "activation at")
    hooks: set = field(default_factory=set)  # extra hooks `value`/`readout` need captured
    decomposed: Optional[str] = None  # set when the decomposed quantity is not the model's own (soft-capping)

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
        self.cap = model.arch.final_softcap
        if self.cap:  # logits = cap·tanh(x / cap) is not linear: decompose x (the pre-cap logits)
            self.hooks = {ln_out_hook("ln_final")}
            self.decomposed = (f"pre-softcap logit difference (this model's logits are {self.cap}·tanh(x/{self.cap}); "
                               "the value and every effect are of x, which is linear in the residual stream)")

    def value(self, acts, logits):
        if self.cap and ln_out_hook("ln_final") in acts:
            x = acts[ln_out_hook("ln_final")][:, self.position]
            return x @ self.u.to(x.dtype) + self.bias
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
    """A neuron's pre-activation at a position. On a gated MLP (activation = act(gate)·up) it is
    the gate's pre-activation (`input='gate'`, the default) or the up-projection (`input='up'`)."""

    def __init__(self, model: DebugModel, node: NodeId, position: int, input: str = "gate"):
        gated = model.arch.mlp == "gated"
        if input not in ("gate", "up"):
            raise UserError("neuron trace 'input' must be 'gate' or 'up'")
        if input == "up" and not gated:
            raise UserError("neuron trace input 'up' exists only on gated MLPs; this model's MLP is not gated")
        self.hook = up_hook(node.layer) if input == "up" else pre_hook(node.layer)
        super().__init__("neuron_pre", position, {self.hook})
        self.model, self.node, self.input = model, node, input if gated else "pre"

    def value(self, acts, logits):
        return acts[self.hook][:, self.position, self.node.index]

    def readout(self, acts):
        from .linear import mlp_read

        l, i = self.node.layer, self.node.index
        W = self.model.W
        Win, bin_ = (W.W_in, W.b_in) if self.input == "up" else (W.W_pre, W.b_pre)
        stage, ln = mlp_read(self.model, l)
        return Readout(l, stage, ln, [self.position], Win[l][:, i][None], float(bin_[l][i]))

    def describe(self):
        return {"kind": self.kind, "node": str(self.node), "position": self.position, "input": self.input}


class AttentionScore(Target):
    """A head's score from query position q to key position k, as the softmax sees it before
    the causal mask: rot_q(N_q(q))·rot_k(N_k(k)) / scale + ALiBi bias (post-rotary, after any
    q/k norm, before soft-capping; on a soft-capped model the pre-cap score is decomposed).

    The direct decomposition is "through the query" (the rotated key held fixed) or "through
    the key" (the rotated query held fixed); act×grad always covers both. On GQA/MQA models
    the key side is the head's shared key/value head h // (n_heads / n_kv_heads).
    """

    def __init__(self, model: DebugModel, node: NodeId, query: int, key: int, through: str):
        l, a = node.layer, model.arch
        self.q_hook = query_hook(l) if a.qk_norm == "none" else qk_normed_hook(l, "q")
        self.k_hook = key_hook(l) if a.qk_norm == "none" else qk_normed_hook(l, "k")
        hooks = {self.q_hook, self.k_hook}
        self.cos_hook, self.sin_hook = rotary_hooks(l)
        if a.positions == "rotary":
            hooks |= {self.cos_hook, self.sin_hook}
        if a.qk_norm != "none":
            hooks |= {ln_scale_hook(qk_norm(l, "q")), ln_scale_hook(qk_norm(l, "k"))}
        super().__init__("attention_score", query, hooks)
        self.model, self.node, self.query, self.key, self.through = model, node, query, key, through
        self.kv = a.kv_head(node.index)
        if a.attn_softcap:
            self.decomposed = (f"pre-softcap attention score (this model's scores pass through "
                               f"{a.attn_softcap}·tanh(s/{a.attn_softcap}) before the softmax)")

    def _heads(self, acts, hook: str, n: int) -> torch.Tensor:
        """[batch, pos, heads, d_head] whatever layout the hook has."""
        x = acts[hook]
        a, d = self.model.arch, self.model.shape.d_head
        if hook in (self.q_hook, self.k_hook) and a.qk_norm == "per_head":
            return x.transpose(1, 2)
        if hook in (self.q_hook, self.k_hook) and a.qk_norm == "full":
            return x.reshape(x.shape[0], x.shape[1], n, d)
        return x

    def _rot(self, pos: int, dtype, acts=None):
        """cos, sin at `pos`: as the layer received them where the bridge exposes them (rope
        scaling and per-layer bases included), else recomputed from the rotary base."""
        from .architecture import rotary_cos_sin

        a = self.model.arch
        if acts is not None and self.cos_hook in acts and acts[self.cos_hook].shape[-1] == a.rotary_dim:
            return acts[self.cos_hook][0, pos].detach().to(dtype), acts[self.sin_hook][0, pos].detach().to(dtype)
        cos, sin = rotary_cos_sin(a, torch.tensor([pos]), dtype)
        return cos[0].to(self.model.device), sin[0].to(self.model.device)

    def _bias(self) -> float:
        a = self.model.arch
        if a.positions != "alibi":
            return 0.0
        from .architecture import alibi_slopes

        return float(alibi_slopes(a.n_heads)[self.node.index]) * self.key

    def value(self, acts, logits):
        from .architecture import rotate

        a, h = self.model.arch, self.node.index
        q = self._heads(acts, self.q_hook, a.n_heads)[:, self.query, h]
        k = self._heads(acts, self.k_hook, a.n_kv_heads)[:, self.key, self.kv]
        q = rotate(a, q, *self._rot(self.query, q.dtype, acts))
        k = rotate(a, k, *self._rot(self.key, k.dtype, acts))
        return (q * k).sum(-1) / a.attn_scale + self._bias()

    def _norm_dir(self, which: str, pos: int, head: int, v: torch.Tensor, acts) -> torch.Tensor:
        """Carry a direction on the normed q/k back through the norm (its scale frozen)."""
        a, l, d = self.model.arch, self.node.layer, self.model.shape.d_head
        if a.qk_norm == "none":
            return v
        g = self.model.W.norms[qk_norm(l, which)]
        s = acts[ln_scale_hook(qk_norm(l, which))][0].detach()
        if a.qk_norm == "per_head":
            return v * g / s[head, pos, 0]
        return v * g[head * d:(head + 1) * d] / s[pos, 0]

    def readout(self, acts):
        from .architecture import rotate

        a, l, h, W = self.model.arch, self.node.layer, self.node.index, self.model.W
        qn = self._heads(acts, self.q_hook, a.n_heads)[0, self.query, h].detach()
        kn = self._heads(acts, self.k_hook, a.n_kv_heads)[0, self.key, self.kv].detach()
        if self.through == "query":
            other = rotate(a, kn, *self._rot(self.key, kn.dtype, acts))
            d = rotate(a, other, *self._rot(self.query, kn.dtype, acts), inverse=True) / a.attn_scale
            d = self._norm_dir("q", self.query, h, d, acts)
            u, b, pos = W.W_Q[l, h] @ d, W.b_Q[l, h] @ d, self.query
        else:
            other = rotate(a, qn, *self._rot(self.query, qn.dtype, acts))
            d = rotate(a, other, *self._rot(self.key, qn.dtype, acts), inverse=True) / a.attn_scale
            d = self._norm_dir("k", self.key, self.kv, d, acts)
            u, b, pos = W.W_K[l, h] @ d, W.b_K[l, h] @ d, self.key
        return Readout(l, "pre", f"blocks.{l}.ln1", [pos], u[None], float(b) + self._bias())

    def describe(self):
        out = {"kind": self.kind, "node": str(self.node), "query": self.query, "key": self.key,
               "through": self.through, "position": self.query}
        if self.model.arch.n_kv_heads != self.model.arch.n_heads:
            out["kv_head"] = self.kv
        return out


class HeadOutput(Target):
    """A head's write at a position, read along a direction (a later node's input direction).

    Decomposed through the head's values: each source position k contributes
    pattern[q, k] · (LN1(resid_k) W_V + b_V) W_O · g, with the pattern frozen.
    """

    def __init__(self, model: DebugModel, node: NodeId, position: int, direction: Callable[[Acts], torch.Tensor],
                 label: str, direction_hooks: set):
        l = node.layer
        from .linear import post_norm_hooks

        super().__init__("head_output", position,
                         {pattern_hook(l), activation_hook(node, model.shape.n_layers)} | direction_hooks
                         | set(post_norm_hooks(model)))
        self.model, self.node, self.direction, self.label = model, node, direction, label
        self.g: Optional[torch.Tensor] = None  # frozen at the first forward that computes it

    def _og(self, acts) -> torch.Tensor:
        """W_O · g, with g carried back through the attention post-norm if there is one [d_head]."""
        from .linear import write_direction

        l, h = self.node.layer, self.node.index
        if self.g is None:
            self.g = self.direction(acts).detach()
        g = write_direction(self.model, "attn", l, self.g[None], acts, [self.position])[0]
        return self.model.W.W_O[l, h] @ g

    def value(self, acts, logits):
        h = self.node.index
        z = acts[activation_hook(self.node, self.model.shape.n_layers)][:, self.position, h]
        return z @ self._og(acts)

    def readout(self, acts):
        l, h, W = self.node.layer, self.node.index, self.model.W
        pattern = acts[pattern_hook(l)][0, h, self.position].detach()  # [k]
        og = self._og(acts)  # [d_head]
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
    A residual SAE latent (or a transcoder / CLT latent reading the raw hook_resid_mid) reads
    the residual stream itself: no layer norm, every upstream writer counts.
    A hook_z SAE latent reads the heads' outputs before W_O (stage "z": each head's z at the
    position is its write, dotted with that head's slice of the encoder vector); an MLP-output
    SAE latent reads the MLP's output (stage "mlp_out": the layer's neurons write it through
    W_out, plus b_out), the counterpart of an attention-output SAE latent.
    """

    def __init__(self, model: DebugModel, node: NodeId, position: int):
        from .autoencoders.splice import site_hook
        from .nodes import RESID_SAE, SAE, TRANSCODER, ln_normalized_hook

        ae = model.autoencoders.family(node.kind)[node.layer]
        self.is_tc = node.kind == TRANSCODER
        read = getattr(ae, "read", "") or ("ln2_normalized" if self.is_tc else "attn_out")
        from .linear import mlp_read

        l, L = node.layer, model.shape.n_layers
        self.mlp = mlp_read(model, l)  # (stage, norm) of the MLP input a transcoder reads
        hook = {"ln2_normalized": ln_normalized_hook(self.mlp[1]), "resid_mid": f"blocks.{l}.ln2.hook_in",
                "attn_out": site_hook(SAE, l, L), "resid": site_hook(RESID_SAE, l, L),
                "z": f"blocks.{l}.attn.hook_z", "mlp_out": site_hook(TRANSCODER, l, L)}[read]
        super().__init__("latent_pre", position, {hook})
        self.model, self.node, self.ae, self.hook, self.read = model, node, ae, hook, read

    def value(self, acts, logits):
        x = acts[self.hook][:, self.position]
        if self.read == "z":  # [batch, head, d_head] -> the concatenated head outputs
            x = x.flatten(-2)
        shift = self.ae.input_shift()
        if shift is not None:
            x = x - shift
        return x @ self.ae.W_enc[:, self.node.index] + self.ae.b_enc[self.node.index]

    def readout(self, acts):
        i, ae, l = self.node.index, self.ae, self.node.layer
        u = ae.W_enc[:, i]
        shift = ae.input_shift()
        const = float(ae.b_enc[i]) - (float(shift @ u) if shift is not None else 0.0)
        if self.read == "ln2_normalized":
            return Readout(l, self.mlp[0], self.mlp[1], [self.position], u[None], const, affine=False)
        if self.read == "resid_mid":  # the raw residual between attention and MLP: no layer norm
            return Readout(l, "mid", "", [self.position], u[None], const)
        if self.read == "resid":
            return Readout(l, "pre", "", [self.position], u[None], const)
        if self.read in ("z", "mlp_out"):  # the heads' z (before W_O) / the MLP's output: only its units write
            return Readout(l, self.read, "", [self.position], u[None], const)
        return Readout(l, "attn_out", "", [self.position], u[None], const)

    def describe(self):
        return {"kind": self.kind, "node": str(self.node), "position": self.position}
