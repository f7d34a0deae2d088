"""Explanations database format 2 (packed example records, explanations/packing.py): records
read back what was written, format 1 files (a JSON row per example window) are still served,
`repack` turns one into the other serving the same answers, and the shipped databases are
format 2 and small enough for the repository."""

import json
import sqlite3

import pytest

from conftest import ROOT
from circuit_debugger.explanations.packing import pack, unpack
from circuit_debugger.explanations.store import Store, repack


class Codec:
    def token_strs(self, ids):
        return [f"<{i}>" for i in ids]


def window(seed, width=6, none_left=0):
    toks = [None] * none_left + [(seed * 7 + i) for i in range(width - none_left)]
    acts = [None] * none_left + [round(0.37 * seed - 0.11 * i, 4) for i in range(width - none_left)]
    return toks, acts


def test_records_read_back_what_was_written():
    top = [(3.5, *window(1, none_left=2)), (2.25, *window(2))]
    rnd = [(1.5, *window(3)), (0.75, *window(4, none_left=1)), (0.5, *window(5))]
    got = unpack(pack(top, rnd, [2, 1, 0], before=3, after=2))
    assert got["center"] == 3
    for want, have in zip(top + rnd, got["top"] + got["random"]):
        assert have["activation"] == want[0] and have["tokens"] == want[1]
        for a, b in zip(want[2], have["acts"]):
            assert (a is None) == (b is None) and (a is None or b == pytest.approx(a, rel=1e-3, abs=1e-3))
    assert [q["activation"] for q in got["quantile"]] == [0.5, 0.75, 1.5]  # references into the random sample
    # token ids beyond 16 bits and activations beyond float16's range are kept exactly
    huge = unpack(pack([(1e6, [70_000, None, 5], [1e6, None, -2.5])], [], [], before=1, after=1))
    assert huge["top"][0]["tokens"] == [70_000, None, 5] and huge["top"][0]["acts"] == [1e6, None, -2.5]
    assert unpack(pack([], [], [], 10, 3)) == {"center": 10, "top": [], "random": [], "quantile": []}
    with pytest.raises(ValueError, match="window of 2 tokens"):
        pack([(1.0, [1, 2], [0.1, 0.2])], [], [], before=1, after=2)


@pytest.fixture()
def format1(tmp_path):
    """A database as format 1 wrote it."""
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript("""
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE nodes(id TEXT PRIMARY KEY, kind TEXT, layer INT, idx INT, n_tokens INT, density REAL, mean REAL, max REAL,
    histogram TEXT, logit_lens TEXT, de_embedding TEXT);
CREATE TABLE examples(node_id TEXT, sample TEXT, rank INT, activation REAL, center INT, tokens TEXT, acts TEXT);
CREATE TABLE head_pairs(node_id TEXT, criterion TEXT, rank INT, query_token INT, key_token INT, value REAL);
CREATE TABLE explanations(node_id TEXT, explainer TEXT, text TEXT, score REAL, score_kind TEXT, details TEXT,
    created REAL, PRIMARY KEY(node_id, explainer));""")
    db.execute("INSERT INTO meta VALUES ('model', '\"old\"')")
    hist = {"edges": [0.0, 0.5, 1.0], "counts": [7, 2, 1, 0]}
    for n, nid in enumerate(("L0.N0", "L0.H1")):
        lens = [{"token": " a", "value": 1.25}] if nid == "L0.N0" else None
        db.execute("INSERT INTO nodes VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                   (nid, "neuron" if n == 0 else "head", 0, n, 100, 0.1, 0.2, 3.5, json.dumps(hist), json.dumps(lens),
                    json.dumps(None)))
        rnd = [(1.5, *window(3)), (0.75, *window(4, none_left=1)), (0.5, *window(5))]
        rows = [("top", r, v, t, a) for r, (v, t, a) in enumerate([(3.5, *window(1, none_left=2)), (2.25, *window(2))])]
        rows += [("random", r, v, t, a) for r, (v, t, a) in enumerate(rnd)]
        rows += [("quantile", q, *rnd[i]) for q, i in enumerate((2, 1, 0))]
        db.executemany("INSERT INTO examples VALUES (?,?,?,?,?,?,?)",
                       [(nid, s, r, v, 3, json.dumps(t), json.dumps(a)) for s, r, v, t, a in rows])
    db.execute("INSERT INTO head_pairs VALUES ('L0.H1', 'attention', 0, 4, 2, 0.9)")
    db.execute("INSERT INTO explanations VALUES ('L0.N0', 'offline', 'fires on x', 0.8, 'auc', '{\"t\": 1}', 5.0)")
    db.commit()
    db.close()
    return path


def test_format1_is_served_and_repacked_to_the_same_answers(format1, tmp_path):
    old = Store(format1, Codec())
    assert not old.packed
    a = old.node("L0.N0", offset=1, limit=2)
    assert a["examples"]["top"]["total"] == 2 and [x["rank"] for x in a["examples"]["top"]["items"]] == [1]
    assert a["examples"]["random"]["items"][0]["tokens"][0] is None and a["histogram"]["edges"] == [0.0, 0.5, 1.0]
    repack(format1, tmp_path / "new.sqlite")
    new = Store(tmp_path / "new.sqlite", Codec())
    assert new.packed and new.node_ids() == old.node_ids()
    for nid in old.node_ids():
        for offset, limit in ((0, 10), (1, 2), (0, 0)):
            x, y = old.node(nid, offset, limit), new.node(nid, offset, limit)
            for k in x:
                if k != "examples":
                    assert x[k] == y[k], (nid, k)
            for s in ("top", "quantile", "random"):
                ex, ey = x["examples"][s], y["examples"][s]
                assert (ex["total"], ex["offset"], len(ex["items"])) == (ey["total"], ey["offset"], len(ey["items"]))
                for i, j in zip(ex["items"], ey["items"]):
                    assert {k: i[k] for k in ("rank", "activation", "center", "tokens")} == \
                           {k: j[k] for k in ("rank", "activation", "center", "tokens")}
                    assert [u is None for u in i["acts"]] == [v is None for v in j["acts"]]
                    assert [v for v in j["acts"] if v is not None] == \
                           pytest.approx([u for u in i["acts"] if u is not None], rel=1e-3, abs=1e-3)
        assert [t for t, _, _ in old.top_examples(nid, "random")] == [t for t, _, _ in new.top_examples(nid, "random")]
    db = sqlite3.connect(tmp_path / "new.sqlite")
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "examples" not in tables and json.loads(dict(db.execute("SELECT * FROM meta"))["format"]) == 2
    with pytest.raises(ValueError, match="already format 2"):
        repack(tmp_path / "new.sqlite", tmp_path / "again.sqlite")


@pytest.mark.parametrize("name", ["default", "llama"])
def test_shipped_databases_are_packed_and_small(name):
    path = ROOT / "explanations" / f"{name}.sqlite"
    assert path.exists(), f"{path}: the shipped explanations of the {name} model"
    assert Store(path, Codec()).packed
    assert path.stat().st_size <= 8_500_000, f"{path}: {path.stat().st_size / 1e6:.1f} MB"


def test_built_examples_are_corpus_windows_with_the_nodes_activations(tmp_path):
    """Windows stored as corpus positions read back as the mined rows' tokens, and the window's
    activations are the node's, recomputed here on those rows."""
    from circuit_debugger.explanations.activations import batch_activations, node_index
    from circuit_debugger.explanations.build import build, corpus
    from circuit_debugger.loading import load_model

    m = load_model("tracr/map_successor")
    build(m, tmp_path / "x.sqlite", 1500, progress=False, held_tokens=600)
    store = Store(tmp_path / "x.sqlite", m.codec)
    assert store.packed and sqlite3.connect(tmp_path / "x.sqlite").execute("SELECT count(*) FROM corpus_rows").fetchone()[0]
    rows = corpus(m, 1500, 777)  # build's corpus (seed 777)
    acts = batch_activations(m, rows)[0]
    index = node_index(m)
    checked = 0
    for nid in ("L0.N1", "L0.N4", "L0.H0"):
        col = index.ids.index(nid)
        node = store.node(nid, limit=100)
        for s in ("top", "random"):
            for ex in node["examples"][s]["items"]:
                c = ex["center"]
                ids = [None if t is None else m.codec.input_tokens.index(t) if t in m.codec.input_tokens else t
                       for t in ex["tokens"]]
                hits = [(r, t) for r in range(rows.shape[0]) for t in range(rows.shape[1])
                        if all(x is None or (0 <= t - c + w < rows.shape[1] and int(rows[r, t - c + w]) == x)
                               for w, x in enumerate(ids))
                        and abs(float(acts[r, t, col]) - ex["activation"]) <= 1e-3 * max(1, abs(ex["activation"]))]
                assert hits, (nid, s, ex)
                r, t = hits[0]
                for w, a in enumerate(ex["acts"]):
                    if a is not None:
                        assert a == pytest.approx(float(acts[r, t - c + w, col]), rel=2e-3, abs=2e-3)
                checked += 1
    assert checked > 10
