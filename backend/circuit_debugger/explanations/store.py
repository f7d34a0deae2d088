"""The explanations database: one SQLite file per model (stdlib sqlite3, no server).

Schema, format 2 (also in explanations/README.md; format 1 files are still read):
  meta(key TEXT PRIMARY KEY, value TEXT)              model, corpus, sizes, when; "format": 2;
                                                      "histogram_edges": the bin edges every node shares
  nodes(id TEXT PRIMARY KEY, kind, layer, idx, n_tokens, density, mean, max,
        histogram TEXT,                             JSON {"counts": [...]} (format 1: also "edges")
        logit_lens TEXT, de_embedding TEXT)         JSON lists of [token, value] (format 1: {"token", "value"}), or null
  node_examples(node_id TEXT PRIMARY KEY, data BLOB)  the node's top, random and quantile example
        windows in one compressed record (packing.py): corpus positions and the node's activations
  corpus_rows(row INTEGER PRIMARY KEY, tokens BLOB)   the mined rows those windows lie in (uint16/uint32
        ids, meta "corpus_token_bytes"; meta "row_length", "pad_token"); format 1 had instead
        examples(node_id, sample, rank, activation, center, tokens TEXT, acts TEXT), a row per window
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
CREATE TABLE IF NOT EXISTS node_examples(node_id TEXT PRIMARY KEY, data BLOB) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS corpus_rows(row INTEGER PRIMARY KEY, tokens BLOB);
CREATE TABLE IF NOT EXISTS head_pairs(node_id TEXT, criterion TEXT, rank INT, query_token INT, key_token INT, value REAL);
CREATE INDEX IF NOT EXISTS head_pairs_node ON head_pairs(node_id);
CREATE TABLE IF NOT EXISTS explanations(node_id TEXT, explainer TEXT, text TEXT, score REAL, score_kind TEXT,
    details TEXT, created REAL, PRIMARY KEY(node_id, explainer));
"""


FORMAT = 2
SAMPLES = ("top", "quantile", "random")
QUANTILES = (0.1, 0.3, 0.5, 0.7, 0.9)  # the quantile examples' positions in the random sample (ascending)


def _r(x: float) -> float:
    return round(float(x), 4)


def _json(x) -> str:
    return json.dumps(x, separators=(",", ":"))


def _compact_lens(items):
    """[{"token", "value"}, ...] stored as [[token, value], ...] (format 2)."""
    return None if items is None else [[x["token"], x["value"]] for x in items]


def _lens(text):
    items = json.loads(text)
    return None if items is None else [x if isinstance(x, dict) else {"token": x[0], "value": x[1]} for x in items]


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
    from .mine import EDGES
    from .packing import pack

    edges = [_r(e) for e in EDGES.tolist()]
    tok_bytes = 2 if int(rows.max()) < 0xFFFF else 4
    meta = {**meta, "format": FORMAT, "histogram_edges": edges, "row_length": T, "pad_token": model.codec.bos_id,
            "corpus_token_bytes": tok_bytes}
    db.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()])
    n_tok = float(s["n_tokens"][0])
    node_rows, ex_rows, used = [], [], set()
    for n, nid in enumerate(index.ids):
        hist = {"counts": [int(x) for x in s["hist"][n].tolist()]}
        lz = lens.get(nid, {})
        node_rows.append((nid, index.kinds[n], index.layers[n], index.indices[n], int(n_tok),
                          float(s["active"][n]) / max(n_tok, 1), float(s["sum"][n]) / max(n_tok, 1),
                          float(s["max"][n]) if torch.isfinite(s["max"][n]) else None, _json(hist),
                          _json(_compact_lens(lz.get("logit_lens"))), _json(_compact_lens(lz.get("de_embedding")))))
        picked, where = {}, {}
        for sample, vals, idxs, wins in (("top", s["top_val"][n], s["top_idx"][n], s["top_win"][n]),
                                         ("random", s["rnd_val"][n], s["rnd_idx"][n], s["rnd_win"][n])):
            order = torch.argsort(vals, descending=True) if sample == "random" else torch.arange(len(vals))
            picked[sample], where[sample] = [], []
            for j in order.tolist():
                gi = int(idxs[j])
                if gi < 0 or not torch.isfinite(vals[j]):
                    continue
                toks, acts = _window(flat, gi, T, c.before, c.after, wins[j], model.codec.bos_id)
                picked[sample].append((float(vals[j]), toks, acts))
                where[sample].append(gi)
                used.add(gi // T)
        rnd = picked["random"]  # quantile examples: references into the random sample (descending)
        quantile = [len(rnd) - 1 - min(int(frac * len(rnd)), len(rnd) - 1) for frac in QUANTILES] if rnd else []
        ex_rows.append((nid, pack(picked["top"], rnd, quantile, c.before, c.after, where["top"] + where["random"])))
    db.executemany("INSERT INTO nodes VALUES (?,?,?,?,?,?,?,?,?,?,?)", node_rows)
    db.executemany("INSERT INTO node_examples VALUES (?,?)", ex_rows)
    dtype = "<u2" if tok_bytes == 2 else "<u4"  # the corpus rows some example window lies in
    db.executemany("INSERT INTO corpus_rows VALUES (?,?)",
                   [(r, rows[r].numpy().astype(dtype).tobytes()) for r in sorted(used)])
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
    (~1 ms a query). SQLite sees other connections' writes at each read's start.
    Reads format 2 (packed example records) and format 1 (a row per example window)."""

    def __init__(self, path: Path, codec):
        self.path, self.codec = Path(path), codec
        self.lock = threading.Lock()
        self._local = threading.local()
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: file not found")
        with self._db() as db:
            db.execute("SELECT count(*) FROM nodes").fetchone()  # fails clearly on a malformed file
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            self.packed = "node_examples" in tables
            meta = dict(db.execute("SELECT key, value FROM meta WHERE key IN ('histogram_edges', 'row_length', "
                                   "'pad_token', 'corpus_token_bytes')").fetchall())
            self.edges = json.loads(meta["histogram_edges"]) if "histogram_edges" in meta else None
            self.row_length = json.loads(meta.get("row_length", "0"))
            self.pad = json.loads(meta.get("pad_token", "null"))
            self.row_dtype = "<u2" if json.loads(meta.get("corpus_token_bytes", "2")) == 2 else "<u4"

    def _db(self):
        return sqlite3.connect(self.path, timeout=10)

    def _reader(self):
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._db()
        return db

    def _tokens(self, ids):
        return [None if i is None else self.codec.token_strs([i])[0] for i in ids]

    def _examples(self, db, node_id: str) -> dict:
        """{sample: [{"activation", "tokens" (ids), "acts"}]} in rank order, and the center."""
        if self.packed:
            from .packing import unpack

            r = db.execute("SELECT data FROM node_examples WHERE node_id = ?", (node_id,)).fetchone()
            if r is None:
                return {"center": 0, "top": [], "random": [], "quantile": []}
            return unpack(r[0], lambda where, before, after: self._windows(db, where, before, after))
        out: dict = {"center": 0}
        for sample in SAMPLES:
            rows = db.execute("SELECT activation, center, tokens, acts FROM examples WHERE node_id = ? AND sample = ? "
                              "ORDER BY rank", (node_id, sample)).fetchall()
            out[sample] = [{"activation": x[0], "tokens": json.loads(x[2]), "acts": json.loads(x[3])} for x in rows]
            out["center"] = rows[0][1] if rows else out["center"]
        return out

    def _windows(self, db, where: list, before: int, after: int) -> list:
        """Token windows around corpus positions (row × row length + position), as the writer's
        `_window` cuts them: None outside the row and for padding after the example token."""
        import numpy as np

        T = self.row_length
        wanted = sorted({gi // T for gi in where})
        got = dict(db.execute(f"SELECT row, tokens FROM corpus_rows WHERE row IN ({','.join('?' * len(wanted))})",
                              wanted).fetchall()) if wanted else {}
        rows = {r: np.frombuffer(b, self.row_dtype).tolist() for r, b in got.items()}
        out = []
        for gi in where:
            r, t = divmod(gi, T)
            row = rows[r]
            out.append([row[p] if 0 <= p < T and not (p > t and row[p] == self.pad) else None
                        for p in range(t - before, t + after + 1)])
        return out

    def node(self, node_id: str, offset: int = 0, limit: int = 10) -> Optional[dict]:
        db = self._reader()
        r = db.execute("SELECT id, kind, layer, idx, n_tokens, density, mean, max, histogram, logit_lens, "
                       "de_embedding FROM nodes WHERE id = ?", (node_id,)).fetchone()
        if r is None:
            return None
        hist = json.loads(r[8])
        if "edges" not in hist and self.edges is not None:
            hist = {"edges": self.edges, **hist}
        out = {"id": r[0], "kind": r[1], "layer": r[2], "index": r[3], "n_tokens": r[4], "density": r[5],
               "mean": r[6], "max": r[7], "histogram": hist, "logit_lens": _lens(r[9]),
               "de_embedding": _lens(r[10]), "examples": {}}
        ex = self._examples(db, node_id)
        for sample in SAMPLES:
            page = ex[sample][offset:offset + limit] if limit > 0 else []
            out["examples"][sample] = {"total": len(ex[sample]), "offset": offset, "items": [
                {"rank": offset + i, "activation": x["activation"], "center": ex["center"],
                 "tokens": self._tokens(x["tokens"]), "acts": x["acts"]} for i, x in enumerate(page)]}
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
        self.put_explanations([(node_id, e)])

    def put_explanations(self, items) -> None:
        """Store (node id, explanation) pairs in one transaction."""
        with self.lock, self._db() as db:
            db.executemany("INSERT OR REPLACE INTO explanations VALUES (?,?,?,?,?,?,?)",
                           [(node_id, e["explainer"], e["text"], e["score"], e["score_kind"],
                             json.dumps(e.get("details")), time.time()) for node_id, e in items])

    def top_examples(self, node_id: str, sample: str = "top") -> list[tuple[list, list, int]]:
        """(token ids, acts, center) for the explainers."""
        with self._db() as db:
            ex = self._examples(db, node_id)
        return [(x["tokens"], x["acts"], ex["center"]) for x in ex[sample]]

    def node_ids(self) -> list[str]:
        with self._db() as db:
            return [r[0] for r in db.execute("SELECT id FROM nodes ORDER BY rowid")]


def repack(src: Path, dst: Path) -> None:
    """Rewrite a format 1 database (a row per example window) in format 2, keeping every
    node, statistic, head pair and explanation; example windows are packed (packing.py)."""
    from .packing import pack

    old = Store(src, codec=None)
    if old.packed:
        raise ValueError(f"{src}: already format 2")
    dst = Path(dst)
    if dst.exists():
        dst.unlink()
    out = sqlite3.connect(dst)
    out.executescript(SCHEMA)
    with old._db() as db:
        edges = None
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        nodes = db.execute("SELECT * FROM nodes ORDER BY rowid").fetchall()
        rows, packed = [], []
        for r in nodes:
            hist = json.loads(r[8])
            edges = edges or hist.pop("edges", None)
            hist.pop("edges", None)
            rows.append((*r[:8], _json(hist), _json(_compact_lens(_lens(r[9]))), _json(_compact_lens(_lens(r[10])))))
            ex = old._examples(db, r[0])
            as_tuple = lambda x: (x["activation"], x["tokens"], x["acts"])
            rnd = [as_tuple(x) for x in ex["random"]]
            index = {json.dumps(x): i for i, x in enumerate(rnd)}
            quantile = [index[json.dumps(as_tuple(x))] for x in ex["quantile"]]
            width = len(rnd[0][1]) if rnd else len(ex["top"][0]["tokens"]) if ex["top"] else 1
            packed.append((r[0], pack([as_tuple(x) for x in ex["top"]], rnd, quantile, ex["center"],
                                      width - 1 - ex["center"])))
        meta.update({"format": json.dumps(FORMAT), "histogram_edges": json.dumps(edges)})
        out.executemany("INSERT INTO meta VALUES (?, ?)", list(meta.items()))
        out.executemany("INSERT INTO nodes VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
        out.executemany("INSERT INTO node_examples VALUES (?,?)", packed)
        out.executemany("INSERT INTO head_pairs VALUES (?,?,?,?,?,?)", db.execute("SELECT * FROM head_pairs").fetchall())
        out.executemany("INSERT INTO explanations VALUES (?,?,?,?,?,?,?)",
                        db.execute("SELECT * FROM explanations").fetchall())
    out.commit()
    out.execute("VACUUM")
    out.close()


if __name__ == "__main__":  # python -m circuit_debugger.explanations.store repack OLD.sqlite NEW.sqlite
    import sys

    if len(sys.argv) != 4 or sys.argv[1] != "repack":
        raise SystemExit("usage: python -m circuit_debugger.explanations.store repack OLD.sqlite NEW.sqlite")
    repack(Path(sys.argv[2]), Path(sys.argv[3]))
    print(f"{sys.argv[3]}: {Path(sys.argv[3]).stat().st_size / 1e6:.1f} MB")
