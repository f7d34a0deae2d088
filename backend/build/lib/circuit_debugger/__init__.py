"""Circuit Debugger: ask a transformer why it said A and not B, intervene live, trace upstream.

Importing this package loads nothing heavy; `load_model` and `Debugger` import torch and
TransformerLens when first used.
"""

__version__ = "0.1.0"


def __getattr__(name):
    if name == "Debugger":
        from .engine import Debugger
        return Debugger
    if name == "load_model":
        from .loading import load_model
        return load_model
    if name == "Intervention":
        from .interventions import Intervention
        return Intervention
    raise AttributeError(name)
