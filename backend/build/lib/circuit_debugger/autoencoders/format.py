"""SAEs and transcoders in the SAELens on-disk layout.

A folder holds `cfg.json` and `sae_weights.safetensors` (W_enc [d_in, d_sae], b_enc [d_sae],
W_dec [d_sae, d_out], b_dec [d_out]). `cfg.json` names `hook_name` (the input hook) and, for a
transcoder, `hook_name_out` and `d_out`. Activations: "standard" (ReLU) or "topk" (with `k`,
or `activation_fn_kwargs.k`). A standard SAE subtracts b_dec from its input when
`apply_b_dec_to_input` is true (SAELens' default). Weights load only through safetensors.

Our transcoders read `blocks.{l}.ln2.hook_normalized` (the MLP input after centring and
scaling, before the LN gain and bias, which are folded into the encoder) and write
`blocks.{l}.hook_mlp_out`; our SAEs read and write `blocks.{l}.hook_attn_out`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

CFG, WEIGHTS = "cfg.json", "sae_weights.safetensors"
_LAYER = re.compile(r"blocks\.(\d+)\.")


class AutoencoderLoadError(RuntimeError):
    """A missing, truncated or malformed autoencoder folder; the message names the file."""


@dataclass
class Autoencoder:
    name: str
    W_enc: torch.Tensor  # [d_in, d_sae]
    b_enc: torch.Tensor  # [d_sae]
    W_dec: torch.Tensor  # [d_sae, d_out]
    b_dec: torch.Tensor  # [d_out]
    hook_name: str
    hook_name_out: Optional[str] = None  # None: an SAE (reads and writes hook_name)
    activation: str = "standard"
    k: Optional[int] = None
    apply_b_dec_to_input: bool = False
    extra: Optional[dict] = None  # cfg fields we keep but do not interpret

    @property
    def is_transcoder(self) -> bool:
        return self.hook_name_out is not None and self.hook_name_out != self.hook_name

    @property
    def layer(self) -> int:
        m = _LAYER.search(self.hook_name)
        if not m:
            raise AutoencoderLoadError(f"{self.name}: cannot tell the layer of hook {self.hook_name!r}")
        return int(m.group(1))

    @property
    def d_sae(self) -> int:
        return self.W_enc.shape[1]

    @property
    def out_hook(self) -> str:
        return self.hook_name_out or self.hook_name

    def pre(self, x: torch.Tensor) -> torch.Tensor:
        if self.apply_b_dec_to_input and not self.is_transcoder:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        acts = torch.relu(pre)
        if self.activation == "topk":
            top = acts.topk(self.k, dim=-1)
            acts = torch.zeros_like(acts).scatter(-1, top.indices, top.values)
        return acts

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.pre(x))

    def decode(self, acts: torch.Tensor) -> torch.Tensor:
        return acts @ self.W_dec + self.b_dec

    def to(self, device=None, dtype=None) -> "Autoencoder":
        for f in ("W_enc", "b_enc", "W_dec", "b_dec"):
            setattr(self, f, getattr(self, f).to(device=device, dtype=dtype))
        return self

    def config(self) -> dict:
        cfg = dict(self.extra or {})
        cfg.update({"architecture": self.activation, "d_in": int(self.W_enc.shape[0]), "d_sae": self.d_sae,
                    "hook_name": self.hook_name, "hook_layer": self.layer,
                    "apply_b_dec_to_input": self.apply_b_dec_to_input, "dtype": "float32",
                    "normalize_activations": "none"})
        if self.activation == "topk":
            cfg["k"] = self.k
            cfg["activation_fn_kwargs"] = {"k": self.k}
        if self.is_transcoder:
            cfg.update({"hook_name_out": self.hook_name_out, "hook_layer_out": self.layer,
                        "d_out": int(self.W_dec.shape[1])})
        return cfg


def save(ae: Autoencoder, folder: Path) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / CFG).write_text(json.dumps(ae.config(), indent=1))
    save_file({k: getattr(ae, k).detach().contiguous().float() for k in ("W_enc", "b_enc", "W_dec", "b_dec")},
              str(folder / WEIGHTS))


def load(folder: Path, name: Optional[str] = None) -> Autoencoder:
    from safetensors import safe_open

    folder = Path(folder)
    cfg_path, w_path = folder / CFG, folder / WEIGHTS
    try:
        cfg = json.loads(cfg_path.read_text())
    except FileNotFoundError:
        raise AutoencoderLoadError(f"{cfg_path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AutoencoderLoadError(f"{cfg_path}: not valid JSON ({e})") from None
    if not w_path.exists():
        raise AutoencoderLoadError(f"{w_path}: file not found")
    try:
        with safe_open(str(w_path), framework="pt") as f:
            w = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise AutoencoderLoadError(f"{w_path}: unreadable safetensors file ({e})") from None
    missing = [k for k in ("W_enc", "b_enc", "W_dec", "b_dec") if k not in w]
    if missing:
        raise AutoencoderLoadError(f"{w_path}: missing tensors {missing}")
    arch = str(cfg.get("architecture", "standard")).lower()
    activation = "topk" if "topk" in arch else "standard"
    if arch not in ("standard", "topk", "transcoder", "topk_transcoder", "relu"):
        raise AutoencoderLoadError(f"{cfg_path}: unsupported architecture {arch!r} (standard or topk)")
    k = cfg.get("k") or (cfg.get("activation_fn_kwargs") or {}).get("k")
    if activation == "topk" and not k:
        raise AutoencoderLoadError(f"{cfg_path}: a topk autoencoder needs 'k'")
    if "hook_name" not in cfg:
        raise AutoencoderLoadError(f"{cfg_path}: no 'hook_name'")
    d_in, d_sae = w["W_enc"].shape
    if w["W_dec"].shape[0] != d_sae or w["b_enc"].shape != (d_sae,) or w["b_dec"].shape != (w["W_dec"].shape[1],):
        raise AutoencoderLoadError(f"{w_path}: tensor shapes do not fit together "
                                   f"({ {k: tuple(v.shape) for k, v in w.items()} })")
    known = {"architecture", "d_in", "d_sae", "hook_name", "hook_layer", "hook_name_out", "hook_layer_out", "d_out",
             "k", "activation_fn_kwargs", "apply_b_dec_to_input", "dtype", "normalize_activations"}
    ae = Autoencoder(name or folder.name, w["W_enc"].float(), w["b_enc"].float(), w["W_dec"].float(),
                     w["b_dec"].float(), cfg["hook_name"], cfg.get("hook_name_out"), activation,
                     int(k) if k else None, bool(cfg.get("apply_b_dec_to_input", activation == "standard"
                                                          and not cfg.get("hook_name_out"))),
                     {k_: v for k_, v in cfg.items() if k_ not in known})
    ae.layer  # validates the hook name
    return ae
