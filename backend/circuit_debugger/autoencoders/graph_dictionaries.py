"""Every dictionary kind in the graphs' frozen model (`granular.py`, `granular_edges.py`): what a
latent reads and what it writes, for each kind the loader accepts.

MLP site, node letter T (mode "transcoder"):
- per-layer transcoders reading the MLP input normalised by ln2 (no gain or bias: those are
  folded into the encoder at load) or the raw residual `hook_resid_mid` (no layer norm at all:
  the read is linear in the residual as it is);
- a cross-layer transcoder (CLT): latent L{s}.T{i} is read at layer s and writes into every later
  MLP output l ≥ s through W_dec[s][:, l − s]. Layer by layer, a graph may take some layers as
  CLT layers and others as neurons: a CLT layer's MLP output is then the writes of the latents
  read at CLT layers s ≤ l + b_dec[l] + its error (true output − that reconstruction, so the
  model is unchanged), and a neuron layer's MLP is the real one. The CLT splice
  (`clt.CrossLayerTranscoder.splice_hooks`) does exactly that for the chosen layers.
- MLP-output SAEs are refused as graph nodes, by name: their latents read the MLP's output,
  a nonlinear function of the residual, so no edge into them is an exact linear effect.

Attention site, letter S (mode "sae"): SAEs on `hook_attn_out` (read: the attention output) and
on `hook_z` (read: the concatenated head outputs before W_O; their decoder is composed with W_O
at load, so they write the attention output directly).
"""

from __future__ import annotations

from typing import Optional

import torch

from ..errors import UserError
from ..linear import centre, frozen_ln
from ..nodes import TRANSCODER

MLP_OUT_REFUSAL = ("an SAE on hook_mlp_out: its latents read the MLP's output, a nonlinear function of the "
                   "residual stream, so edges into them cannot be exact linear effects; MLP-output SAE latents are "
                   "not graph nodes (use neurons at this layer, or a transcoder)")


def mlp_dictionary(model, layer: int):
    """The MLP-site dictionary of `layer` as one Autoencoder view (a CLT's layer-s encoder), or None."""
    return model.autoencoders.family(TRANSCODER).get(layer)


def graphable_mlp(model, layer: int) -> Optional[str]:
    """None if layer's MLP dictionary can be a graph's "transcoder" layer, else why not."""
    ae = mlp_dictionary(model, layer)
    if ae is None:
        return f"layer {layer} has no transcoder"
    if ae.read == "mlp_out":
        return f"layer {layer} has {MLP_OUT_REFUSAL}"
    return None


def clt_layers(f) -> tuple:
    """The layers whose MLP a CLT replaces in this graph (empty without a CLT)."""
    if f.model.autoencoders.clt is None:
        return ()
    return tuple(l for l, mode in enumerate(f.g.mlp) if mode == "transcoder")


def tc_pre(f, l: int, r: torch.Tensor) -> torch.Tensor:
    """Pre-activations [seq, F] of layer l's transcoder / CLT latents from the residual r at its MLP input."""
    ae = mlp_dictionary(f.model, l)
    x = r if ae.read == "resid_mid" else frozen_ln(f.model, f"blocks.{l}.ln2", r, f.s2[l], affine=False)
    return ae.pre(x)


def tc_write(f, src: dict, l: int) -> torch.Tensor:
    """Layer l's MLP output [seq, d] in the frozen model: decoded latents + bias + error."""
    clt = f.model.autoencoders.clt
    if clt is None:
        ae = mlp_dictionary(f.model, l)
        return src[f"tc{l}"] @ ae.W_dec + ae.b_dec + src[f"tcerr{l}"]
    out = clt.b_dec[l] + src[f"tcerr{l}"]
    for s in clt_layers(f):
        if s <= l:
            out = out + src[f"tc{s}"] @ clt.W_dec[s][:, l - s]
    return out


def tc_read_grad(f, l: int, idx: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """[n, d]: the residual gradient at MLP l's input of latents `idx` read at positions `pos`."""
    ae = mlp_dictionary(f.model, l)
    w = ae.W_enc[:, idx].T
    return w if ae.read == "resid_mid" else centre(f.model, w) / f.s2[l][pos]


def tc_decoders(f, l: int) -> list:
    """[(source layer s, W [F, d])]: which latents write into MLP l's output, and through what."""
    clt = f.model.autoencoders.clt
    if clt is None:
        return [(l, mlp_dictionary(f.model, l).W_dec)]
    return [(s, clt.W_dec[s][:, l - s]) for s in clt_layers(f) if s <= l]


def sae_pre(f, l: int, z: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Pre-activations of layer l's attention SAE: z [H, seq, d_head] (head outputs before W_O)
    for a hook_z SAE, else the attention output `out` [seq, d]."""
    ae = f.model.autoencoders.saes[l]
    if ae.read == "z":
        return ae.pre(z.permute(1, 0, 2).reshape(z.shape[1], -1))
    return ae.pre(out)


def sae_z_grad(f, l: int, i: int) -> torch.Tensor:
    """[H, d_head]: the gradient of latent i's read with respect to each head's z at its position."""
    m = f.model
    ae = m.autoencoders.saes[l]
    W_O = m.W.W_O[l]
    if ae.read == "z":
        return ae.W_enc[:, i].reshape(W_O.shape[0], W_O.shape[1])
    return torch.einsum("hed,d->he", W_O, ae.W_enc[:, i])


def refuse_mlp_out_latent(model, node) -> None:
    """Latent routes (inputs, weights) read the residual stream; an MLP-output SAE's latent does not."""
    ae = mlp_dictionary(model, node.layer)
    if ae is not None and ae.read == "mlp_out":
        raise UserError(f"node {node}: its dictionary is {MLP_OUT_REFUSAL}")
