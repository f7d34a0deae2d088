"""What kind of transformer a loaded model is: one typed description, derived once from the
bridge's config, modules and weights.

Every readout, target and trace asks this description (not the model family) how the
residual stream is read and written: where norms sit and which gain they apply, how
positions enter, how query heads share key/value heads, whether the MLP is gated and
whether attention and MLP read the same residual (parallel blocks). This module is the only
place that looks at HuggingFace module classes; the rest of the engine never branches on a
family name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import torch

from .errors import UserError


@dataclass(frozen=True)
class Architecture:
    family: str  # the HuggingFace model_type (informational only)
    norm: str  # 'layernorm' | 'rmsnorm' | 'none'
    gain_offset: float  # 0: the norm multiplies by w; 1: by (1 + w) (Gemma)
    pre_norms: bool  # a norm before attention / MLP (False on OLMo-2)
    post_norms: bool  # attention / MLP outputs are normalised before being added (Gemma-2/3, OLMo-2)
    qk_norm: str  # 'none' | 'per_head' (Qwen3, Gemma-3: one norm per head) | 'full' (OLMo-2: across heads)
    positions: str  # 'learned' | 'rotary' | 'alibi' | 'none'
    rotary_dim: int  # rotated dimensions per head (0 without rotary)
    rotary_style: str  # 'half' (GPT-NeoX / Llama: rotate halves) | 'interleaved' (GPT-J: adjacent pairs) | ''
    rotary_base: float
    n_heads: int
    n_kv_heads: int
    attention: str  # 'MHA' | 'GQA' | 'MQA'
    sliding_window: Optional[int]
    attn_scale: float  # scores are q·k / attn_scale
    attn_softcap: Optional[float]  # scores pass through cap·tanh(s / cap) before softmax
    mlp: str  # 'plain' | 'gated' (activation = act(gate) · up)
    block: str  # 'sequential' | 'parallel' (attention and MLP read the same residual)
    mlp_norm: Optional[str]  # which pre-norm the MLP reads: 'ln2', 'ln1' (parallel, shared) or None
    final_softcap: Optional[float]  # logits = cap·tanh(logits / cap)
    tied_embeddings: bool
    embedding_norm: bool  # a norm right after the token embedding (BLOOM), inside EMB

    @property
    def group_size(self) -> int:
        """How many query heads share one key/value head."""
        return self.n_heads // self.n_kv_heads

    def kv_head(self, head: int) -> int:
        return head // self.group_size

    def describe(self) -> dict:
        return asdict(self)


def require_plain_blocks(arch: Architecture, what: str) -> None:
    """Refuse (422) a feature whose linear freeze is written for sequential blocks without
    post-norms or soft-capping, naming what this model has instead."""
    odd = [x for x, bad in (("parallel blocks", arch.block == "parallel"), ("post-norms", arch.post_norms),
                            ("logit soft-capping", bool(arch.final_softcap)),
                            ("attention soft-capping", bool(arch.attn_softcap))) if bad]
    if odd:
        raise UserError(f"{what} are not supported for this model ({arch.family}: {', '.join(odd)}); "
                        "per-node attribution and traces are")


def _cfg(hf, *names, default=None):
    for n in names:
        v = getattr(hf, n, None)
        if v is not None:
            return v
    return default


def _is_gemma_norm(module) -> bool:
    orig = getattr(module, "_original_component", module)
    return "gemma" in type(orig).__name__.lower()


def describe_bridge(bridge) -> Architecture:
    cfg = bridge.cfg
    hf_model = getattr(bridge, "original_model", None)
    hf = getattr(hf_model, "config", None)
    family = getattr(hf, "model_type", "") if hf is not None else "transformer_lens"
    named = {k for k, _ in bridge.tl_named_parameters()}
    hooks = bridge.hook_dict
    norm_type = str(getattr(cfg, "normalization_type", "") or "")
    has_ln1 = "blocks.0.ln1.w" in named
    has_ln2 = "blocks.0.ln2.w" in named
    has_final = "ln_final.w" in named
    norm = "none" if not (has_ln1 or has_ln2 or has_final or "blocks.0.ln1_post.hook_scale" in hooks) else \
        ("rmsnorm" if "RMS" in norm_type else "layernorm")
    gemma_gain = False
    blocks = getattr(bridge, "blocks", None)
    if blocks is not None and len(blocks) and norm == "rmsnorm":
        b0 = blocks[0]
        probe = getattr(b0, "ln1", None) or getattr(b0, "ln1_post", None)
        gemma_gain = probe is not None and _is_gemma_norm(probe)
    post_norms = "blocks.0.ln1_post.hook_scale" in hooks
    if "blocks.0.attn.q_norm.hook_scale" in hooks:
        qn = hooks["blocks.0.attn.q_norm.hook_scale"]
        qk_norm = "per_head" if _qnorm_weight(bridge, 0, "q").numel() == cfg.d_head else "full"
    else:
        qk_norm = "none"
    pos_type = str(getattr(cfg, "positional_embedding_type", "standard"))
    positions = {"standard": "learned", "rotary": "rotary", "alibi": "alibi"}.get(pos_type, "none")
    if positions == "learned" and "pos_embed.W_pos" not in named:
        positions = "none"
    rotary_dim, rotary_style, base = 0, "", 10000.0
    if positions == "rotary":
        rp = (getattr(hf, "rope_parameters", None) or {}) if hf is not None else {}
        frac = rp.get("partial_rotary_factor") or (_cfg(hf, "partial_rotary_factor", "rotary_pct") if hf is not None else None)
        if hf is not None and getattr(hf, "rotary_dim", None):
            rotary_dim = int(hf.rotary_dim)
        elif frac is not None:
            rotary_dim = int(cfg.d_head * float(frac))
        else:
            rotary_dim = int(getattr(cfg, "rotary_dim", None) or cfg.d_head)
        rotary_style = "interleaved" if family == "gptj" or getattr(cfg, "rotary_adjacent_pairs", False) else "half"
        rp = getattr(hf, "rope_parameters", None) if hf is not None else None
        base = float((rp or {}).get("rope_theta", None) or _cfg(hf, "rope_theta", "rotary_emb_base", default=None)
                     or getattr(cfg, "rotary_base", 10000))
    n_heads = int(cfg.n_heads)
    n_kv = int(getattr(cfg, "n_key_value_heads", None) or n_heads)
    attention = "MHA" if n_kv == n_heads else ("MQA" if n_kv == 1 else "GQA")
    scalar = _cfg(hf, "query_pre_attn_scalar") if hf is not None else None
    if scalar:
        attn_scale = float(scalar) ** 0.5
    elif getattr(cfg, "attn_scale", -1) and cfg.attn_scale > 0:
        attn_scale = float(cfg.attn_scale)
    else:
        attn_scale = float(cfg.d_head) ** 0.5
    if getattr(cfg, "scale_attn_by_inverse_layer_idx", False) or (hf is not None and getattr(hf, "scale_attn_by_inverse_layer_idx", False)):
        raise UserError("scale_attn_by_inverse_layer_idx (a per-layer attention scale) is not supported")
    softcap = lambda v: float(v) if v is not None and float(v) > 0 else None
    attn_softcap = softcap(_cfg(hf, "attn_logit_softcapping") if hf is not None else getattr(cfg, "attn_scores_soft_cap", None))
    final_softcap = softcap(_cfg(hf, "final_logit_softcapping") if hf is not None else getattr(cfg, "output_logits_soft_cap", None))
    gated = "blocks.0.mlp.W_gate" in named
    parallel = bool(getattr(cfg, "parallel_attn_mlp", False))
    mlp_norm = "ln2" if has_ln2 else ("ln1" if parallel and has_ln1 else None)
    window = _cfg(hf, "sliding_window") if hf is not None else None
    tied = bool(getattr(hf, "tie_word_embeddings", False)) if hf is not None else False
    return Architecture(
        family=family, norm=norm, gain_offset=1.0 if gemma_gain else 0.0, pre_norms=has_ln1,
        post_norms=post_norms, qk_norm=qk_norm, positions=positions, rotary_dim=rotary_dim,
        rotary_style=rotary_style, rotary_base=base, n_heads=n_heads, n_kv_heads=n_kv, attention=attention,
        sliding_window=int(window) if window else None, attn_scale=attn_scale, attn_softcap=attn_softcap,
        mlp="gated" if gated else "plain", block="parallel" if parallel else "sequential", mlp_norm=mlp_norm,
        final_softcap=final_softcap, tied_embeddings=tied, embedding_norm=family == "bloom",
    )


def _module_weight(module) -> Optional[torch.Tensor]:
    orig = getattr(module, "_original_component", module)
    w = getattr(orig, "weight", None)
    return None if w is None else w.detach()


def _qnorm_weight(bridge, layer: int, which: str) -> torch.Tensor:
    attn = bridge.blocks[layer].attn
    mod = getattr(attn, f"{which}_norm", None)
    if mod is None:
        mod = getattr(getattr(attn, "_original_component", None), f"{which}_norm", None)
    return _module_weight(mod)


def norm_gains(bridge, arch: Architecture) -> dict:
    """Effective gains (offset applied) of the norms that are not among the bridge's
    TransformerLens parameters: post-norms ('blocks.L.ln1_post' / 'ln2_post') and q/k norms
    ('blocks.L.attn.q_norm' / 'k_norm')."""
    out = {}
    for l, block in enumerate(getattr(bridge, "blocks", [])):
        if arch.post_norms:
            for name in ("ln1_post", "ln2_post"):
                w = _module_weight(getattr(block, name))
                out[f"blocks.{l}.{name}"] = w + arch.gain_offset
        if arch.qk_norm != "none":
            for which in ("q", "k"):
                out[f"blocks.{l}.attn.{which}_norm"] = _qnorm_weight(bridge, l, which) + arch.gain_offset
    return out


# ---- rotary position embedding (linear at a fixed position) ----

def rotary_cos_sin(arch: Architecture, positions: torch.Tensor, dtype=torch.float32):
    """cos, sin [len(positions), rotary_dim] laid out as the model applies them."""
    d = arch.rotary_dim
    inv = 1.0 / (arch.rotary_base ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    f = positions.to(torch.float64)[:, None] * inv[None]
    if arch.rotary_style == "interleaved":
        f = f.repeat_interleave(2, dim=-1)
    else:
        f = torch.cat([f, f], dim=-1)
    return f.cos().to(dtype), f.sin().to(dtype)


def _turn(x: torch.Tensor, style: str) -> torch.Tensor:
    if style == "interleaved":
        a, b = x[..., ::2], x[..., 1::2]
        return torch.stack([-b, a], dim=-1).flatten(-2)
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def rotate(arch: Architecture, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, inverse: bool = False):
    """Apply the rotation at a position (cos/sin broadcast against x[..., :rotary_dim]);
    `inverse` applies its transpose (the rotation is orthogonal), which carries a direction
    in rotated space back to the unrotated vector."""
    if arch.positions != "rotary" or arch.rotary_dim == 0:
        return x
    d = arch.rotary_dim
    r, rest = x[..., :d], x[..., d:]
    s = -sin if inverse else sin
    return torch.cat([r * cos + _turn(r, arch.rotary_style) * s, rest], dim=-1)


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """BLOOM's per-head ALiBi slopes (score += slope · key position)."""
    import math

    closest = 2 ** math.floor(math.log2(n_heads))
    base = 2 ** (-(2 ** -(math.log2(closest) - 3)))
    slopes = [base ** (i + 1) for i in range(closest)]
    if closest != n_heads:
        extra = 2 ** (-(2 ** -(math.log2(2 * closest) - 3)))
        slopes += [extra ** (2 * i + 1) for i in range(min(closest, n_heads - closest))]
    return torch.tensor(slopes)
