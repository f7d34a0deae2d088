"""The whole-response cache (server/response_cache.py): a repeated deterministic request is
answered from memory with the first answer's bytes, never with another request's answer
(interventions included), errors are not kept, memory stays under its bound, and it sits
behind access control."""

import json

import pytest
from fastapi.testclient import TestClient

from circuit_debugger.engine import Debugger
from circuit_debugger.server.app import Settings, create_app
from circuit_debugger.server.response_cache import ResponseStore, canonical_key

PROMPT = "When Mary and John went to the store, John gave a drink to"


def app_for(tiny, **kw):
    dbg = Debugger([tiny])  # its own engine caches: answers here are computed here
    calls = []
    real = dbg.attribute

    def counting(*a, **k):
        calls.append(k.get("interventions"))
        return real(*a, **k)

    dbg.attribute = counting
    app = create_app(Settings(models=[], serve_frontend=False, **kw), debugger=dbg, failed={})
    return TestClient(app, raise_server_exceptions=False), calls


def body(**kw):
    return {"model": "tiny", "prompt": PROMPT, "target": " Mary", "distractor": " John", "top_k": 10, **kw}


def stable(r):
    data = r.json()
    data.pop("elapsed_ms", None)
    return data


IVS = [[], [{"node": "L1.H0", "op": "zero"}], [{"node": "L0.H1", "op": "scale", "value": 0.5}],
       [{"node": "L0.H1", "op": "scale", "value": 0.25}], [{"node": "L1.H0", "op": "zero", "enabled": False}]]


def test_repeats_are_served_from_the_cache_and_never_cross_interventions(tiny):
    cached, calls = app_for(tiny)
    plain, _ = app_for(tiny, response_cache_mb=0)
    first = {}
    for round_ in range(2):  # interleaved: each request's answer must stay its own
        for i, ivs in enumerate(IVS):
            r = cached.post("/api/attribute", json=body(interventions=ivs))
            assert r.status_code == 200, r.text
            if round_ == 0:
                first[i] = r.content
                alone = plain.post("/api/attribute", json=body(interventions=ivs))
                assert stable(r) == stable(alone)  # the same as this request computed on its own
            else:
                assert r.content == first[i]
    assert len(calls) == len(IVS)  # the second round never reached the engine
    answers = {i: json.loads(c) for i, c in first.items()}
    assert answers[0]["interventions"] == [] and answers[1]["interventions"] != []
    assert answers[2]["logit_diff"] != answers[3]["logit_diff"]  # only the scale differs
    assert answers[4]["interventions"] == []  # a disabled intervention is none


def test_key_is_the_canonical_request(tiny):
    client, calls = app_for(tiny)
    a = client.post("/api/attribute", json=body())
    reordered = json.dumps(dict(reversed(list(body().items()))))
    b = client.post("/api/attribute", content=reordered, headers={"content-type": "application/json"})
    assert b.content == a.content and len(calls) == 1
    c = client.post("/api/attribute", json=body(top_k=11))
    assert c.status_code == 200 and c.content != a.content and len(calls) == 2
    d = client.post("/api/attribute?x=1", json=body())  # the query string is part of the request
    assert d.status_code == 200 and len(calls) == 3
    assert canonical_key("POST", "/p", b"", b"", b'{"a": 1, "a": 2}') is None  # duplicated key: never cached
    assert canonical_key("POST", "/p", b"", b"", b"not json") is None
    assert canonical_key("POST", "/p", b"", b"", b'{"a": 1}') != canonical_key("POST", "/p", b"", b"", b'{"a": 1.0}')


def test_errors_and_uncacheable_routes_are_not_kept(tiny):
    client, calls = app_for(tiny)
    for _ in range(2):
        r = client.post("/api/attribute", json=body(distractor=" Mary"))  # the engine refuses it
        assert r.status_code == 422
    assert len(calls) == 2
    state = {"v": 1, "prompt": PROMPT, "target": " Mary", "distractor": " John"}
    ids = {client.post("/api/shares", json={"state": state}).json()["id"] for _ in range(2)}
    assert len(ids) == 2  # a write is never answered from the cache


def test_disabled_cache_recomputes(tiny):
    client, calls = app_for(tiny, response_cache_mb=0)
    for _ in range(2):
        assert client.post("/api/attribute", json=body()).status_code == 200
    assert len(calls) == 2


def test_memory_is_bounded():
    store = ResponseStore(20_000)
    for i in range(200):
        store.put(f"key{i}", [], bytes(1000))
        assert store.bytes <= store.max_bytes
    assert store.bytes == sum(ResponseStore._size(k, b) for k, (_, b) in store.data.items())
    assert store.get("key0") is None and store.get("key199") is not None
    kept = list(store.data)
    store.get(kept[0])  # used: now the last to go
    store.put("new", [], bytes(1000))
    assert kept[0] in store.data and kept[1] not in store.data
    store.put("huge", [], bytes(store.max_entry))  # over an eighth of the bound: not kept
    assert store.get("huge") is None


def test_cached_answers_still_need_a_token(tiny, tmp_path):
    from circuit_debugger.server.access import add_token

    token = add_token(tmp_path / "tokens", "alice")
    client, calls = app_for(tiny, auth_token_file=str(tmp_path / "tokens"))
    ok = client.post("/api/attribute", json=body(), headers={"authorization": f"Bearer {token}"})
    assert ok.status_code == 200 and len(calls) == 1
    assert client.post("/api/attribute", json=body()).status_code == 401
