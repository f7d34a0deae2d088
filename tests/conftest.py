import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))
sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402

torch.set_num_threads(1)

pytest_plugins = ["storage_fixtures"]  # a real PostgreSQL server for the storage tests


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    from helpers import build_gpt2_dir

    return build_gpt2_dir(tmp_path_factory.mktemp("tiny") / "tiny-gpt2")


@pytest.fixture(scope="session")
def tiny(tiny_dir):
    from circuit_debugger.loading import load_model

    return load_model(str(tiny_dir), name="tiny")


@pytest.fixture(scope="session")
def dbg(tiny):
    from circuit_debugger.engine import Debugger

    return Debugger([tiny])


@pytest.fixture(scope="session")
def hf_model(tiny_dir):
    """An independent HuggingFace copy of the same weights (the bridge mutates the one it wraps)."""
    from transformers import GPT2LMHeadModel

    return GPT2LMHeadModel.from_pretrained(tiny_dir).eval()
