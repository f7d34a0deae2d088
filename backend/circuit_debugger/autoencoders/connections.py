"""Input-invariant connections of a transcoder (or cross-layer transcoder) latent, from weights alone.

A transcoder latent reads the residual through its encoder vector e (after LN centring and
scaling; scales vary by input, so these are up to a positive factor per position):
- upstream latents: the "pullback" centre(W_dec[j]) · e for latents j of earlier layers
  (the direct residual path), and through each head's OV circuit,
  (centre(W_dec[j]) ⊙ w_ln1) W_V W_O · e;
- de-embedding: centre(W_E[t]) · e, the vocabulary tokens whose embeddings excite it most;
- downstream: centre(W_dec[i]) · e' for later latents, and its logit lens through
  the final LN gain and W_U.
A CLT latent read at s writes through W_dec[s][:, l − s] into each MLP output l ≥ s, so what a
reader at layer r receives is the sum of its writes into MLPs s..r−1 (`CrossLayerTranscoder.write`).
A transcoder reading the raw hook_resid_mid reads e itself (no LN, nothing centred away).
"""

from __future__ import annotations

import torch

from ..errors import UserError
from ..nodes import TRANSCODER


def _centre(model, x):
    from ..linear import centre

    return centre(model, x)


def _top(values: torch.Tensor, k: int, label) -> list[dict]:
    flat = values.flatten()
    idx = flat.abs().topk(min(k, flat.numel())).indices
    return [dict(label(int(i)), value=float(flat[i])) for i in idx]


def _read(model, ae, index: int) -> torch.Tensor:
    """The residual direction a latent reads: centred through ln2 (a LayerNorm cannot see the
    mean), or as it is for a transcoder reading the raw hook_resid_mid."""
    e = ae.W_enc[:, index]
    return e if ae.read == "resid_mid" else _centre(model, e)


def _writes(model, s: int, upto: int) -> torch.Tensor:
    """[F, d]: what the latents read at layer s write into the residual before layer `upto`
    reads it (a transcoder: its decoder; a CLT: its writes into MLP outputs s..upto−1)."""
    aes = model.autoencoders
    if aes.clt is not None:
        return aes.clt.write(s, upto)
    return aes.transcoders[s].W_dec


def weights_only(model, layer: int, index: int, k: int = 10) -> dict:
    tcs = model.autoencoders.family(TRANSCODER)
    if layer not in tcs:
        raise UserError(f"no transcoder is loaded for layer {layer}")
    ae = tcs[layer]
    if not 0 <= index < ae.d_sae:
        raise UserError(f"latent {index} out of range (transcoder has latents 0..{ae.d_sae - 1})")
    W, L = model.W, model.shape.n_layers
    graphable = lambda l: l in tcs and tcs[l].read != "mlp_out"
    e = _read(model, ae, index)
    out: dict = {"node": f"L{layer}.T{index}", "upstream_direct": [], "upstream_via_heads": []}
    for l in range(layer):
        if not graphable(l):
            continue
        dec = _writes(model, l, layer)  # [n, d] (e is centred where the read is through ln2)
        out["upstream_direct"] += _top(dec @ e, k, lambda i, l=l: {"node": f"L{l}.T{i}"})
        for l2 in range(l + 1, layer + 1):  # heads after the source latent, up to the latent's own layer
            w1 = W.ln.get(f"blocks.{l2}.ln1", (torch.ones(model.shape.d_model), None))[0]
            ov = torch.einsum("hde,hef->hdf", W.W_V[l2], W.W_O[l2])  # [head, d, d]
            dec2 = _centre(model, _writes(model, l, l2))  # what reaches attention l2
            via = torch.einsum("nd,hdf,f->nh", dec2 * w1, ov, e)  # [latent, head]
            H = via.shape[1]
            out["upstream_via_heads"] += _top(via, k, lambda i, l=l, l2=l2, H=H: {"node": f"L{l}.T{i // H}",
                                                                                  "head": f"L{l2}.H{i % H}"})
    for key in ("upstream_direct", "upstream_via_heads"):
        out[key] = sorted(out[key], key=lambda r: -abs(r["value"]))[:k]
    codec = model.codec
    out["de_embedding"] = _top(_centre(model, W.W_E) @ e, k, lambda t: {"token": codec.token_strs([t])[0], "id": t})
    out["downstream"] = []
    for l in range(layer + 1, L):
        if graphable(l):
            d = _writes(model, layer, l)[index]
            reads = torch.stack([_read(model, tcs[l], j) for j in range(tcs[l].d_sae)], 1)
            out["downstream"] += _top(d @ reads, k, lambda i, l=l: {"node": f"L{l}.T{i}"})
    out["downstream"] = sorted(out["downstream"], key=lambda r: -abs(r["value"]))[:k]
    d = _centre(model, _writes(model, layer, L)[index])  # everything it writes, for the logit lens
    lens = d * W.ln["ln_final"][0] if "ln_final" in W.ln else d
    logits = lens @ W.W_U
    top, bot = logits.topk(k), (-logits).topk(k)
    out["logits_promoted"] = [{"token": codec.output_str(int(i)), "value": float(v)} for v, i in zip(top.values, top.indices)]
    out["logits_suppressed"] = [{"token": codec.output_str(int(i)), "value": -float(v)} for v, i in zip(bot.values, bot.indices)]
    return out
