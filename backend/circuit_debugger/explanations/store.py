"""The explanations database: one SQLite file per model (stdlib sqlite3, no server).

Schema (also in explanations/README.md):
  meta(key TEXT PRIMARY KEY, value TEXT)              model, corpus, sizes, when
  nodes(id TEXT PRIMARY KEY, kind, layer, idx, n_tokens, density, mean, max,
        histogram TEXT,                             JSON {"edges": [...], "counts": [...]}
        logit_lens TEXT, de_embedding TEXT)         JSON lists of {"token", "value"} (or null)
  examples(node_id, sample, rank, activation, center, tokens TEXT, acts TEXT)
        sample: 'top' | 'random' | 'quantile'; tokens: JSON list of token ids of the window;
        acts: JSON list of the node's activation at each; center: the example token's index
  head_pairs(node_id, criterion, rank, query_token, key_token, value)
        criterion: 'attention' (weight) | 'write_norm' (weight × ‖v·W_O‖)
  explanations(node_id, explainer, text, score, score_kind, details TEXT, created)
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Optional

import torch

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS nodes(id TEXT PRIMARY KEY, kind TEXT, layer INT, idx INT, n_tokens INT, density REAL,
    mean REAL, max REAL, histogram TEXT, logit_lens TEXT, de_embedding TEXT);
CREATE TABLE IF NOT EXISTS examples(node_id TEXT, sample TEXT, rank INT, activation REAL, center INT, tokens TEXT,
    acts TEXT);
CREATE INDEX IF NOT EXISTS examples_node ON examples(node_id, sample, rank);
CREATE TABLE IF NOT EXISTS head_pairs(node_id TEXT, criterion TEXT, rank INT, query_token INT, key_token INT, value REAL);
CREATE INDEX IF NOT EXISTS head_pairs_node ON head_pairs(node_id);
CREATE TABLE IF NOT EXISTS explanations(node_id TEXT, explainer TEXT, text TEXT, score REAL, score_kind TEXT,
    details TEXT, created REAL, PRIMARY KEY(node_id, explainer));
"""


def _r(x: float) -> float:
    return round(float(x), 4)


def write(path: Path, model, index, miner, rows: torch.Tensor, lens: dict, meta: dict) -> None:
    """Write the miner's state for every node (replacing the file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    s, c = miner.s, miner.cfg
    T = rows.shape[1]
    flat = rows.reshape(-1)
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    db.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()])
    n_tok = float(s["n_tokens"][0])
    from .mine import EDGES

    node_rows, ex_rows = [], []
    for n, nid in enumerate(index.ids):
        hist = {"edges": [_r(e) for e in EDGES.tolist()], "counts": [int(x) for x in s["hist"][n].tolist()]}
        lz = lens.get(nid, {})
        node_rows.append((nid, index.kinds[n], index.layers[n], index.indices[n], int(n_tok),
                          float(s["active"][n]) / max(n_tok, 1), float(s["sum"][n]) / max(n_tok, 1),
                          float(s["max"][n]) if torch.isfinite(s["max"][n]) else None, json.dumps(hist),
                          json.dumps(lz.get("logit_lens")), json.dumps(lz.get("de_embedding"))))
        for sample, vals, idxs, wins in (("top", s["top_val"][n], s["top_idx"][n], s["top_win"][n]),
                                         ("random", s["rnd_val"][n], s["rnd_idx"][n], s["rnd_win"][n])):
            order = torch.argsort(vals, descending=True) if sample == "random" else torch.arange(len(vals))
            picked = []
            for rank, j in enumerate(order.tolist()):
                gi = int(idxs[j])
                if gi < 0 or not torch.isfinite(vals[j]):
                    continue
                toks, acts = _window(flat, gi, T, c.before, c.after, wins[j], model.codec.bos_id)
                picked.append((float(vals[j]), toks, acts))
                ex_rows.append((nid, sample, rank, _r(vals[j]), c.before, json.dumps(toks), json.dumps(acts)))
            if sample == "random" and picked:  # quantile examples from the random sample
                for q, frac in enumerate((0.1, 0.3, 0.5, 0.7, 0.9)):
                    v, toks, acts = sorted(picked, key=lambda x: x[0])[min(int(frac * len(picked)), len(picked) - 1)]
                    ex_rows.append((nid, "quantile", q, _r(v), c.before, json.dumps(toks), json.dumps(acts)))
    db.executemany("INSERT INTO nodes VALUES (?,?,?,?,?,?,?,?,?,?,?)", node_rows)
    db.executemany("INSERT INTO examples VALUES (?,?,?,?,?,?,?)", ex_rows)
    pairs = []
    H = model.shape.n_heads
    for h_total in range(s["pw_val"].shape[0]):
        nid = f"L{h_total // H}.H{h_total % H}"
        for crit, key in (("attention", "pw"), ("write_norm", "pn")):
            for rank, (v, code) in enumerate(zip(s[key + "_val"][h_total].tolist(), s[key + "_idx"][h_total].tolist())):
                if code < 0 or v == float("-inf"):
                    continue
                row, rest = divmod(int(code), T * T)
                q, k = divmod(rest, T)
                pairs.append((nid, crit, rank, int(rows[row, q]), int(rows[row, k]), _r(v)))
    db.executemany("INSERT INTO head_pairs VALUES (?,?,?,?,?,?)", pairs)
    db.commit()
    db.execute("VACUUM")
    db.close()


def _window(flat: torch.Tensor, gi: int, T: int, before: int, after: int, win: torch.Tensor, pad: int):
    """The example's window; positions outside the row, or padding after it, are None."""
    row, t = divmod(gi, T)
    toks, acts = [], []
    for w in range(before + after + 1):
        p = t - before + w
        if 0 <= p < T and not (p > t and int(flat[row * T + p]) == pad):
            toks.append(int(flat[row * T + p]))
            acts.append(_r(win[w]))
        else:
            toks.append(None)
            acts.append(None)
    return toks, acts


class Store:
    """Read side, shared by the server's threads. Reads use one connection per thread, kept
    open: a new connection per call re-read the schema and started with an empty page cache
    (~1 ms a query). SQLite sees other connections' writes at each read's start."""

    def __init__(self, path: Path, codec):
        self.path, self.codec = Path(path), codec
        self.lock = threading.Lock()
        self._local = threading.local()
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: file not found")
        with self._db() as db:
            db.execute("SELECT count(*) FROM nodes").fetchone()  # fails clearly on a malformed file

    def _db(self):
        return sqlite3.connect(self.path, timeout=10)

    def _reader(self):
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._db()
        return db

    def _tokens(self, ids):
        return [None if i is None else self.codec.token_strs([i])[0] for i in ids]

    def node(self, node_id: str, offset: int = 0, limit: int = 10) -> Optional[dict]:
        db = self._reader()
        r = db.execute("SELECT id, kind, layer, idx, n_tokens, density, mean, max, histogram, logit_lens, "
                       "de_embedding FROM nodes WHERE id = ?", (node_id,)).fetchone()
        if r is None:
            return None
        out = {"id": r[0], "kind": r[1], "layer": r[2], "index": r[3], "n_tokens": r[4], "density": r[5],
               "mean": r[6], "max": r[7], "histogram": json.loads(r[8]), "logit_lens": json.loads(r[9]),
               "de_embedding": json.loads(r[10]), "examples": {}}
        for sample in ("top", "quantile", "random"):
            total = db.execute("SELECT count(*) FROM examples WHERE node_id = ? AND sample = ?", (node_id, sample)).fetchone()[0]
            rows = db.execute("SELECT rank, activation, center, tokens, acts FROM examples WHERE node_id = ? AND "
                              "sample = ? ORDER BY rank LIMIT ? OFFSET ?", (node_id, sample, limit, offset)).fetchall()
            out["examples"][sample] = {"total": total, "offset": offset, "items": [
                {"rank": x[0], "activation": x[1], "center": x[2], "tokens": self._tokens(json.loads(x[3])),
                 "acts": json.loads(x[4])} for x in rows]}
        pairs = db.execute("SELECT criterion, rank, query_token, key_token, value FROM head_pairs WHERE node_id = ? "
                           "ORDER BY criterion, rank", (node_id,)).fetchall()
        out["head_pairs"] = [{"criterion": p[0], "rank": p[1], "query": self._tokens([p[2]])[0],
                              "key": self._tokens([p[3]])[0], "value": p[4]} for p in pairs]
        out["explanations"] = self.explanations(node_id, db)
        return out

    def explanations(self, node_id: str, db=None) -> list[dict]:
        own = db is None
        db = db or self._db()
        try:
            rows = db.execute("SELECT explainer, text, score, score_kind, details, created FROM explanations WHERE "
                              "node_id = ? ORDER BY created", (node_id,)).fetchall()
        finally:
            if own:
                db.close()
        return [{"explainer": r[0], "text": r[1], "score": r[2], "score_kind": r[3], "details": json.loads(r[4] or "null"),
                 "created": r[5]} for r in rows]

    def put_explanation(self, node_id: str, e: dict) -> None:
        with self.lock, self._db() as db:
            db.execute("INSERT OR REPLACE INTO explanations VALUES (?,?,?,?,?,?,?)",
                       (node_id, e["explainer"], e["text"], e["score"], e["score_kind"], json.dumps(e.get("details")),
                        time.time()))

    def top_examples(self, node_id: str, sample: str = "top") -> list[tuple[list, list, int]]:
        """(token ids, acts, center) for the explainers."""
        with self._db() as db:
            rows = db.execute("SELECT tokens, acts, center FROM examples WHERE node_id = ? AND sample = ? ORDER BY rank",
                              (node_id, sample)).fetchall()
        return [(json.loads(t), json.loads(a), c) for t, a, c in rows]

    def node_ids(self) -> list[str]:
        with self._db() as db:
            return [r[0] for r in db.execute("SELECT id FROM nodes ORDER BY rowid")]
