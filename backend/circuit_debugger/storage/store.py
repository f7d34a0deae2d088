"""One store for shares, prompt sets, jobs and job results, over SQLite or PostgreSQL.

Shares and prompt sets are insert-only under unguessable ids, committed (SQLite:
synchronous=FULL) before the id is returned, so an id a client received survives a crash.
There is no process-wide lock: SQLite's WAL lets readers go on while another process writes,
and a write that cannot get the database within the busy timeout is answered 503 (retry), not
queued."""

from __future__ import annotations

import json
import secrets
import threading
import time
from contextlib import nullcontext
from typing import Optional

from sqlalchemy import delete, exc, insert, select, update

from ..errors import NotFound, UserError
from .engine import label, make_engine, translated
from .errors import StorageBusy, StorageDamaged, StorageError
from .migrate import upgrade
from .tables import job_locks, jobs, metadata

MAX_BYTES = {"investigations": 256 * 1024, "promptsets": 4 * 1024 * 1024}
ID_BYTES = 12  # 96 random bits -> 16 url-safe characters
FINAL = ("done", "failed", "cancelled")
STOPPED = "the server process running this job stopped"


class _Lost(Exception):
    """A lock take-over raced with another replica's (the caller looks again)."""


def new_id() -> str:
    return secrets.token_urlsafe(ID_BYTES)


class Store:
    def __init__(self, target: str = ":memory:", busy_timeout: float = 2.0, migrate: bool = True):
        self.target = str(target)
        self.label = label(self.target)
        self.busy_timeout = busy_timeout
        try:
            self.engine = make_engine(self.target, busy_timeout)
            self.dialect = self.engine.dialect.name
            if migrate:
                with translated():
                    self.revision = upgrade(self.engine, self.label)
        except StorageError:
            raise
        except (StorageBusy, StorageDamaged, exc.SQLAlchemyError, OSError, ValueError) as e:
            why = getattr(e, "orig", None) or e
            raise StorageError(f"{self.label}: cannot open the investigations database ({why})") from None
        # one in-memory SQLite connection is shared by every thread: serialise its use
        self._memory_lock = threading.Lock() if self.target == ":memory:" else None

    def _guard(self):
        return self._memory_lock or nullcontext()

    def _table(self, name: str):
        if name not in MAX_BYTES:
            raise ValueError(name)
        return metadata.tables[name]

    # ---- shares and prompt sets: insert-only ----
    def create(self, state: dict, table: str = "investigations") -> dict:
        t = self._table(table)
        text = json.dumps(state, sort_keys=True, separators=(",", ":"))
        limit = MAX_BYTES[table]
        if len(text.encode()) > limit:
            raise UserError(f"too large to store ({len(text.encode())} bytes; at most {limit})", 413)
        created = time.time()
        damaged = None
        for _ in range(8):
            sid = new_id()
            try:
                with self._guard(), translated(), self.engine.begin() as conn:
                    conn.execute(insert(t).values(id=sid, created=created, version=int(state.get("v", 1)), state=text))
                return {"id": sid, "created": created, "state": json.loads(text)}
            except exc.IntegrityError:  # an id collision: draw again, never overwrite
                continue
            except StorageDamaged as e:  # the id's place in the index is on a damaged page: another id lands elsewhere
                damaged = e
                continue
        if damaged is not None:
            raise damaged
        raise RuntimeError("could not draw a fresh share id")

    def get(self, sid: str, table: str = "investigations") -> dict:
        t = self._table(table)
        with self._guard(), translated(), self.engine.connect() as conn:
            row = conn.execute(select(t.c.created, t.c.state).where(t.c.id == sid)).first()
        if row is None:
            raise NotFound(f"no {'shared investigation' if table == 'investigations' else 'prompt set'} with id {sid!r}")
        try:
            return {"id": sid, "created": row[0], "state": json.loads(row[1])}
        except ValueError:
            raise StorageDamaged(f"stored record {sid!r} is damaged (not JSON); run `circuit-debugger db check`") from None

    # ---- jobs: the one mutable table ----
    def job_create(self, kind: str, model: str, request: dict, total: int, time_limit: float) -> str:
        now = time.time()
        jid = new_id()
        with self._guard(), translated(), self.engine.begin() as conn:
            conn.execute(insert(jobs).values(id=jid, kind=kind, model=model, status="queued", created=now, updated=now,
                                             deadline=now + time_limit, done=0, total=total, cancel=False,
                                             request=json.dumps(request, sort_keys=True), error=None, result=None))
        return jid

    def job_create_locked(self, kind: str, model: str, request: dict, total: int, time_limit: float, folder: str,
                          stale_after: float) -> str:
        """Create a job that alone writes `folder` (a server-owned job folder's key), on every
        replica: the job row and the folder's lock are inserted in one transaction, so of two
        submissions (on any replicas) one commits and the other finds the lock. A lock whose job
        has finished, or is active with a heartbeat older than `stale_after` seconds (its
        replica died; that job is then marked failed), is taken over by a compare-and-set on
        the holder. Otherwise: a 409 naming the job holding it."""
        for _ in range(5):
            now, jid = time.time(), new_id()
            row = dict(id=jid, kind=kind, model=model, status="queued", created=now, updated=now,
                       deadline=now + time_limit, done=0, total=total, cancel=False,
                       request=json.dumps(request, sort_keys=True), error=None, result=None)
            try:
                with self._guard(), translated(), self.engine.begin() as conn:
                    conn.execute(insert(jobs).values(**row))
                    conn.execute(insert(job_locks).values(folder=folder, job=jid, acquired=now))
                return jid
            except exc.IntegrityError:  # the folder is locked: by whom, and is that job alive?
                pass
            try:
                with self._guard(), translated(), self.engine.begin() as conn:
                    held = conn.execute(select(job_locks.c.job, jobs.c.status, jobs.c.updated)
                                        .select_from(job_locks.outerjoin(jobs, jobs.c.id == job_locks.c.job))
                                        .where(job_locks.c.folder == folder)).first()
                    if held is None:  # released meanwhile: insert again
                        continue
                    holder, status, updated = held
                    if status in ("queued", "running") and now - updated <= stale_after:
                        raise UserError(f"job {holder} is {status} on this already (one job writes a job folder); "
                                        "poll it, or cancel it first", 409)
                    if status in ("queued", "running"):
                        conn.execute(update(jobs).where(jobs.c.id == holder, jobs.c.status.not_in(FINAL))
                                     .values(status="failed", error=STOPPED, updated=now))
                    conn.execute(insert(jobs).values(**row))
                    took = conn.execute(update(job_locks).where(job_locks.c.folder == folder, job_locks.c.job == holder)
                                        .values(job=jid, acquired=now)).rowcount
                    if took != 1:
                        raise _Lost()  # another replica took it first: roll back and look again
                return jid
            except (_Lost, exc.IntegrityError):
                continue
        raise StorageBusy("the job folder's lock is contended; retry shortly")

    def job_unlock(self, folder: str, jid: str) -> None:
        """Free `folder` if `jid` still holds it (a finished job's lock is free anyway)."""
        with self._guard(), translated(), self.engine.begin() as conn:
            conn.execute(delete(job_locks).where(job_locks.c.folder == folder, job_locks.c.job == jid))

    def job_newest(self, kind: str, model: str) -> Optional[dict]:
        """The most recently finished job of `kind` on `model` that is done (its result), or None."""
        with self._guard(), translated(), self.engine.connect() as conn:
            row = conn.execute(select(jobs.c.id, jobs.c.updated, jobs.c.result)
                               .where(jobs.c.kind == kind, jobs.c.model == model, jobs.c.status == "done")
                               .order_by(jobs.c.updated.desc(), jobs.c.id).limit(1)).first()
        if row is None or not row[2]:
            return None
        return {"id": row[0], "updated": row[1], "result": json.loads(row[2])}

    def job_get(self, jid: str, with_result: bool = True) -> dict:
        cols = [c for c in jobs.c if with_result or c.name != "result"]
        with self._guard(), translated(), self.engine.connect() as conn:
            row = conn.execute(select(*cols).where(jobs.c.id == jid)).mappings().first()
        if row is None:
            raise NotFound(f"no job with id {jid!r}")
        out = dict(row)
        out["request"] = json.loads(out["request"])
        if with_result:
            out["result"] = json.loads(out["result"]) if out["result"] else None
        out["cancel"] = bool(out["cancel"])
        return out

    def job_update(self, jid: str, *, only_if_active: bool = True, **values) -> bool:
        """Set fields (status, done, total, error, result as a dict); False if the job had
        already finished (a cancelled job's late result is not written over its status)."""
        if "result" in values and values["result"] is not None:
            values["result"] = json.dumps(values["result"], sort_keys=True)
        values["updated"] = time.time()
        q = update(jobs).where(jobs.c.id == jid)
        if only_if_active:
            q = q.where(jobs.c.status.not_in(FINAL))
        with self._guard(), translated(), self.engine.begin() as conn:
            return conn.execute(q.values(**values)).rowcount == 1

    def job_cancel(self, jid: str) -> dict:
        self.job_get(jid, with_result=False)  # 404 for an unknown id
        with self._guard(), translated(), self.engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == jid, jobs.c.status.not_in(FINAL)).values(cancel=True))
            conn.execute(update(jobs).where(jobs.c.id == jid, jobs.c.status == "queued")
                         .values(status="cancelled", updated=time.time()))
        return self.job_get(jid, with_result=False)

    def job_flags(self, jid: str) -> tuple[bool, float]:
        """(cancel asked, deadline): what a coordinator polls between shards."""
        with self._guard(), translated(), self.engine.connect() as conn:
            row = conn.execute(select(jobs.c.cancel, jobs.c.deadline).where(jobs.c.id == jid)).first()
        return (True, 0.0) if row is None else (bool(row[0]), float(row[1]))

    def close(self) -> None:
        self.engine.dispose()


def open_store(target: Optional[str] = None, busy_timeout: float = 2.0) -> Store:
    return Store(target or ":memory:", busy_timeout)
