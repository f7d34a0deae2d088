"""Where a dictionary sits in a model: its site (MLP, attention, residual stream), what its
encoder reads, and the rewriting that makes its latents exact nodes of our decomposition.

- MLP site (node letter T): transcoders reading the MLP input (`ln2.hook_normalized`; the LN
  output `ln2.hook_out` / `mlp.hook_in`, whose gain and bias are folded into the encoder; or the
  raw `hook_resid_mid`) and writing `hook_mlp_out`; and SAEs reading and writing `hook_mlp_out`.
- attention site (letter S): SAEs on `hook_attn_out`, and SAEs on the concatenated head
  outputs `attn.hook_z` (d_in = n_heads·d_head): their decoder is composed with W_O (and b_O
  added to b_dec) so they write the attention output exactly as "splice at hook_z" would.
- residual site (letter R): SAEs on `hook_resid_pre` (layer l) or `hook_resid_post` (= the
  residual entering layer l+1; the final one is layer n_layers).

Refused, naming the reason: `hook_resid_mid` SAEs (on TransformerBridge that hook aliases the
MLP input, so a splice there would not change the residual stream), anything whose sizes do
not match the model, and hooks we cannot splice.
"""

from __future__ import annotations

import re

from .format import Autoencoder, AutoencoderLoadError

_HOOK = re.compile(r"^blocks\.(\d+)\.(.+)$")
TC_INPUTS = {"ln2.hook_normalized": "ln2_normalized", "ln2.hook_out": "ln2_out", "mlp.hook_in": "ln2_out",
             "hook_resid_mid": "resid_mid"}
MLP_OUTPUTS = ("hook_mlp_out", "mlp.hook_out")


def _split(hook: str, where: str) -> tuple[int, str]:
    m = _HOOK.match(hook or "")
    if not m:
        raise AutoencoderLoadError(f"{where}: cannot place hook {hook!r} (expected blocks.L.<hook>)")
    return int(m.group(1)), m.group(2)


def resolve(model, ae: Autoencoder, where: str) -> tuple[str, int]:
    """Set ae.site / ae.read (rewriting weights where needed); returns (site, layer)."""
    s = model.shape
    layer, rest = _split(ae.hook_name, where)
    if layer >= s.n_layers:
        raise AutoencoderLoadError(f"{where}: layer {layer} does not exist in this model (it has {s.n_layers})")
    if ae.is_transcoder:
        l_out, out = _split(ae.hook_name_out, where)
        if rest not in TC_INPUTS or out not in MLP_OUTPUTS or l_out != layer:
            raise AutoencoderLoadError(
                f"{where}: transcoders must read the MLP input of layer L (blocks.L.ln2.hook_normalized, "
                f"ln2.hook_out, mlp.hook_in or hook_resid_mid) and write blocks.L.hook_mlp_out; this one reads "
                f"{ae.hook_name!r} and writes {ae.hook_name_out!r}")
        _check_dims(ae, s.d_model, s.d_model, where)
        read = TC_INPUTS[rest]
        if read == "ln2_out":
            _fold_ln(model, ae, layer)
            read = "ln2_normalized"
        ae.site, ae.read = "mlp", read
        return "mlp", layer
    if rest == "hook_attn_out":
        _check_dims(ae, s.d_model, s.d_model, where)
        ae.site, ae.read = "attn", "attn_out"
        return "attn", layer
    if rest == "attn.hook_z":
        _check_dims(ae, s.n_heads * s.d_head, s.n_heads * s.d_head, where)
        _compose_with_W_O(model, ae, layer)
        ae.site, ae.read = "attn", "z"
        return "attn", layer
    if rest in MLP_OUTPUTS:
        _check_dims(ae, s.d_model, s.d_model, where)
        ae.site, ae.read = "mlp", "mlp_out"
        return "mlp", layer
    if rest in ("hook_resid_pre", "hook_resid_post"):
        _check_dims(ae, s.d_model, s.d_model, where)
        ae.site, ae.read = "resid", "resid"
        return "resid", layer + (rest == "hook_resid_post")
    if rest == "hook_resid_mid":
        raise AutoencoderLoadError(f"{where}: SAEs on hook_resid_mid are refused: on TransformerBridge that hook "
                                   "aliases the MLP input, so a splice there would not change the residual stream")
    raise AutoencoderLoadError(f"{where}: cannot splice an SAE on {ae.hook_name!r} (supported: hook_resid_pre/post, "
                               "hook_attn_out, attn.hook_z, hook_mlp_out; transcoders ln2 input -> hook_mlp_out)")


def _check_dims(ae: Autoencoder, d_in: int, d_out: int, where: str) -> None:
    if ae.W_enc.shape[0] != d_in or ae.W_dec.shape[1] != d_out:
        raise AutoencoderLoadError(f"{where}: d_in/d_out {ae.W_enc.shape[0]}/{ae.W_dec.shape[1]} do not match the "
                                   f"model's {d_in}/{d_out} at {ae.hook_name}")


def _fold_ln(model, ae: Autoencoder, layer: int) -> None:
    """x_out = x_norm * w + b: read x_norm with the gain and bias folded into the encoder."""
    ln = f"blocks.{layer}.ln2"
    if ln in model.W.ln:
        w, b = (t.to(ae.W_enc) if t is not None else None for t in model.W.ln[ln])
        ae.b_enc = ae.b_enc + (b @ ae.W_enc if b is not None else 0)
        if ae.b_in is not None:  # (x·w + b − s)·W = x·(w⊙W) + (b − s)·W
            raise AutoencoderLoadError(f"{ae.name}: cannot fold a layer norm into an encoder with an input shift")
        ae.W_enc = w[:, None] * ae.W_enc
    ae.hook_name = f"blocks.{layer}.ln2.hook_normalized"


def _compose_with_W_O(model, ae: Autoencoder, layer: int) -> None:
    """A hook_z SAE's reconstruction z_hat goes through W_O: attn_out = z_hat·W_O + b_O. Store
    that composed decoder, keeping the z-space b_dec as the encoder's input shift."""
    W_O, b_O = model.W.W_O[layer].to(ae.W_dec), model.W.b_O[layer].to(ae.W_dec)  # [H, dh, d], [d]
    H, dh, d = W_O.shape
    flat = W_O.reshape(H * dh, d)
    shift = ae.input_shift()
    ae.b_in = shift.clone() if shift is not None else None
    ae.apply_b_dec_to_input = False
    ae.W_dec = ae.W_dec @ flat
    ae.b_dec = ae.b_dec @ flat + b_O

