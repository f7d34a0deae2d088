"""Corpora held by the `datasets` library, read offline: `hf:ORG/NAME` from its Arrow cache (in
the layout a hub download leaves, written here by the library's own builder in a temporary
HF_HOME) and `save_to_disk` folders. They give the same documents, windows, mined statistics
and trained weights as the same text in a JSONL file."""

import json
import os

import pytest
import torch

datasets = pytest.importorskip("datasets")

from helpers import CORPUS  # noqa: E402

from circuit_debugger.explanations.build import CorpusSpec, corpus, valid_of  # noqa: E402
from circuit_debugger.explanations.corpus import CorpusError, documents, windows  # noqa: E402
from circuit_debugger.explanations.mine import Config, mine  # noqa: E402

DOCS = [f"{i}: {t}" for i, t in enumerate(CORPUS * 4)]
OTHER = ["held elsewhere: this is the test split"]


@pytest.fixture
def hf_home(tmp_path, monkeypatch):
    """A temporary HF_HOME whose `datasets` cache holds someone/stories (train + test splits),
    prepared by the library's JSON builder into the hub-download layout
    ORG___NAME/CONFIG/VERSION/HASH/NAME-SPLIT.arrow; the process is offline."""
    from datasets.data_files import DataFilesDict
    from datasets.packaged_modules.json.json import Json

    src = tmp_path / "src"
    src.mkdir()
    (src / "train.jsonl").write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(DOCS)))
    (src / "test.jsonl").write_text("".join(json.dumps({"id": 0, "text": t}) + "\n" for t in OTHER))
    home = tmp_path / "hf"
    files = DataFilesDict.from_patterns({"train": ["train.jsonl"], "test": ["test.jsonl"]}, base_path=str(src))
    b = Json(cache_dir=str(tmp_path / "build"), dataset_name="stories", config_name="default", data_files=files)
    b.download_and_prepare(output_dir=str(home / "datasets" / "someone___stories" / "default" / "0.0.0" / "0123abc"))
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_DATASETS_CACHE", raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    return {"home": home, "jsonl": src / "train.jsonl"}


def test_the_datasets_arrow_cache_is_a_corpus(hf_home, tiny):
    assert list(documents("hf:someone/stories")) == DOCS  # the train split, in order
    # the layout is the library's own: load_dataset, offline, finds the same rows there
    from unittest import mock

    with mock.patch.object(datasets.config, "HF_HUB_OFFLINE", True):
        ds = datasets.load_dataset("someone/stories", split="train", cache_dir=str(hf_home["home"] / "datasets"))
    assert ds["text"] == DOCS
    tok = tiny.codec.tokenizer
    a = windows("hf:someone/stories", tok, 400, 16, seed=2)
    assert torch.equal(a, windows(str(hf_home["jsonl"]), tok, 400, 16, seed=2))
    assert torch.equal(a, windows("hf:someone/stories", tok, 400, 16, seed=2))  # deterministic for a seed
    with pytest.raises(CorpusError, match="no column 'body'"):
        list(documents("hf:someone/stories", "body"))
    with pytest.raises(CorpusError, match=r"not in the HuggingFace cache.*not in the `datasets` cache"):
        list(documents("hf:someone/missing"))


def test_save_to_disk_folders_are_corpora(tmp_path, tiny, hf_home):
    one = tmp_path / "one"
    datasets.Dataset.from_dict({"n": list(range(len(DOCS))), "body": DOCS}).save_to_disk(str(one))
    two = tmp_path / "two"
    datasets.DatasetDict({"test": datasets.Dataset.from_dict({"body": OTHER}),
                          "train": datasets.Dataset.from_dict({"body": DOCS})}).save_to_disk(str(two))
    assert list(documents(str(one), "body")) == DOCS
    assert list(documents(str(two), "body")) == DOCS  # the train split of a DatasetDict
    tok = tiny.codec.tokenizer
    assert torch.equal(windows(str(two), tok, 300, 16, seed=1, column="body"),
                       windows(str(hf_home["jsonl"]), tok, 300, 16, seed=1))
    with pytest.raises(CorpusError, match="no column 'text'"):
        list(documents(str(one)))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="file not found"):
        list(documents(str(tmp_path / "empty")))


def test_mining_and_training_from_the_cache_offline(hf_home, tiny, tmp_path):
    """Mining (with an interruption and resume) and autoencoder training from hf:someone/stories
    equal the same from the JSONL file of the same text."""
    from circuit_debugger.autoencoders.format import load
    from circuit_debugger.autoencoders.train import train_relu

    hub, local = CorpusSpec("hf:someone/stories", "text", 20), CorpusSpec(str(hf_home["jsonl"]), "text", 20)
    rows = corpus(tiny, 800, seed=6, spec=hub)
    assert torch.equal(rows, corpus(tiny, 800, seed=6, spec=local))
    cfg = Config(k=4, r=3, batch=6)
    want = mine(tiny, rows, valid_of(tiny, rows), cfg, progress=False)
    half = len(rows) // 2 // 6 * 6
    mine(tiny, rows[:half], valid_of(tiny, rows[:half]), cfg, tmp_path / "work", every=1, progress=False)
    got = mine(tiny, rows, valid_of(tiny, rows), cfg, tmp_path / "work", every=1, progress=False)
    for k, v in want.s.items():
        assert torch.equal(v, got.s[k]), k
    for name, spec in (("hub", hub), ("local", local)):
        ids = corpus(tiny, 600, seed=7, spec=spec)
        train_relu(tiny, ids, "sae", [0], 16, 1e-3, 0, tmp_path / f"w-{name}", tmp_path / f"o-{name}", steps=3, batch=4)
    a, b = (load(next((tmp_path / f"o-{n}").iterdir())) for n in ("hub", "local"))
    assert torch.equal(a.W_enc, b.W_enc) and torch.equal(a.W_dec, b.W_dec)
    assert not torch.equal(a.W_enc, torch.randn(a.W_enc.shape, generator=torch.Generator().manual_seed(0)) / a.W_enc.shape[0] ** 0.5)
    assert os.environ["HF_HUB_OFFLINE"] == "1"
