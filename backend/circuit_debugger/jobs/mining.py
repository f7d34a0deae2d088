"""Explanation mining as a job: resumable, in chunks of the miner's batches.

Where things live is the server's choice, never the client's: the corpus is a file name inside
`<mining_dir>/corpora` (or the model's built-in corpus, as build.py does), and the output (the
miner's checkpoints and the explanation store) goes to `<mining_dir>/jobs/<key>/`, where the
key hashes everything that fixes the result (model, its source, corpus, tokens, seed). A job
submitted again with the same request therefore lands in the same folder and continues from the
last complete checkpoint: cancelled, failed or killed mining resumes and ends in the same state
as one uninterrupted run (the corpus is deterministic and each batch's update is the same).

Tasks (run in a worker; the offline code is imported there only):
- 'mine_plan': the number of miner batches in the corpus (the job's progress total);
- 'mine_chunk': mine batches up to `upto`, starting from the newest complete checkpoint, and
  write a new checkpoint folder `b<batches>` (a folder whose state.json exists is complete:
  Miner.save writes it last), so a worker killed mid-chunk leaves the previous one intact;
- 'mine_write': build.py's `build` from the complete checkpoint (no batch is mined again):
  the store `explanations.sqlite`, scored on the held-out split.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Optional

from ..errors import UserError

CHUNK_BATCHES = 4  # miner batches per task: the grain of progress, cancellation and resumption


def job_folder(mining_dir: Path, m, params: dict) -> Path:
    key = json.dumps({"model": m.name, "source": str(m.source), **params}, sort_keys=True)
    return mining_dir / "jobs" / hashlib.sha256(key.encode()).hexdigest()[:24]


def corpus_path(mining_dir: Path, name: Optional[str]) -> Optional[str]:
    """A corpus file name -> its path inside `<mining_dir>/corpora`; anything else is refused."""
    if name is None:
        return None
    root = (mining_dir / "corpora").resolve()
    p = (root / name).resolve()
    if "/" in name or "\\" in name or name.startswith(".") or p.parent != root or not p.is_file():
        raise UserError(f"corpus {name[:80]!r}: give the name of a file in the server's corpora folder")
    return str(p)


def _config():
    from ..explanations.mine import Config

    return Config()


def _rows(m, task: dict):
    from ..explanations.build import CorpusSpec, corpus, valid_of
    from ..explanations.corpus import CorpusError

    spec = CorpusSpec(task["corpus"], task["column"], task["ctx"]) if task["corpus"] else None
    try:
        rows = corpus(m, task["tokens"], task["seed"], spec)
    except CorpusError as e:
        raise UserError(str(e)) from None
    return rows, valid_of(m, rows), spec


def latest(folder: Path) -> Optional[Path]:
    done = sorted(p for p in folder.glob("b*") if (p / "state.json").exists())
    return done[-1] if done else None


def run_mining_task(m, task: dict):
    from ..explanations.mine import Miner
    from ..explanations.activations import node_index

    cfg = _config()
    rows, valid, spec = _rows(m, task)
    n_batches = (len(rows) + cfg.batch - 1) // cfg.batch
    folder = Path(task["folder"])
    if task["kind"] == "mine_plan":
        last = latest(folder)
        return {"batches": n_batches, "done": json.loads((last / "state.json").read_text())["batches"] if last else 0}
    if task["kind"] == "mine_chunk":
        miner = Miner(len(node_index(m)), m.shape.n_layers * m.shape.n_heads, cfg)
        last = latest(folder)
        if last is not None:
            miner.load(last)
        upto = min(task["upto"], n_batches)
        if miner.batches >= upto:
            return {"batches": miner.batches}
        for b in range(miner.batches, upto):
            sl = slice(b * cfg.batch, (b + 1) * cfg.batch)
            miner.step(m, rows[sl], valid[sl], b * cfg.batch)
        miner.save(folder / f"b{miner.batches:08d}")
        for old in folder.glob("b*"):
            if old.name != f"b{miner.batches:08d}":
                shutil.rmtree(old, ignore_errors=True)
        return {"batches": miner.batches}
    if task["kind"] == "mine_write":
        from ..explanations.build import build

        last = latest(folder)
        out = folder / "explanations.sqlite"
        r = build(m, out, task["tokens"], last, task["seed"], cfg=cfg, progress=False, spec=spec)
        return {"nodes": r["nodes"], "explained": r["explained"], "tokens": r["tokens"], "bytes": r["bytes"],
                "store": f"{folder.name}/explanations.sqlite"}
    raise ValueError(f"unknown mining task {task['kind']!r}")
