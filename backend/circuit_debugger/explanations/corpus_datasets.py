"""Corpora held by the HuggingFace `datasets` library: its Arrow cache and `save_to_disk` folders.

    --corpus hf:ORG/NAME      a dataset `load_dataset("ORG/NAME")` once prepared (its Arrow cache,
                              HF_DATASETS_CACHE or HF_HOME/datasets); read offline
    --corpus DIR              a folder written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`

Why a module of its own: `datasets` is an optional extra (`pip install .[corpus]`; it also
comes with transformer-lens), imported only when such a corpus is asked for.

Offline by construction: the cache is read through the library's own `Cache` builder (what
`load_dataset` falls back to under HF_DATASETS_OFFLINE=1), never through the Hub client, so
nothing is downloaded and no network is tried. Streamed: the cache's Arrow files are read
record batch by record batch (`as_streaming_dataset`); `save_to_disk` folders are memory-mapped
and read in batches. The split is `train` when there is one, else the first listed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from .corpus import CorpusError

BATCH = 256


def _datasets():
    try:
        import datasets
    except ImportError:
        raise CorpusError("reading a `datasets` cache or save_to_disk folder needs the `datasets` package "
                          "(pip install 'circuit-debugger[corpus]')") from None
    datasets.utils.logging.set_verbosity_error()  # the Cache builder warns that it is offline: that is the point
    return datasets


def cache_dir() -> Path:
    """The `datasets` Arrow cache, from the environment at call time (datasets.config reads it
    only once, at import)."""
    if os.environ.get("HF_DATASETS_CACHE"):
        return Path(os.environ["HF_DATASETS_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface")
    return Path(home).expanduser() / "datasets"


def is_saved_dataset(path: Path) -> bool:
    """A folder written by `save_to_disk` (one Dataset or a DatasetDict)."""
    return path.is_dir() and ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file())


def _split(splits: list, where: str) -> str:
    if not splits:
        raise CorpusError(f"{where}: no splits")
    return "train" if "train" in splits else splits[0]


def _texts(batches, column: str, where: str, names) -> Iterator[str]:
    if column not in names:
        raise CorpusError(f"{where}: no column {column!r} (have {', '.join(names)})")
    for batch in batches:
        for v in batch[column]:
            if isinstance(v, str):
                yield v


def cached(name: str, column: str) -> Iterator[str]:
    """Documents of hub dataset `name` from the `datasets` Arrow cache (offline)."""
    datasets = _datasets()
    from datasets.packaged_modules.cache.cache import Cache

    root = cache_dir()
    try:
        b = Cache(cache_dir=str(root), repo_id=name, dataset_name=name.split("/")[-1], version="auto", hash="auto")
    except Exception as e:
        raise CorpusError(f"not in the `datasets` cache {root} either ({type(e).__name__}); or prepare it once "
                          f"with datasets.load_dataset({name!r}) where the Hub can be reached") from None
    splits = list(b.info.splits or {})
    split = _split(splits, f"hf:{name} ({b.cache_dir})")
    ds = b.as_streaming_dataset(split=split)
    names = list(ds.features or {})
    return _texts(ds.select_columns([column]).iter(BATCH) if column in names else [], column, f"hf:{name}", names)


def saved(path: Path, column: str) -> Iterator[str]:
    """Documents of a `save_to_disk` folder (memory-mapped, read in batches)."""
    datasets = _datasets()
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:
        raise CorpusError(f"{path}: not a readable save_to_disk folder ({type(e).__name__}: {e})") from None
    where = str(path)
    if isinstance(ds, datasets.DatasetDict):
        split = _split(list(ds), where)
        ds, where = ds[split], f"{path} (split {split})"
    names = ds.column_names
    return _texts(ds.select_columns([column]).iter(BATCH) if column in names else [], column, where, names)


__all__ = ["cache_dir", "cached", "is_saved_dataset", "saved"]
