"""What the web UI needs from the server: shares (immutable, unguessable, durable), per-token
activations, target-token checks, and the built front end served from the API's port."""

import json
import re
import sqlite3

import pytest
from fastapi.testclient import TestClient

from circuit_debugger.shares import ShareStore

PROMPT = "When Mary and John went to the store, John gave a drink to"
STATE = {"v": 1, "model": "tiny", "prompt": PROMPT, "target": " Mary", "distractor": " John",
         "interventions": [{"node": "L1.H0", "op": "zero", "enabled": True}], "node": "L1.H0", "view": "table"}


@pytest.fixture(scope="module")
def client(dbg, tmp_path_factory):
    from circuit_debugger.server.app import Settings, create_app

    dist = tmp_path_factory.mktemp("dist")
    (dist / "assets").mkdir()
    (dist / "index.html").write_text("<!doctype html><div id=root></div>")
    (dist / "assets" / "app.js").write_text("console.log(1)")
    db = tmp_path_factory.mktemp("db") / "inv.sqlite"
    app = create_app(Settings(models=[], share_db=str(db), frontend_dir=str(dist)), debugger=dbg, failed={})
    with TestClient(app, raise_server_exceptions=False) as c:
        c.db = db
        yield c


def test_share_roundtrip_is_immutable_and_unguessable(client):
    a = client.post("/api/shares", json={"state": STATE})
    assert a.status_code == 201, a.text
    sid = a.json()["id"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{16}", sid)
    got = client.get(f"/api/shares/{sid}").json()
    assert got["state"]["prompt"] == PROMPT and got["state"]["interventions"][0]["node"] == "L1.H0"
    assert got["state"]["top_k"] == 100  # defaults filled in, so the link reopens the same view
    b = client.post("/api/shares", json={"state": {**STATE, "prompt": "other"}})
    assert b.json()["id"] != sid  # sharing again never overwrites: a new id
    assert client.get(f"/api/shares/{sid}").json()["state"]["prompt"] == PROMPT
    # no route can change a stored investigation
    for method in ("put", "patch", "delete"):
        assert getattr(client, method)(f"/api/shares/{sid}").status_code in (404, 405)
    assert client.get(f"/api/shares/{sid}").json() == got


def test_share_errors(client):
    assert client.get("/api/shares/doesnotexist00000").status_code == 404
    assert client.get("/api/shares/..%2F..%2Fetc").status_code == 404
    r = client.post("/api/shares", json={"state": {**STATE, "v": 2}})
    assert r.status_code == 422 and "v" in r.json()["detail"]
    r = client.post("/api/shares", json={"state": {**STATE, "surprise": 1}})
    assert r.status_code == 422
    r = client.post("/api/shares", json={"state": {**STATE, "prompt": "x" * 20_001}})
    assert r.status_code == 422


def test_shares_survive_a_new_store_on_the_same_file(tmp_path):
    path = tmp_path / "s.sqlite"
    ids = [ShareStore(path).create({"v": 1, "prompt": f"p{i}"})["id"] for i in range(3)]
    again = ShareStore(path)
    assert [again.get(i)["state"]["prompt"] for i in ids] == ["p0", "p1", "p2"]
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_activations_match_the_attribution_table(client):
    r = client.post("/api/activations", json={"model": "tiny", "prompt": PROMPT, "node": "L1.N3"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["values"]) == len(body["tokens"])
    rows = client.post("/api/attribute", json={"model": "tiny", "prompt": PROMPT, "target": " Mary", "top_k": None,
                                                "granularity": "position"}).json()["nodes"]
    by_pos = {n["position"]: n["activation"] for n in rows if n["id"].startswith("L1.N3@")}
    assert by_pos, "the table has per-position rows for L1.N3"
    for pos, act in by_pos.items():
        assert body["values"][pos] == pytest.approx(act, abs=1e-5)
    for bad in ("L1.N3@2", "L9.N0", "L1.ATTN", "nonsense"):
        r = client.post("/api/activations", json={"model": "tiny", "prompt": PROMPT, "node": bad})
        assert r.status_code == 422 and r.json()["detail"], bad


def test_tokenize_output_checks_one_token(client):
    ok = client.post("/api/tokenize", json={"model": "tiny", "text": " Mary", "kind": "output"}).json()
    assert ok["tokens"] == [" Mary"]
    bad = client.post("/api/tokenize", json={"model": "tiny", "text": " Maryzzqx", "kind": "output"})
    assert bad.status_code == 422 and "one token" in bad.json()["detail"]
    prompt = client.post("/api/tokenize", json={"model": "tiny", "text": " Mary"}).json()
    assert prompt["tokens"][-1] == " Mary" and len(prompt["tokens"]) == 2  # prompts get BOS


def test_frontend_is_served_with_spa_fallback(client):
    assert "id=root" in client.get("/").text
    assert "id=root" in client.get("/s/AbCdEf0123456789").text  # short links open the app
    assert client.get("/assets/app.js").text == "console.log(1)"
    r = client.get("/api/not-a-route")
    assert r.status_code == 404 and r.json()["detail"]
    assert client.get("/openapi.json").json()["info"]["title"] == "Circuit Debugger"
    assert client.get("/../../etc/passwd").status_code in (200, 404) and "root:" not in client.get("/../../etc/passwd").text


def test_openapi_dump_matches_the_live_schema(client):
    from circuit_debugger.server.openapi import schema

    live = client.get("/openapi.json").json()
    assert json.dumps(schema(), sort_keys=True) == json.dumps(live, sort_keys=True)


def test_a_corrupt_share_database_is_named_at_start(tmp_path):
    from circuit_debugger.shares import ShareStoreError

    bad = tmp_path / "inv.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ShareStoreError, match="inv.sqlite: cannot open the investigations database"):
        ShareStore(bad)
