"""The user's text for mining and training: streamed, tokenised into fixed-length windows.

    --corpus PATH [--column text]

PATH is a plain-text file (documents separated by blank lines), JSONL (one object per line,
the `column` field, default "text"), Parquet or CSV (the `column` column), or `hf:ORG/NAME`:
a dataset repository already in the HuggingFace hub cache (its data files, read the same way)
or in the `datasets` library's Arrow cache, or a `save_to_disk` folder (corpus_datasets.py);
nothing is downloaded. Files are read in batches and never held whole in memory.

Windows: each document is tokenised with the model's tokenizer, documents are concatenated
(separated by the tokenizer's EOS/BOS token) and cut into windows of `ctx` tokens, each
starting with BOS when the tokenizer has one. A seed assigns each window, in stream order, to
the mining/training split or to the held-out split (about one in `held_every`), so both are
deterministic for a seed and disjoint. Only as many windows as asked for are tokenised.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Iterator, Optional

import torch

SUFFIXES = (".txt", ".text", ".md", ".jsonl", ".json", ".parquet", ".csv")


class CorpusError(ValueError):
    """A corpus that cannot be read; the message names the file and what was wrong."""


def _plain(path: Path) -> Iterator[str]:
    doc: list[str] = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.strip():
                doc.append(line)
            elif doc:
                yield "".join(doc).strip("\n")
                doc = []
    if doc:
        yield "".join(doc).strip("\n")


def _jsonl(path: Path, column: str) -> Iterator[str]:
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise CorpusError(f"{path}:{n}: not valid JSON ({e.msg})") from None
            if not isinstance(obj, dict) or column not in obj:
                raise CorpusError(f"{path}:{n}: no {column!r} field")
            if isinstance(obj[column], str):
                yield obj[column]


def _parquet(path: Path, column: str) -> Iterator[str]:
    import pyarrow.parquet as pq

    try:
        f = pq.ParquetFile(str(path))
    except Exception as e:
        raise CorpusError(f"{path}: not a Parquet file ({e})") from None
    if column not in f.schema_arrow.names:
        raise CorpusError(f"{path}: no column {column!r} (have {', '.join(f.schema_arrow.names)})")
    for batch in f.iter_batches(batch_size=256, columns=[column]):
        for v in batch.column(0).to_pylist():
            if isinstance(v, str):
                yield v


def _csv(path: Path, column: str) -> Iterator[str]:
    csv.field_size_limit(1 << 27)
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or column not in reader.fieldnames:
            raise CorpusError(f"{path}: no column {column!r} (have {', '.join(reader.fieldnames or [])})")
        for row in reader:
            if row.get(column):
                yield row[column]


def _file(path: Path, column: str) -> Iterator[str]:
    s = path.suffix.lower()
    if s in (".jsonl", ".json"):
        return _jsonl(path, column)
    if s == ".parquet":
        return _parquet(path, column)
    if s == ".csv":
        return _csv(path, column)
    return _plain(path)


def _hub_dataset(name: str) -> list[Path]:
    import os

    from huggingface_hub import snapshot_download

    cache = os.environ.get("HF_HUB_CACHE") or str(Path(os.environ.get("HF_HOME") or
                                                        Path.home() / ".cache" / "huggingface") / "hub")
    try:
        root = Path(snapshot_download(name, repo_type="dataset", local_files_only=True, cache_dir=cache))
    except Exception as e:
        raise CorpusError(f"hf:{name}: not in the HuggingFace cache ({type(e).__name__}); download it first "
                          f"(`hf download --repo-type dataset {name}`)") from None
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES
                   and p.name.lower() != "readme.md")
    train = [p for p in files if "train" in str(p.relative_to(root)).lower()]
    if not (train or files):
        raise CorpusError(f"hf:{name}: no data files (Parquet, JSONL, CSV or text) in the cached snapshot {root}")
    return train or files


def documents(spec: str, column: str = "text") -> Iterator[str]:
    """The corpus' documents, in order, streamed."""
    from . import corpus_datasets

    if spec.startswith("hf:"):
        try:
            paths = _hub_dataset(spec[3:])
        except CorpusError as hub:
            try:  # prepared once by `datasets.load_dataset`
                docs = corpus_datasets.cached(spec[3:], column)
            except CorpusError as arrow:
                raise CorpusError(f"{hub}; {arrow}") from None
            yield from docs
            return
    else:
        p = Path(spec).expanduser()
        if corpus_datasets.is_saved_dataset(p):
            yield from corpus_datasets.saved(p, column)
            return
        if not p.is_file():
            raise CorpusError(f"{spec}: file not found (give a text, JSONL, Parquet or CSV file, a save_to_disk "
                              "folder, or hf:ORG/NAME)")
        paths = [p]
    for p in paths:
        yield from _file(p, column)


def windows(spec: str, tokenizer, n_tokens: int, ctx: int, seed: int, column: str = "text", split: str = "mine",
            held_every: int = 10, progress: bool = False) -> torch.Tensor:
    """[n, ctx] token windows of the `split` ('mine' or 'held') with at least n_tokens
    document tokens (the leading BOS is not counted)."""
    from tqdm import tqdm

    bos: Optional[int] = tokenizer.bos_token_id
    sep = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else bos
    body = ctx - (bos is not None)
    rng = random.Random(seed)
    rows, buf, count = [], [], 0
    bar = tqdm(total=n_tokens, desc=f"corpus ({split})", disable=not progress)
    for doc in documents(spec, column):
        buf += tokenizer.encode(doc, add_special_tokens=False)
        if sep is not None:
            buf.append(sep)
        while len(buf) >= body and count < n_tokens:
            w, buf = buf[:body], buf[body:]
            if (rng.randrange(held_every) == 0) == (split == "held"):
                rows.append(([bos] if bos is not None else []) + w)
                count += body
                bar.update(body)
        if count >= n_tokens:
            break
    bar.close()
    if not rows:
        raise CorpusError(f"{spec}: too little text for one window of {ctx} tokens in the {split!r} split")
    return torch.tensor(rows)


def valid_mask(rows: torch.Tensor, tokenizer) -> torch.Tensor:
    """Positions that hold text: not the leading BOS, not a document separator."""
    v = torch.ones_like(rows, dtype=torch.bool)
    for t in {tokenizer.bos_token_id, tokenizer.eos_token_id} - {None}:
        v &= rows != t
    return v


__all__ = ["CorpusError", "documents", "windows", "valid_mask"]
