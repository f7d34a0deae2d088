"""A loaded model: the TransformerBridge, its weights in TransformerLens shapes, and a lock.

Hooks are state on a shared module, so every forward pass that adds hooks holds `lock`;
requests with different interventions then cannot see each other's hooks.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Sequence

import torch

from .errors import UserError
from .nodes import Shape, ln_params
from .shown_paths import shown

Hook = tuple[str, Callable]
_OUR_LEVEL = 7_919  # the hook level our temporary hooks carry, so that only they are removed


@dataclass
class Weights:
    """Detached TransformerLens-shaped weights (W_O [layer, head, d_head, d_model] etc.)."""

    W_E: torch.Tensor
    W_pos: Optional[torch.Tensor]  # None: no learned position embedding (rotary, ALiBi)
    W_Q: torch.Tensor
    W_K: torch.Tensor
    W_V: torch.Tensor
    W_O: torch.Tensor
    b_Q: torch.Tensor
    b_K: torch.Tensor
    b_V: torch.Tensor
    b_O: torch.Tensor
    W_in: torch.Tensor
    b_in: torch.Tensor
    W_out: torch.Tensor
    b_out: torch.Tensor
    W_U: torch.Tensor
    b_U: torch.Tensor
    ln: dict = field(default_factory=dict)  # 'blocks.0.ln1' -> (effective gain, bias or None); absent: no norm there
    W_gate: Optional[torch.Tensor] = None  # gated MLPs: [layer, d_model, d_mlp]
    b_gate: Optional[torch.Tensor] = None
    norms: dict = field(default_factory=dict)  # post-norms and q/k norms: name -> effective gain

    @property
    def W_pre(self) -> torch.Tensor:
        """The weights that compute `mlp.hook_pre` (the gate on gated MLPs)."""
        return self.W_in if self.W_gate is None else self.W_gate

    @property
    def b_pre(self) -> torch.Tensor:
        return self.b_in if self.W_gate is None else self.b_gate

    @classmethod
    def from_bridge(cls, bridge, arch=None) -> "Weights":
        """Read the bridge's weights; absent biases are zeros, norm gains are effective
        (Gemma's stored w becomes 1 + w), absent positions are None."""
        from .architecture import describe_bridge, norm_gains

        arch = arch or describe_bridge(bridge)
        named = {k: v.detach() for k, v in bridge.tl_named_parameters()}
        n = bridge.cfg.n_layers

        def stack(fmt: str, zeros_like: Optional[torch.Tensor] = None, drop: int = -2) -> Optional[torch.Tensor]:
            """Stacked over layers; absent: zeros shaped like `zeros_like` without dim `drop` (a bias)."""
            keys = [fmt.format(l) for l in range(n)]
            if all(k in named for k in keys):
                return torch.stack([named[k] for k in keys])
            if zeros_like is None:
                return None
            shape = list(zeros_like.shape)
            del shape[drop]
            return torch.zeros(shape, dtype=zeros_like.dtype, device=zeros_like.device)

        W_U = named["unembed.W_U"]
        ln = {}
        for name in ["ln_final"] + [f"blocks.{l}.ln{i}" for l in range(n) for i in (1, 2)]:
            w, b = ln_params(name)
            if w in named:
                ln[name] = (named[w] + arch.gain_offset, named.get(b))
        W_Q, W_K, W_V, W_O = (stack("blocks.{}.attn.W_" + x) for x in "QKVO")
        W_in, W_out, W_gate = stack("blocks.{}.mlp.W_in"), stack("blocks.{}.mlp.W_out"), stack("blocks.{}.mlp.W_gate")
        return cls(
            W_E=named["embed.W_E"], W_pos=named.get("pos_embed.W_pos") if arch.positions == "learned" else None,
            W_Q=W_Q, W_K=W_K, W_V=W_V, W_O=W_O,
            b_Q=stack("blocks.{}.attn.b_Q", W_Q), b_K=stack("blocks.{}.attn.b_K", W_K),
            b_V=stack("blocks.{}.attn.b_V", W_V), b_O=stack("blocks.{}.attn.b_O", W_out[:, :1], 1),
            W_in=W_in, b_in=stack("blocks.{}.mlp.b_in", W_in), W_out=W_out, b_out=stack("blocks.{}.mlp.b_out", W_out[:, :1], 1),
            W_U=W_U, b_U=named.get("unembed.b_U", torch.zeros(W_U.shape[1], dtype=W_U.dtype, device=W_U.device)),
            ln=ln, W_gate=W_gate, b_gate=None if W_gate is None else stack("blocks.{}.mlp.b_gate", W_gate),
            norms=norm_gains(bridge, arch),
        )


class UnsupportedModel(UserError):
    """The bridge loaded the model, but the debugger cannot decompose it exactly (the message says why)."""


class DebugModel:
    """What the engine needs of a model; build one with `loading.load_model`."""

    def __init__(self, name: str, bridge, codec, *, source: str, reference_prompts: Sequence[str] = (),
                 max_tokens: Optional[int] = None):
        self.name = name
        self.bridge = bridge
        self.codec = codec
        self.source = source
        self.reference_prompts = list(reference_prompts)
        cfg = bridge.cfg
        from .architecture import describe_bridge

        try:
            self.arch = describe_bridge(bridge)
        except UserError as e:
            raise UnsupportedModel(f"model {name!r} cannot be decomposed exactly: {e}") from None

        self.n_ctx = cfg.n_ctx
        self.max_tokens = min(max_tokens or cfg.n_ctx, cfg.n_ctx)
        self.lock = threading.RLock()
        # `bridge.hook_dict` rebuilds its alias map on every access; resolve names once
        self.hook_points = dict(bridge.hook_dict)
        for p in bridge.parameters():
            p.requires_grad_(False)
        self.W = Weights.from_bridge(bridge, self.arch)
        # sizes from the weights: some bridge configs misstate d_mlp (OPT's ffn_dim)
        self.shape = Shape(cfg.n_layers, cfg.n_heads, int(self.W.W_out.shape[1]), cfg.d_model, cfg.d_head,
                           has_pos=self.arch.positions == "learned")
        self.norm = {"layernorm": "LN", "rmsnorm": "RMS"}.get(self.arch.norm)
        self.attn_scale = self.arch.attn_scale
        self.device = self.W.W_E.device
        self.dtype = self.W.W_E.dtype
        self.d_vocab_out = self.W.W_U.shape[1]
        from .autoencoders.splice import AutoencoderSet

        self.autoencoders = AutoencoderSet()
        self.load_errors: dict[str, str] = {}  # parts (e.g. autoencoder folders) that failed to load

    # ---- tokens ----
    def tokenize(self, prompt: str) -> list[int]:
        if not isinstance(prompt, str) or not prompt.strip():
            raise UserError("prompt must be a non-empty string")
        ids = self.codec.encode_prompt(prompt)
        if len(ids) > self.max_tokens:
            raise UserError(
                f"prompt is {len(ids)} tokens long; this server allows at most {self.max_tokens} "
                f"for model {self.name!r}", status=413,
            )
        return ids

    def tokens_tensor(self, ids: Sequence[int], batch: int = 1) -> torch.Tensor:
        return torch.tensor([list(ids)] * batch, dtype=torch.long, device=self.device)

    # ---- forward passes ----
    @contextmanager
    def hooked(self, hooks: Sequence[Hook]) -> Iterator[None]:
        """Hold the model and attach hooks (in order, to the resolved hook points, at a level
        of our own); they are removed even if the pass fails."""
        with self.lock:
            touched = []
            try:
                for name, fn in hooks:
                    hp = self.hook_points[name]
                    hp.add_hook(fn, dir="fwd", level=_OUR_LEVEL)
                    touched.append(hp)
                yield
            finally:
                for hp in touched:
                    hp.remove_hooks("fwd", level=_OUR_LEVEL)

    def run(self, tokens: torch.Tensor, hooks: Sequence[Hook] = (), grad: bool = False) -> torch.Tensor:
        """Logits [batch, pos, vocab] for `tokens` with `hooks` attached."""
        with self.hooked(hooks), torch.set_grad_enabled(grad):
            return self.bridge(tokens)

    def describe(self) -> dict:
        s = self.shape
        return {
            "name": self.name, "source": shown(self.source), "n_layers": s.n_layers, "n_heads": s.n_heads,
            "d_model": s.d_model, "d_head": s.d_head, "d_mlp": s.d_mlp, "d_vocab": int(self.W.W_E.shape[0]),
            "d_vocab_out": int(self.d_vocab_out), "n_ctx": self.n_ctx, "max_tokens": self.max_tokens,
            "normalization": self.norm, "architecture": self.arch.describe(), "has_reference_corpus": bool(self.reference_prompts),
            "device": str(self.device),
            "transcoders": {str(l): a.d_sae for l, a in sorted(self.autoencoders.family("transcoder").items())},
            "saes": {str(l): a.d_sae for l, a in sorted(self.autoencoders.saes.items())},
            "resid_saes": {str(l): a.d_sae for l, a in sorted(self.autoencoders.resids.items())},
            "dictionaries": self.autoencoders.dictionaries(),
        }
