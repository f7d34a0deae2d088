"""SAEs and transcoders in the SAELens on-disk layout (and the in-memory form of every format).

A SAELens folder holds `cfg.json` and `sae_weights.safetensors` (W_enc [d_in, d_sae], b_enc
[d_sae], W_dec [d_sae, d_out], b_dec [d_out], and `threshold` [d_sae] for JumpReLU).
`cfg.json` names `hook_name` (the input hook) and, for a transcoder, `hook_name_out` and
`d_out`. Architectures: "standard"/"relu" (ReLU), "topk" (with `k` or `activation_fn_kwargs.k`)
and "jumprelu" (ReLU gated by a per-latent threshold: Gemma Scope). A standard or JumpReLU
SAE subtracts b_dec from its input when `apply_b_dec_to_input` is true. Inputs normalised by
a constant factor (`normalize_activations` = "expected_average_only_in" with a known
`norm_scaling_factor`) are folded into the weights exactly; per-token rescaling
("constant_norm_rescale", "layer_norm") is refused, because it is not linear.
Weights load only through safetensors (or numpy's .npz with pickles disallowed).

Where a dictionary sits in the model (its *site*: MLP, attention or residual stream) is
decided when it is placed onto a model (`autoencoders/__init__.py`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from ..shown_paths import shown

CFG, WEIGHTS = "cfg.json", "sae_weights.safetensors"
_LAYER = re.compile(r"blocks\.(\d+)\.")
ACTIVATIONS = ("standard", "topk", "jumprelu", "jumprelu_ct")


class AutoencoderLoadError(RuntimeError):
    """A missing, truncated, malformed or unspliceable dictionary; the message names the file."""


@dataclass
class Autoencoder:
    name: str
    W_enc: torch.Tensor  # [d_in, d_sae]
    b_enc: torch.Tensor  # [d_sae]
    W_dec: torch.Tensor  # [d_sae, d_out]
    b_dec: torch.Tensor  # [d_out]
    hook_name: str
    hook_name_out: Optional[str] = None  # None: an SAE (reads and writes hook_name)
    activation: str = "standard"  # one of ACTIVATIONS ("jumprelu_ct": circuit-tracer's x·[x > θ])
    k: Optional[int] = None
    apply_b_dec_to_input: bool = False
    extra: Optional[dict] = None  # cfg fields we keep but do not interpret
    threshold: Optional[torch.Tensor] = None  # [d_sae], JumpReLU only
    b_in: Optional[torch.Tensor] = None  # subtracted from the input when set (overrides apply_b_dec_to_input)
    site: str = ""  # set by place(): 'mlp' | 'attn' | 'resid'
    read: str = ""  # set by place(): what the encoder reads ('ln2_normalized', 'resid_mid', 'mlp_out', 'attn_out', 'z', 'resid')
    source: str = ""  # where it was loaded from (a folder, a release id)
    architecture: str = ""  # as declared by the source format

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

    def input_shift(self) -> Optional[torch.Tensor]:
        """What the encoder subtracts from its input first (None: nothing)."""
        if self.b_in is not None:
            return self.b_in
        if self.apply_b_dec_to_input and not self.is_transcoder:
            return self.b_dec
        return None

    def pre(self, x: torch.Tensor) -> torch.Tensor:
        shift = self.input_shift()
        if shift is not None:
            x = x - shift
        flat = torch.addmm(self.b_enc, x.reshape(-1, x.shape[-1]), self.W_enc)  # one fused matmul + bias
        return flat.reshape(*x.shape[:-1], flat.shape[-1])

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        if self.activation == "jumprelu":  # SAELens / Gemma Scope: ReLU, then the per-latent gate
            return torch.relu(pre) * (pre > self.threshold)
        if self.activation == "jumprelu_ct":  # circuit-tracer: x·[x > θ] (no ReLU)
            return pre * (pre > self.threshold)
        acts = torch.relu(pre)
        if self.activation == "topk":
            top = acts.topk(self.k, dim=-1, sorted=False)
            acts = torch.zeros_like(acts).scatter(-1, top.indices, top.values)
        return acts

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.pre(x))

    def decode(self, acts: torch.Tensor) -> torch.Tensor:
        return acts @ self.W_dec + self.b_dec

    def to(self, device=None, dtype=None) -> "Autoencoder":
        for f in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold", "b_in"):
            if getattr(self, f) is not None:
                setattr(self, f, getattr(self, f).to(device=device, dtype=dtype))
        return self

    def describe(self) -> dict:
        """What /api/models says about this dictionary."""
        return {"name": self.name, "site": self.site, "read": self.read, "hook_name": self.hook_name,
                "hook_name_out": self.hook_name_out, "architecture": self.architecture or self.activation,
                "activation": self.activation, "latents": self.d_sae, "source": shown(self.source)}

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

    if ae.activation not in ("standard", "topk") or ae.b_in is not None:
        raise AutoencoderLoadError(f"{ae.name}: only standard and topk dictionaries without an input shift are saved")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CFG).write_text(json.dumps(ae.config(), indent=1))
    save_file({k: getattr(ae, k).detach().contiguous().float() for k in ("W_enc", "b_enc", "W_dec", "b_dec")},
              str(folder / WEIGHTS))


def read_tensors(path: Path) -> dict:
    """Every tensor of a .safetensors file, or of a numpy .npz with pickles disallowed."""
    if not path.exists():
        raise AutoencoderLoadError(f"{path}: file not found")
    try:
        if path.suffix == ".npz":
            import numpy as np

            with np.load(str(path), allow_pickle=False) as z:
                return {k: torch.from_numpy(z[k].copy()) for k in z.files}
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise AutoencoderLoadError(f"{path}: unreadable {path.suffix.lstrip('.')} file ({e})") from None


def read_cfg(path: Path) -> dict:
    try:
        cfg = json.loads(path.read_text())
    except FileNotFoundError:
        raise AutoencoderLoadError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AutoencoderLoadError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(cfg, dict):
        raise AutoencoderLoadError(f"{path}: not a JSON object")
    return cfg


def _activation(arch: str, cfg: dict, where: Path) -> str:
    if arch in ("standard", "relu", "transcoder"):
        return "standard"
    if arch in ("topk", "topk_transcoder"):
        return "topk"
    if arch in ("jumprelu", "jumprelu_transcoder", "jumprelu_skip_transcoder"):
        if "skip" in arch:
            raise AutoencoderLoadError(f"{where}: skip transcoders ({arch}) are not supported: the skip term is not a latent")
        return "jumprelu"
    raise AutoencoderLoadError(f"{where}: unsupported architecture {arch!r} (standard, relu, topk or jumprelu; "
                               "gated and batchtopk-at-training SAEs are not spliced)")


def from_cfg(cfg: dict, w: dict, name: str, cfg_path: Path, w_path: Path, source: str = "") -> Autoencoder:
    """An Autoencoder from a SAELens cfg dict and its tensors (shared by folders and releases)."""
    missing = [k for k in ("W_enc", "b_enc", "W_dec", "b_dec") if k not in w]
    if missing:
        raise AutoencoderLoadError(f"{w_path}: missing tensors {missing}")
    if "W_skip" in w:
        raise AutoencoderLoadError(f"{w_path}: has W_skip (a skip transcoder); its skip term is not a latent, so "
                                   "it cannot be spliced exactly as one")
    arch = str(cfg.get("architecture") or "standard").lower()
    activation = _activation(arch, cfg, cfg_path)
    k = cfg.get("k") or (cfg.get("activation_fn_kwargs") or {}).get("k")
    if activation == "topk" and not k:
        raise AutoencoderLoadError(f"{cfg_path}: a topk autoencoder needs 'k'")
    if "hook_name" not in cfg:
        raise AutoencoderLoadError(f"{cfg_path}: no 'hook_name'")
    if w["W_enc"].dim() != 2 or w["W_dec"].dim() != 2:
        raise AutoencoderLoadError(f"{w_path}: W_enc and W_dec must be matrices")
    d_in, d_sae = w["W_enc"].shape
    if w["W_dec"].shape[0] != d_sae or w["b_enc"].shape != (d_sae,) or w["b_dec"].shape != (w["W_dec"].shape[1],):
        raise AutoencoderLoadError(f"{w_path}: tensor shapes do not fit together "
                                   f"({ {k: tuple(v.shape) for k, v in w.items()} })")
    threshold = None
    if activation == "jumprelu":
        if "threshold" not in w:
            raise AutoencoderLoadError(f"{w_path}: a jumprelu autoencoder needs a 'threshold' tensor")
        threshold = w["threshold"].float().reshape(-1)
        if threshold.shape != (d_sae,):
            raise AutoencoderLoadError(f"{w_path}: threshold has shape {tuple(w['threshold'].shape)}, expected ({d_sae},)")
    is_tc = bool(cfg.get("hook_name_out")) and cfg.get("hook_name_out") != cfg["hook_name"]
    apply = bool(cfg.get("apply_b_dec_to_input", activation != "topk" and not is_tc))
    W_enc, b_enc, W_dec, b_dec = (w[k].float() for k in ("W_enc", "b_enc", "W_dec", "b_dec"))
    norm = cfg.get("normalize_activations") or "none"
    if norm == "expected_average_only_in":
        s = cfg.get("norm_scaling_factor")
        if not isinstance(s, (int, float)) or s <= 0:
            raise AutoencoderLoadError(f"{cfg_path}: normalize_activations=expected_average_only_in needs a positive "
                                       "'norm_scaling_factor' (the constant the inputs were scaled by)")
        # encode(s·x) then unscale the output: fold s into the encoder and 1/s into the decoder
        W_enc, W_dec, b_dec = W_enc * s, W_dec / s, b_dec / s
    elif norm not in ("none",):
        raise AutoencoderLoadError(f"{cfg_path}: normalize_activations={norm!r} rescales every input by its own "
                                   "norm, which is not linear, so the latents cannot be spliced exactly")
    known = {"architecture", "d_in", "d_sae", "hook_name", "hook_layer", "hook_name_out", "hook_layer_out", "d_out",
             "k", "activation_fn_kwargs", "apply_b_dec_to_input", "dtype", "normalize_activations",
             "norm_scaling_factor"}
    ae = Autoencoder(name, W_enc, b_enc, W_dec, b_dec, cfg["hook_name"], cfg.get("hook_name_out") if is_tc else None,
                     activation, int(k) if k else None, apply, {k_: v for k_, v in cfg.items() if k_ not in known},
                     threshold=threshold, source=source, architecture=arch)
    ae.layer  # validates the hook name
    return ae


def load(folder: Path, name: Optional[str] = None, cfg_overrides: Optional[dict] = None,
         source: str = "") -> Autoencoder:
    """A SAELens folder: cfg.json + sae_weights.safetensors (or a Gemma Scope params.npz with a
    cfg given by the caller in `cfg_overrides`)."""
    folder = Path(folder)
    cfg_path = folder / CFG
    cfg = read_cfg(cfg_path) if cfg_path.exists() or not cfg_overrides else {}
    cfg.update(cfg_overrides or {})
    w_path = folder / WEIGHTS
    if not w_path.exists() and (folder / "params.npz").exists():
        w_path = folder / "params.npz"
    w = read_tensors(w_path)
    return from_cfg(cfg, w, name or folder.name, cfg_path, w_path, source or str(folder))


def is_saelens_folder(folder: Path) -> bool:
    return (folder / CFG).is_file() and ((folder / WEIGHTS).exists() or (folder / "params.npz").exists())
