"""The embedded models ('default', a GPT-2; 'llama', a Llama-family model) and what ships with
each by name: its dictionaries in `autoencoders/NAME/` and its explanations in
`explanations/NAME.sqlite` (both loaded with the model when present), and, for the offline
tools only, the corpus generator it was trained on.

One table, so that adding an embedded model means adding one line here, not an `if name ==
"default"` in the loader, the server and each offline tool.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

MODELS_DIR = Path(__file__).parent / "models"
REPO = Path(__file__).resolve().parents[2]
EMBEDDED = {"default": MODELS_DIR / "default", "llama": MODELS_DIR / "llama"}


def embedded_name(model) -> Optional[str]:
    """'default' / 'llama' when `model` was loaded from an embedded model's folder, else None."""
    try:
        src = Path(str(model.source)).resolve()
    except (OSError, RuntimeError):
        return None
    for name, folder in EMBEDDED.items():
        if src == folder.resolve():
            return name
    return None


def shipped_autoencoders(name: str) -> Path:
    """The dictionaries folder loaded with embedded model `name` ($CD_<NAME>_AUTOENCODERS overrides)."""
    return Path(os.environ.get(f"CD_{name.upper()}_AUTOENCODERS", REPO / "autoencoders" / name))


def shipped_explanations(name: str) -> Path:
    """The explanations database served for embedded model `name` ($CD_<NAME>_EXPLANATIONS overrides)."""
    return Path(os.environ.get(f"CD_{name.upper()}_EXPLANATIONS", REPO / "explanations" / f"{name}.sqlite"))


def corpus_version(name: str) -> str:
    """The corpus generator version the model was trained on (its training.json; the first
    default model predates that file and used v1)."""
    info = EMBEDDED[name] / "training.json"
    return json.loads(info.read_text()).get("corpus", "v1") if info.exists() else "v1"


def corpus_module(name: str):
    """The corpus generator module (`sample(rng, pairs)`, `name_pairs()`) of embedded model `name`.
    Offline tools only (training and mining dictionaries and explanations)."""
    from .default_model.train import corpus_module as by_version

    return by_version(corpus_version(name))


__all__ = ["EMBEDDED", "embedded_name", "shipped_autoencoders", "shipped_explanations", "corpus_version",
           "corpus_module"]
