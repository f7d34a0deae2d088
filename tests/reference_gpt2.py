"""A hand-written GPT-2 forward over a HuggingFace model's weights, independent of
TransformerLens, with hooks at the head outputs (input of c_proj) and the MLP neurons."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def forward(hf, ids: torch.Tensor, *, z_fn=None, post_fn=None, resid_fn=None) -> torch.Tensor:
    """Logits [pos, vocab] for one sequence `ids` [pos].

    z_fn(layer, z[pos, head, d_head]) -> z   edits each head's output before c_proj
    post_fn(layer, post[pos, d_mlp]) -> post edits MLP neurons before c_proj
    resid_fn(layer, resid[pos, d]) -> resid  edits the residual entering each block
    """
    t = hf.transformer
    cfg = hf.config
    H, D = cfg.n_head, cfg.n_embd
    dh = D // H
    n = ids.shape[0]
    x = t.wte.weight[ids] + t.wpe.weight[:n]
    mask = torch.tril(torch.ones(n, n, dtype=torch.bool))
    for l, blk in enumerate(t.h):
        if resid_fn:
            x = resid_fn(l, x)
        h = F.layer_norm(x, (D,), blk.ln_1.weight, blk.ln_1.bias, cfg.layer_norm_epsilon)
        qkv = h @ blk.attn.c_attn.weight + blk.attn.c_attn.bias
        q, k, v = (a.reshape(n, H, dh).transpose(0, 1) for a in qkv.split(D, dim=-1))
        scores = (q @ k.transpose(1, 2)) / math.sqrt(dh)
        scores = scores.masked_fill(~mask, float("-inf"))
        z = (scores.softmax(-1) @ v).transpose(0, 1)  # [pos, head, dh]
        if z_fn:
            z = z_fn(l, z)
        x = x + z.reshape(n, D) @ blk.attn.c_proj.weight + blk.attn.c_proj.bias
        h = F.layer_norm(x, (D,), blk.ln_2.weight, blk.ln_2.bias, cfg.layer_norm_epsilon)
        pre = h @ blk.mlp.c_fc.weight + blk.mlp.c_fc.bias
        post = 0.5 * pre * (1 + torch.tanh(math.sqrt(2 / math.pi) * (pre + 0.044715 * pre ** 3)))
        if post_fn:
            post = post_fn(l, post)
        x = x + post @ blk.mlp.c_proj.weight + blk.mlp.c_proj.bias
    if resid_fn:
        x = resid_fn(len(t.h), x)
    x = F.layer_norm(x, (D,), t.ln_f.weight, t.ln_f.bias, cfg.layer_norm_epsilon)
    return x @ hf.lm_head.weight.T


def capture(hf, ids: torch.Tensor) -> dict:
    """z and post of every layer on `ids` (for mean / patch references)."""
    out: dict = {}

    def zf(l, z):
        out[("z", l)] = z.clone()
        return z

    def pf(l, p):
        out[("post", l)] = p.clone()
        return p

    with torch.no_grad():
        forward(hf, ids, z_fn=zf, post_fn=pf)
    return out
