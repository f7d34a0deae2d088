"""A job's progress as Server-Sent Events, against a real uvicorn with httpx streaming: events
arrive in order and the stream ends when the job ends or is cancelled; streams hold no
admission slot but have their own per-client cap (429), a lifetime and heartbeats; a client
that goes away frees its stream slot; access tokens hold, through a short-lived ticket for the
browser's EventSource."""

import json
import time

import httpx
import pytest

from circuit_debugger.engine import Debugger
from helpers import paced_executor
from circuit_debugger.server.access import add_token, ticket_for, token_hash
from circuit_debugger.server.app import Settings, create_app
from test_hostile_load import serving
from test_jobs import LONG, SET

RANK = {"queued": 0, "running": 1, "done": 2, "failed": 2, "cancelled": 2}


@pytest.fixture(scope="module")
def executor(tiny_dir):
    ex = paced_executor({"tiny": {"name": "tiny", "spec": str(tiny_dir)}})
    yield ex
    ex.close()


def make_app(tiny, executor, tmp_path, **kw):
    kw = {"stream_heartbeat": 0.2, **kw}
    settings = Settings(models=[], serve_frontend=False, share_db=str(tmp_path / "db.sqlite"), job_executor=executor, **kw)
    return create_app(settings, debugger=Debugger([tiny]), failed={})


def read_events(response, until=None, timeout: float = 60.0):
    """[(event, id, data)] and the number of `:` comment lines, until the stream ends (or
    `until(events)` is true); `response`: a streamed response or its iter_lines() to go on with."""
    events, comments, fields = [], 0, {}
    t0 = time.monotonic()
    for line in response.iter_lines() if hasattr(response, "iter_lines") else response:
        assert time.monotonic() - t0 < timeout, "the stream went on too long"
        if line.startswith(":"):
            comments += 1
        elif line == "":
            if "data" in fields:
                events.append((fields.get("event", "message"), fields.get("id"), json.loads(fields["data"])))
                if until and until(events):
                    break
            fields = {}
        else:
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value
    return events, comments


def queued_job(app) -> str:
    """A job recorded in the database that no worker runs: it stays queued (streams stay open)."""
    return app.state.shares.job_create("dataset_attribute", "tiny", {}, total=3, time_limit=3600)


def test_events_arrive_in_order_and_the_stream_ends_with_the_job(tiny, executor, tmp_path):
    app = make_app(tiny, executor, tmp_path, batch_size=2)
    with serving(app) as port, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
        body = {"model": "tiny", "promptset": SET, "top_k": 10, "drill": 3}
        job = c.post("/api/jobs/dataset/attribute", json=body).json()
        assert job["total"] >= 6  # 24 rows in pieces of <= 2 of one length
        t0 = time.monotonic()
        with c.stream("GET", f"/api/jobs/{job['id']}/events") as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            assert r.headers["cache-control"] == "no-store"
            events, pings = read_events(r)
        states = [d for e, _, d in events if e == "job"]
        assert [e for e, _, _ in events][-1] == "end" and events[-1][2] == {"status": "done"}
        ids = [int(i) for _, i, _ in events]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        assert all(RANK[a["status"]] <= RANK[b["status"]] and a["done"] <= b["done"] for a, b in zip(states, states[1:]))
        assert len({s["done"] for s in states}) >= 3  # progress, not just the start and the end
        assert states[-1]["status"] == "done" and states[-1]["done"] == states[-1]["total"] == job["total"]
        assert all("result" not in s and "request" not in s for s in states)
        assert pings >= 1 and time.monotonic() - t0 < 60  # heartbeats between events; it ended by itself
        # a stream opened after the end: the final state, then the end, at once
        with c.stream("GET", f"/api/jobs/{job['id']}/events") as r:
            events, _ = read_events(r, timeout=5)
        assert [(e, d["status"]) for e, _, d in events] == [("job", "done"), ("end", "done")]
        assert c.get(f"/api/jobs/{job['id']}").json()["result"]["n_prompts"] == 24
        assert c.get("/api/jobs/no-such-job/events").status_code == 404


def test_a_cancelled_job_ends_its_stream(tiny, executor, tmp_path):
    app = make_app(tiny, executor, tmp_path)
    with serving(app) as port, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
        jid = c.post("/api/jobs/circuit/evaluate", json=LONG).json()["id"]
        with c.stream("GET", f"/api/jobs/{jid}/events") as r:
            lines = r.iter_lines()
            read_events(lines, until=lambda ev: ev[-1][2]["status"] == "running")
            assert c.post(f"/api/jobs/{jid}/cancel").json()["cancel"] is True
            t0 = time.monotonic()
            more, _ = read_events(lines, timeout=15)
        assert time.monotonic() - t0 < 10
        assert [e for e, _, _ in more][-2:] == ["job", "end"] and more[-1][2] == {"status": "cancelled"}
        assert any(d.get("cancel") for e, _, d in more if e == "job")  # the cancel request itself was an event


def test_streams_are_capped_per_client_hold_no_admission_slot_and_end_at_their_lifetime(tiny, executor, tmp_path):
    app = make_app(tiny, executor, tmp_path, max_streams_per_client=2, max_pending=1, max_pending_per_client=1,
                   stream_lifetime=1.5)
    jid = queued_job(app)
    url = f"/api/jobs/{jid}/events"
    with serving(app) as port:
        base = f"http://127.0.0.1:{port}"
        a, b, d = httpx.Client(base_url=base, timeout=10), httpx.Client(base_url=base, timeout=10), httpx.Client(base_url=base, timeout=10)
        try:
            ra, rb = a.send(a.build_request("GET", url), stream=True), b.send(b.build_request("GET", url), stream=True)
            assert ra.status_code == rb.status_code == 200
            # two streams open, and one admission slot in all: ordinary requests still go through
            assert d.post("/api/tokenize", json={"model": "tiny", "text": "Mary and John"}).status_code == 200
            third = d.get(url)
            assert third.status_code == 429 and "2 job progress streams" in third.json()["detail"], third.text
            assert third.headers["retry-after"]
            ra.close()  # the client goes away: its slot is freed once the server notices (a heartbeat at most)
            a.close()
            t0 = time.monotonic()
            while True:
                with d.stream("GET", url) as again:
                    if again.status_code == 200:
                        events, _ = read_events(again, timeout=5)  # and a stream ends at its lifetime
                        break
                assert time.monotonic() - t0 < 3, "the dropped client's slot was not freed"
                time.sleep(0.1)
            assert [e for e, _, _ in events] == ["job", "reopen"] and events[0][2]["status"] == "queued"
        finally:
            for x in (a, b, d):
                x.close()
        time.sleep(0.5)
        assert app.state.job_streams.open == {}  # every slot given back


def test_access_tokens_hold_and_a_ticket_opens_one_jobs_stream(tiny, executor, tmp_path):
    tokens = tmp_path / "tokens"
    token = add_token(tokens, "ada")
    app = make_app(tiny, executor, tmp_path, auth_token_file=str(tokens))
    jid, other = queued_job(app), queued_job(app)
    app.state.shares.job_update(jid, status="cancelled")  # ended: its stream closes at once
    with serving(app) as port, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
        auth = {"Authorization": f"Bearer {token}"}
        assert c.get(f"/api/jobs/{jid}/events").status_code == 401
        assert c.post(f"/api/jobs/{jid}/ticket").status_code == 401
        with c.stream("GET", f"/api/jobs/{jid}/events", headers=auth) as r:
            assert r.status_code == 200 and read_events(r, timeout=5)[0][-1][0] == "end"
        t = c.post(f"/api/jobs/{jid}/ticket", headers=auth).json()
        assert t["expires"] > time.time() + 60
        with c.stream("GET", f"/api/jobs/{jid}/events", params={"ticket": t["ticket"]}) as r:
            assert r.status_code == 200 and read_events(r, timeout=5)[0][-1][2] == {"status": "cancelled"}
        expires, mac = t["ticket"].split(".")
        past = int(time.time()) - 1
        good = ticket_for(token_hash(token), other, int(expires))
        bad = [good[:-1] + ("1" if good[-1] == "0" else "0"),  # tampered
               f"{expires}.{mac}",  # another job's stream
               ticket_for(token_hash(token), other, past),  # expired
               ticket_for(token_hash(token), other, int(time.time()) + 3600),  # longer than a ticket may last
               ticket_for(token_hash("cdt_not-a-token"), other, int(expires))]  # not from a known token
        with c.stream("GET", f"/api/jobs/{other}/events", params={"ticket": good}) as r:
            assert r.status_code == 200  # (the right one does)
        for ticket in bad:
            assert c.get(f"/api/jobs/{other}/events", params={"ticket": ticket}).status_code == 401, ticket
        # a ticket opens the stream only: not the job itself, nor another route
        assert c.get(f"/api/jobs/{jid}", params={"ticket": t["ticket"]}).status_code == 401
