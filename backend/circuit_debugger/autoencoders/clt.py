"""Cross-layer transcoders (CLTs) spliced exactly: a latent read at layer s writes into every
MLP output l ≥ s.

Each layer's MLP output becomes Σ_{s≤l} acts_s·W_dec[s→l] + b_dec[l] + error_l, with error_l =
true MLP output − the reconstruction from the *clean* latents (before any latent
intervention), so outputs are unchanged and an intervention on a latent read at s changes all
of its later writes. Latent L{s}.T{i} is the latent read at layer s; L{l}.TERR is layer l's
error. In the per-node tables a latent's direct effect sums its writes into the MLP outputs
before the readout.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..nodes import ERROR_OF, MLP, TRANSCODER, TRANSCODER_ERR, NodeId, activation_hook, ln_normalized_hook
from .format import Autoencoder, AutoencoderLoadError
from .splice import latent_key
from ..shown_paths import shown

_READS = {"hook_resid_mid": "resid_mid", "ln2.hook_normalized": "ln2_normalized"}


class CrossLayerTranscoder:
    def __init__(self, name: str, source: str, layers: dict, W_dec: list, b_dec: torch.Tensor, hook_in: str,
                 hook_out: str):
        self.name, self.source = name, source
        self.layers = layers  # s -> Autoencoder view (its encoder; W_dec = the same-layer write)
        self.W_dec = W_dec  # s -> [F, n − s, d]
        self.b_dec = b_dec  # [n, d]
        self.hook_in, self.hook_out = hook_in, hook_out

    @classmethod
    def from_tensors(cls, name: str, folder: Path, enc: list, dec: list, hook_in: str, hook_out: str):
        n = len(enc)
        if hook_in not in _READS or hook_out not in ("hook_mlp_out", "mlp.hook_out"):
            raise AutoencoderLoadError(f"{folder}: CLTs must read hook_resid_mid or ln2.hook_normalized and write "
                                       f"hook_mlp_out; this one reads {hook_in!r} and writes {hook_out!r}")
        layers, b_dec = {}, []
        for l, e in enumerate(enc):
            p = folder / f"W_enc_{l}.safetensors"
            W = e[f"W_enc_{l}"].float()  # [F, d]
            F, d = W.shape
            if e[f"b_enc_{l}"].shape != (F,) or e[f"b_dec_{l}"].shape != (d,):
                raise AutoencoderLoadError(f"{p}: b_enc_{l} / b_dec_{l} do not fit W_enc_{l} {tuple(W.shape)}")
            if tuple(dec[l].shape) != (F, n - l, d):
                raise AutoencoderLoadError(f"{folder / f'W_dec_{l}.safetensors'}: W_dec_{l} has shape "
                                           f"{tuple(dec[l].shape)}, expected ({F}, {n - l}, {d})")
            th = e.get(f"threshold_{l}")
            ae = Autoencoder(f"{name}/L{l}", W.T.contiguous(), e[f"b_enc_{l}"].float(), dec[l][:, 0].contiguous(),
                             e[f"b_dec_{l}"].float(), f"blocks.{l}.{hook_in}", f"blocks.{l}.{hook_out}",
                             "jumprelu_ct" if th is not None else "standard", source=str(folder),
                             architecture="clt")
            if th is not None:
                ae.threshold = th.float().reshape(-1).expand(F).contiguous()
            ae.site, ae.read = "mlp", _READS[hook_in]
            layers[l] = ae
            b_dec.append(e[f"b_dec_{l}"].float())
        return cls(name, str(folder), layers, dec, torch.stack(b_dec), hook_in, hook_out)

    @property
    def d_sae(self) -> int:
        return self.layers[0].d_sae

    def place(self, model, where: str) -> None:
        s, aes = model.shape, model.autoencoders
        if len(self.layers) != s.n_layers or self.layers[0].W_enc.shape[0] != s.d_model:
            raise AutoencoderLoadError(f"{where}: a CLT of {len(self.layers)} layers × d_model "
                                       f"{self.layers[0].W_enc.shape[0]} does not fit this model "
                                       f"({s.n_layers} layers × {s.d_model})")
        if aes.transcoders or aes.clt is not None:
            raise AutoencoderLoadError(f"{where}: the MLP site already has dictionaries loaded")
        for ae in self.layers.values():
            ae.to(device=model.device, dtype=model.dtype)
        self.W_dec = [w.to(device=model.device, dtype=model.dtype) for w in self.W_dec]
        self.b_dec = self.b_dec.to(device=model.device, dtype=model.dtype)
        aes.clt = self

    def describe(self) -> dict:
        return {"name": self.name, "site": "mlp", "read": self.layers[0].read, "hook_name": self.hook_in,
                "hook_name_out": self.hook_out, "architecture": "cross-layer transcoder",
                "activation": self.layers[0].activation, "latents": self.d_sae, "layers": len(self.layers),
                "letter": "T", "source": shown(self.source)}

    def write(self, s: int, upto: int) -> torch.Tensor:
        """[F, d]: what latent read at s writes into the MLP outputs of layers s..upto−1 together."""
        k = max(0, upto - s)
        return self.W_dec[s][:, :k].sum(1) if k else torch.zeros_like(self.W_dec[s][:, 0])

    def groups(self, l: int, Group) -> list:
        return [Group(TRANSCODER, l, latent_key(TRANSCODER, l), self.W_dec[l][:, 0], self.b_dec[l], "mlp",
                      W_for=lambda n_mlp, l=l: self.write(l, n_mlp)),
                Group(TRANSCODER_ERR, l, latent_key(TRANSCODER_ERR, l), sublayer="mlp")]

    def splice_hooks(self, chosen, latent_ivs, apply_iv, store, grad) -> list:
        """Hooks splicing the chosen layers: each chosen layer's MLP output becomes the writes of
        the latents read at chosen layers s ≤ l + b_dec[l] + error (the table and interventions
        choose every layer; a graph mixing CLT layers with neuron layers chooses some)."""
        n = len(self.layers)
        chosen = sorted(set(chosen))
        clean, live = {}, {}
        hooks = []
        for l in chosen:
            ae = self.layers[l]
            ivs = [(iv, b) for iv, b in latent_ivs if iv.node.layer == l and iv.node.kind == TRANSCODER]
            errs = [(iv, b) for iv, b in latent_ivs if iv.node.layer == l and iv.node.kind == ERROR_OF[TRANSCODER]]

            def read(x, hook=None, l=l, ae=ae, ivs=ivs):
                acts = ae.encode(x.to(ae.W_enc.dtype)).detach()
                clean[l] = acts
                if grad:
                    acts = acts.clone().requires_grad_(True)
                for iv, b in ivs:
                    acts = apply_iv(acts, iv, b, latent_key(TRANSCODER, l))
                live[l] = acts
                return x

            def splice(out, hook=None, l=l, errs=errs):
                srcs = [s for s in chosen if s <= l]
                recon_clean = sum(clean[s] @ self.W_dec[s][:, l - s] for s in srcs) + self.b_dec[l]
                err = out - recon_clean.to(out.dtype)
                recon = sum(live[s] @ self.W_dec[s][:, l - s] for s in srcs) + self.b_dec[l]
                captured = err
                for iv, b in errs:
                    err = apply_iv(err, iv, b, latent_key(TRANSCODER_ERR, l))
                if store is not None:
                    store[latent_key(TRANSCODER, l)] = live[l]
                    store[latent_key(TRANSCODER_ERR, l)] = captured if not errs else err
                return recon.to(out.dtype) + err

            src = ln_normalized_hook(f"blocks.{l}.ln2") if ae.read == "ln2_normalized" else f"blocks.{l}.ln2.hook_in"
            hooks += [(src, read), (activation_hook(NodeId(MLP, l), n), splice)]
        return hooks
