"""The user's corpus: text, JSONL, Parquet, CSV and a cached hub dataset give the same
documents, streamed (reading stops once enough windows are cut), in fixed-length windows that
are deterministic for a seed, with disjoint mining and held-out splits."""

import csv
import json

import pytest
import torch

from circuit_debugger.explanations.corpus import CorpusError, documents, valid_mask, windows

DOCS = [f"Document {i}: when Mary and John went to the store, John gave a drink to Mary." for i in range(60)]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = tmp_path_factory.mktemp("corpus")
    (d / "c.txt").write_text("\n\n".join(DOCS) + "\n")
    (d / "c.jsonl").write_text("".join(json.dumps({"text": t, "n": i}) + "\n" for i, t in enumerate(DOCS)))
    pq.write_table(pa.table({"body": DOCS, "n": list(range(len(DOCS)))}), str(d / "c.parquet"), row_group_size=7)
    with (d / "c.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["n", "body"])
        w.writerows([i, t] for i, t in enumerate(DOCS))
    return d


def test_every_format_gives_the_same_documents(files):
    assert list(documents(str(files / "c.txt"))) == DOCS
    assert list(documents(str(files / "c.jsonl"))) == DOCS
    assert list(documents(str(files / "c.parquet"), "body")) == DOCS
    assert list(documents(str(files / "c.csv"), "body")) == DOCS
    with pytest.raises(CorpusError, match="no column 'text'"):
        list(documents(str(files / "c.parquet")))
    with pytest.raises(CorpusError, match="file not found"):
        list(documents(str(files / "nope.jsonl")))


def test_windows_are_deterministic_disjoint_and_streamed(files, tiny):
    tok = tiny.codec.tokenizer
    a = windows(str(files / "c.jsonl"), tok, 300, 16, seed=1)
    assert torch.equal(a, windows(str(files / "c.parquet"), tok, 300, 16, seed=1, column="body"))
    assert a.shape[1] == 16 and (a[:, 0] == tok.bos_token_id).all()
    assert not torch.equal(a, windows(str(files / "c.jsonl"), tok, 300, 16, seed=2))
    # every window of the stream lands in exactly one split
    every = windows(str(files / "c.jsonl"), tok, 10**6, 16, seed=1, held_every=10**9)
    mine = windows(str(files / "c.jsonl"), tok, 10**6, 16, seed=1)
    held = windows(str(files / "c.jsonl"), tok, 10**6, 16, seed=1, split="held")
    assert 0 < len(held) < len(mine) and torch.equal(mine[:len(a)], a)
    assert sorted(map(tuple, every.tolist())) == sorted(map(tuple, mine.tolist() + held.tolist()))
    # the stream is tokenised in order: the windows concatenated are the documents' tokens
    stream = []
    for d in DOCS:
        stream += tok.encode(d, add_special_tokens=False) + [tok.eos_token_id]
    both = windows(str(files / "c.jsonl"), tok, 10_000, 16, seed=1, held_every=10**9)  # nothing held out
    assert both[:, 1:].reshape(-1).tolist() == stream[:both[:, 1:].numel()]
    v = valid_mask(both, tok)
    assert not v[:, 0].any() and int(v.sum()) == int((both[:, 1:] != tok.eos_token_id).sum())
    # streamed: a broken line after the text that is needed is never read
    broken = files / "broken.jsonl"
    broken.write_text((files / "c.jsonl").read_text() + "{not json\n")
    assert torch.equal(windows(str(broken), tok, 300, 16, seed=1), a)
    with pytest.raises(CorpusError, match="broken.jsonl:61: not valid JSON"):
        windows(str(broken), tok, 10**6, 16, seed=1)


def test_hub_dataset_from_the_cache(files, tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    base = tmp_path / "hub" / "datasets--someone--stories"
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text("r1")
    data = base / "snapshots" / "r1" / "data"
    data.mkdir(parents=True)
    (data / "train-00000.jsonl").write_text((files / "c.jsonl").read_text())
    (data / "test-00000.jsonl").write_text(json.dumps({"text": "other"}) + "\n")
    assert list(documents("hf:someone/stories")) == DOCS
    tok = tiny.codec.tokenizer
    assert torch.equal(windows("hf:someone/stories", tok, 300, 16, seed=1), windows(str(files / "c.jsonl"), tok, 300, 16, seed=1))
    with pytest.raises(CorpusError, match="not in the HuggingFace cache"):
        list(documents("hf:someone/missing"))
