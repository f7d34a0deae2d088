"""circuit-tracer's layouts: per-layer transcoder sets and cross-layer transcoders (CLTs).

Transcoder set: a `config.yaml` with `feature_input_hook` / `feature_output_hook` (relative to
`blocks.L.`, e.g. "ln2.hook_normalized" or "hook_resid_mid" and "hook_mlp_out" or
"mlp.hook_out") and `transcoders:` entries {layer, filepath}; each file holds W_enc, W_dec,
b_enc, b_dec and optionally a per-latent threshold ("threshold" or
"activation_function.threshold"; then the activation is circuit-tracer's JumpReLU x·[x > θ]).
Files are .safetensors (W_enc / W_dec as [d_transcoder, d_model], or transposed in older
sets: told apart by b_enc / b_dec sizes) or Gemma Scope .npz. `hf://ORG/REPO/PATH` file paths
are looked up in the local HuggingFace cache. A W_skip (skip transcoder) is refused.

CLT folder: `W_enc_{l}.safetensors` (W_enc_{l} [d_transcoder, d_model], b_enc_{l}, b_dec_{l},
optional threshold_{l}) and `W_dec_{l}.safetensors` (W_dec_{l} [d_transcoder, n_layers − l,
d_model]: latent read at l writes MLP outputs l..n−1), with an optional config.yaml naming the
hooks (default: reads hook_resid_mid, writes hook_mlp_out).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from .format import Autoencoder, AutoencoderLoadError, read_tensors

CONFIG = "config.yaml"


def _yaml(path: Path) -> dict:
    import yaml

    try:
        cfg = yaml.safe_load(path.read_text())
    except Exception as e:
        raise AutoencoderLoadError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(cfg, dict):
        raise AutoencoderLoadError(f"{path}: not a YAML mapping")
    return cfg


def is_transcoder_set(folder: Path) -> bool:
    if not (folder / CONFIG).is_file():
        return False
    try:
        return isinstance(_yaml(folder / CONFIG).get("transcoders"), list)
    except AutoencoderLoadError:
        return True  # let the loader report the broken file


def is_clt(folder: Path) -> bool:
    return (folder / "W_enc_0.safetensors").is_file()


def _file(folder: Path, filepath: str, what: str) -> Path:
    if filepath.startswith("hf://"):
        from .releases import _cached

        body = filepath[len("hf://"):].split("?")[0]
        parts = body.split("/")
        if len(parts) < 3:
            raise AutoencoderLoadError(f"{what}: cannot read hf:// path {filepath!r}")
        return _cached("/".join(parts[:2]), "/".join(parts[2:]), what)
    p = Path(filepath).expanduser()
    return p if p.is_absolute() else folder / p


def _orient(W: torch.Tensor, rows: int, cols: int, name: str, where: Path) -> torch.Tensor:
    """W as [rows, cols], whichever way the file stored it (square: as documented)."""
    if W.dim() == 2 and tuple(W.shape) == (rows, cols):
        return W
    if W.dim() == 2 and tuple(W.shape) == (cols, rows):
        return W.T.contiguous()
    raise AutoencoderLoadError(f"{where}: {name} has shape {tuple(W.shape)}, expected ({rows}, {cols}) or transposed")


def transcoder_from_file(path: Path, layer: int, hook_in: str, hook_out: str, name: str) -> Autoencoder:
    w = read_tensors(path)
    if "W_skip" in w:
        raise AutoencoderLoadError(f"{path}: has W_skip (a skip transcoder); its skip term is not a latent, so it "
                                   "cannot be spliced exactly as one")
    missing = [k for k in ("W_enc", "b_enc", "W_dec", "b_dec") if k not in w]
    if missing:
        raise AutoencoderLoadError(f"{path}: missing tensors {missing}")
    d_tc, d = w["b_enc"].numel(), w["b_dec"].numel()
    # Gemma Scope .npz stores W_enc [d_model, d_tc]; circuit-tracer safetensors [d_tc, d_model]
    W_enc = _orient(w["W_enc"].float(), d, d_tc, "W_enc", path) if path.suffix == ".npz" else \
        _orient(w["W_enc"].float(), d_tc, d, "W_enc", path).T.contiguous()
    W_dec = _orient(w["W_dec"].float(), d_tc, d, "W_dec", path)
    th = w.get("threshold", w.get("activation_function.threshold"))
    ae = Autoencoder(name, W_enc, w["b_enc"].float().reshape(-1), W_dec, w["b_dec"].float().reshape(-1),
                     f"blocks.{layer}.{hook_in}", f"blocks.{layer}.{hook_out}",
                     "jumprelu_ct" if th is not None else "standard", source=str(path),
                     architecture="circuit-tracer " + ("jumprelu" if th is not None else "relu"))
    if th is not None:
        ae.threshold = th.float().reshape(-1).expand(d_tc).contiguous() if th.numel() in (1, d_tc) else None
        if ae.threshold is None:
            raise AutoencoderLoadError(f"{path}: threshold has {th.numel()} values, expected {d_tc}")
    return ae


def transcoder_set(folder: Path) -> list[tuple[str, Callable]]:
    cfg_path = folder / CONFIG
    cfg = _yaml(cfg_path)
    hook_in, hook_out = cfg.get("feature_input_hook"), cfg.get("feature_output_hook")
    if not isinstance(hook_in, str) or not isinstance(hook_out, str):
        return [(str(cfg_path), _raise(f"{cfg_path}: needs feature_input_hook and feature_output_hook"))]
    out = []
    for i, t in enumerate(cfg["transcoders"]):
        where = f"{cfg_path}: transcoders[{i}]"
        if not isinstance(t, dict) or not isinstance(t.get("layer"), int) or not isinstance(t.get("filepath"), str):
            out.append((where, _raise(f"{where}: needs an integer 'layer' and a 'filepath'")))
            continue
        name = str(t.get("id") or f"{folder.name}/L{t['layer']}")
        out.append((where, lambda t=t, name=name, where=where: transcoder_from_file(
            _file(folder, t["filepath"], where), t["layer"], hook_in, hook_out, name)))
    return out


def _raise(msg: str) -> Callable:
    def fail():
        raise AutoencoderLoadError(msg)
    return fail


def load_clt(folder: Path):
    from .clt import CrossLayerTranscoder

    hooks = _yaml(folder / CONFIG) if (folder / CONFIG).is_file() else {}
    hook_in = hooks.get("feature_input_hook", "hook_resid_mid")
    hook_out = hooks.get("feature_output_hook", "hook_mlp_out")
    enc, dec = [], []
    n = 0
    while (folder / f"W_enc_{n}.safetensors").is_file():
        n += 1
    for l in range(n):
        e = read_tensors(folder / f"W_enc_{l}.safetensors")
        p = folder / f"W_enc_{l}.safetensors"
        missing = [k for k in (f"W_enc_{l}", f"b_enc_{l}", f"b_dec_{l}") if k not in e]
        if missing:
            raise AutoencoderLoadError(f"{p}: missing tensors {missing}")
        if f"W_skip_{l}" in e or "W_skip" in e:
            raise AutoencoderLoadError(f"{p}: has a skip connection, which is not a latent; refused")
        enc.append(e)
        d = read_tensors(folder / f"W_dec_{l}.safetensors")
        if f"W_dec_{l}" not in d:
            raise AutoencoderLoadError(f"{folder / f'W_dec_{l}.safetensors'}: missing tensor W_dec_{l}")
        dec.append(d[f"W_dec_{l}"].float())
    return CrossLayerTranscoder.from_tensors(folder.name, folder, enc, dec, hook_in, hook_out)
