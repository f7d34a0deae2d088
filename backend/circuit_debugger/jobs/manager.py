"""Jobs: long work submitted, tracked and stored instead of held on a request.

`submit` checks the request in the server process (bad input is a 4xx at once), records the
job (status 'queued') and starts a coordinator thread. The coordinator cuts the work into
tasks (dataset attribution: pieces of at most `batch_size` equal-length prompts), runs them
on the executor's workers (never on the server's model, so interactive requests do not wait),
records progress after each, merges the pieces exactly, and stores the result. Between polls
it reads the job's cancel flag and deadline from the database, so a cancel sent to any
replica stops it, and it beats a heartbeat so a job whose replica died is reported lost."""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Optional

import numpy as np

from ..errors import UserError
from ..storage import Store
from .executors import Cancelled, TaskFailed

log = logging.getLogger("circuit_debugger.jobs")

KINDS = ("dataset_attribute", "dataset_ablate", "circuit_evaluate", "mine_explanations", "train_autoencoders")
FOLDER_KINDS = ("mine_explanations", "train_autoencoders")  # jobs writing a server-owned folder (one writer each)
HEARTBEAT_S = 5.0
LOST_AFTER_S = 60.0  # a running job whose heartbeat is older than this lost its replica


_MANAGERS: "weakref.WeakSet[JobManager]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    """At interpreter exit: stop running jobs and their workers before Python tears down (a
    coordinator thread left inside torch at finalisation aborts the process)."""
    for manager in list(_MANAGERS):
        manager.close()


class JobManager:
    def __init__(self, store: Store, debugger, executor, batch_size: int = 64, time_limit: float = 3600.0,
                 mining_dir=None):
        self.store, self.dbg, self.executor = store, debugger, executor
        self.mining_dir = mining_dir  # where mining/training jobs read corpora and write (None: no such jobs)
        self.batch_size, self.time_limit = batch_size, time_limit
        self.threads: dict[str, threading.Thread] = {}
        self.closing = threading.Event()
        _MANAGERS.add(self)

    def close(self, wait: float = 5.0) -> None:
        """Stop every running job (marked failed: the server stopped) and the workers."""
        self.closing.set()
        deadline = time.time() + wait
        for t in list(self.threads.values()):
            t.join(max(0.0, deadline - time.time()))
        if self.executor is not None:
            self.executor.close()

    # ---- the API ----
    def submit(self, kind: str, model: str, spec: dict, params: dict, request: dict) -> dict:
        if self.closing.is_set():
            raise UserError("the server is stopping; submit the job again shortly", 503)
        if kind not in KINDS:
            raise UserError(f"unknown job kind {kind!r}")
        m = self.dbg.model(model)
        if m.name not in self.executor.recipes:
            raise UserError(f"model {m.name!r} cannot run jobs (its workers could not load it)", 409)
        if kind in FOLDER_KINDS:
            return self._submit_folder_job(kind, m, params, request)
        ps = self.dbg.prompt_set(model, spec)
        if kind != "dataset_attribute":
            from ..circuits import parse_circuit

            parse_circuit(m, params["nodes"], ps.slot_names)  # a bad node is a 4xx now, not a failed job later
        tasks = self._tasks(kind, m, ps, params)
        jid = self.store.job_create(kind, m.name, request, total=len(tasks), time_limit=self.time_limit)
        t = threading.Thread(target=self._coordinate, args=(jid, kind, m, ps, params, tasks), daemon=True,
                             name=f"job-{jid}")
        self.threads[jid] = t
        t.start()
        return self.get(jid)

    def get(self, jid: str) -> dict:
        j = self.store.job_get(jid)
        if j["status"] == "running" and time.time() - j["updated"] > LOST_AFTER_S and jid not in self.threads:
            self.store.job_update(jid, status="failed", error="the server process running this job stopped")
            j = self.store.job_get(jid)
        return j

    def cancel(self, jid: str) -> dict:
        self.store.job_cancel(jid)
        return self.get(jid)

    def _submit_folder_job(self, kind: str, m, params: dict, request: dict) -> dict:
        """Mining and training: the folder is the server's (a hash of the request, so the same
        request resumes), and one job writes it, across replicas: a database-held lock
        (Store.job_create_locked; a second submission is a 409 naming the running job)."""
        from pathlib import Path

        from .mining import corpus_path, job_folder

        if self.mining_dir is None:
            raise UserError("this server has no job folder (start it with --mining-dir)", 409)
        root = Path(self.mining_dir)
        spec = {**params, "corpus": corpus_path(root, params["corpus"])}
        if kind == "train_autoencoders":
            spec = {**spec, "layers": sorted(set(spec["layers"] if spec["layers"] is not None
                                                 else range(m.shape.n_layers)))}
            bad = [l for l in spec["layers"] if l >= m.shape.n_layers]
            if bad:
                raise UserError(f"layer {bad[0]}: model {m.name!r} has layers 0..{m.shape.n_layers - 1}")
        folder = job_folder(root, m, spec if kind == "mine_explanations" else {"job": kind, **spec})
        base = {"model": m.name, "folder": str(folder), **spec}
        jid = self.store.job_create_locked(kind, m.name, request, total=1, time_limit=self.time_limit,
                                           folder=folder.name, stale_after=LOST_AFTER_S)
        run = self._coordinate_mining if kind == "mine_explanations" else self._coordinate_training
        t = threading.Thread(target=self._folder_job, args=(jid, run, base, folder.name), daemon=True,
                             name=f"job-{jid}")
        self.threads[jid] = t
        t.start()
        return self.get(jid)

    def _folder_job(self, jid: str, run, base: dict, folder: str) -> None:
        try:
            run(jid, base)
        except Exception as e:  # noqa: BLE001 - every ending is recorded on the job
            self._record_failure(jid, e)
        finally:
            try:
                self.store.job_unlock(folder, jid)
            except Exception:  # noqa: BLE001 - the lock frees itself once the job is final
                log.warning("job %s: could not free the lock of folder %s", jid, folder)
            self.threads.pop(jid, None)

    def mined_store(self, model: str):
        """The newest finished mining job's explanation store of `model` (any replica's; the job
        folders are shared), or None: the explanation routes serve it without a restart."""
        from pathlib import Path

        if self.mining_dir is None:
            return None
        newest = self.store.job_newest("mine_explanations", model)
        if newest is None:
            return None
        path = Path(self.mining_dir) / "jobs" / newest["result"]["store"]
        return str(path) if path.is_file() else None

    def _record_failure(self, jid: str, e: Exception) -> None:
        """How a job that did not finish ends, for every coordinator: cancelled (or stopped by
        its time limit), refused (the UserError's message), a failed task, or an internal error
        whose details go to the log only."""
        if isinstance(e, Cancelled):
            why = str(e)
            self.store.job_update(jid, status="cancelled" if why == "cancelled" else "failed",
                                  error=None if why == "cancelled" else why)
        elif isinstance(e, UserError):
            self.store.job_update(jid, status="failed", error=e.message)
        elif isinstance(e, TaskFailed):
            log.error("job %s failed: %s", jid, e)
            self.store.job_update(jid, status="failed", error=f"the job failed: {e}")
        else:
            log.error("job %s failed", jid, exc_info=e)
            try:
                self.store.job_update(jid, status="failed", error="internal error (see the server log)")
            except Exception:  # noqa: BLE001 - the store itself failing: the log has it
                pass

    def _coordinate_mining(self, jid: str, base: dict) -> None:
        """Sequential chunks (each continues the previous checkpoint), then the store; progress
        is in miner batches (+1 for writing the store)."""
        from .mining import CHUNK_BATCHES

        stop = self._stopper(jid)
        if not self.store.job_update(jid, status="running"):
            return
        plan = self.executor.run({**base, "kind": "mine_plan"}, stop)
        n, done = plan["batches"], plan["done"]
        self.store.job_update(jid, total=n + 1, done=done)
        while done < n:
            done = self.executor.run({**base, "kind": "mine_chunk", "upto": done + CHUNK_BATCHES}, stop)["batches"]
            self.store.job_update(jid, done=done)
        result = self.executor.run({**base, "kind": "mine_write"}, stop)
        self.store.job_update(jid, status="done", done=n + 1, result={"model": base["model"], **result})

    def _coordinate_training(self, jid: str, base: dict) -> None:
        """Layer after layer, chunks of CHUNK_STEPS steps (each continues the previous
        checkpoint), then the dictionaries and their metrics; progress is in steps over every
        layer (+1 for the write)."""
        from .training import CHUNK_STEPS

        stop = self._stopper(jid)
        if not self.store.job_update(jid, status="running"):
            return
        steps = self.executor.run({**base, "kind": "train_plan"}, stop)["steps"]
        total = base["steps"] * len(base["layers"])
        self.store.job_update(jid, total=total + 1, done=sum(steps.values()))
        for layer in base["layers"]:
            at = steps[str(layer)]
            while at < base["steps"]:
                at = self.executor.run({**base, "kind": "train_chunk", "layer": layer, "upto": at + CHUNK_STEPS},
                                       stop)["step"]
                steps[str(layer)] = at
                self.store.job_update(jid, done=sum(steps.values()))
        result = self.executor.run({**base, "kind": "train_write"}, stop)
        self.store.job_update(jid, status="done", done=total + 1,
                              result={"model": base["model"], "kind": base["ae_kind"], "layers": base["layers"],
                                      "steps": base["steps"], **result})

    # ---- the work ----
    def _tasks(self, kind: str, m, ps, params: dict) -> list[dict]:
        base = {"model": m.name, "promptset": ps.to_dict()}
        if kind == "dataset_attribute":
            from ..promptsets import batches, split_batches

            return [{**base, "kind": "attribute_shard", "rows": list(b.rows), "batch_size": self.batch_size}
                    for b in split_batches(batches(m, ps), self.batch_size)]
        if kind == "dataset_ablate":
            return [{**base, "kind": "ablate", "nodes": params["nodes"], "ablation": params["ablation"]}]
        return [{**base, "kind": "circuit", **{k: params[k] for k in
                                                ("nodes", "ablation", "n_random", "greedy_steps", "seed")}}]

    def _stopper(self, jid: str):
        last = {"read": 0.0, "beat": time.time(), "why": None}
        lock = threading.Lock()

        def stop() -> Optional[str]:
            now = time.time()
            if self.closing.is_set():
                return "the server stopped while the job ran"
            with lock:
                if last["why"] or now - last["read"] < 0.5:
                    return last["why"]
                last["read"] = now
                try:
                    cancel, deadline = self.store.job_flags(jid)
                except Exception:  # noqa: BLE001 - a busy database: look again at the next poll
                    return None
                if cancel:
                    last["why"] = "cancelled"
                elif now > deadline:
                    last["why"] = f"stopped at the server's time limit ({self.time_limit:g} s)"
                elif now - last["beat"] > HEARTBEAT_S:
                    last["beat"] = now
                    self.store.job_update(jid)
                return last["why"]

        return stop

    def _coordinate(self, jid: str, kind: str, m, ps, params: dict, tasks: list[dict]) -> None:
        stop = self._stopper(jid)
        try:
            if not self.store.job_update(jid, status="running"):
                return  # cancelled while queued
            outs: list = [None] * len(tasks)
            done = 0
            with ThreadPoolExecutor(max(1, min(len(tasks), self.executor.n))) as pool:
                futures = {pool.submit(self.executor.run, t, stop): i for i, t in enumerate(tasks)}
                for f in as_completed(futures):
                    outs[futures[f]] = f.result()
                    done += 1
                    self.store.job_update(jid, done=done)
            result = self._merge(kind, m, ps, params, outs)
            self.store.job_update(jid, status="done", done=len(tasks), result=result)
        except Exception as e:  # noqa: BLE001 - every ending is recorded on the job
            self._record_failure(jid, e)
        finally:
            self.threads.pop(jid, None)

    def _merge(self, kind: str, m, ps, params: dict, outs: list) -> dict:
        head = {"model": m.name, "name": ps.name}
        if kind != "dataset_attribute":
            return {**head, **outs[0]}
        import torch

        from ..dataset_attribution import summarize

        P = len(ps.rows)
        N = outs[0]["direct"].shape[1]
        r = {"metric": torch.zeros(P, dtype=torch.float64), "direct": torch.zeros(P, N, dtype=torch.float64),
             "total": torch.zeros(P, N, dtype=torch.float64),
             "slots": {s: torch.full((P, N), float("nan"), dtype=torch.float64) for s in ps.slot_names}}
        for o in outs:
            rows = torch.tensor(o["rows"])
            for k in ("metric", "direct", "total"):
                r[k][rows] = torch.from_numpy(np.array(o[k]))
            for s, v in o["slots"].items():
                r["slots"][s][rows] = torch.from_numpy(np.array(v))
        r["ids"] = outs[0]["ids"]
        out = summarize(m, ps, params["top_k"], params["drill"], r=r)
        return {**head, **out}


def recipes_for(debugger, settings) -> dict:
    """How a worker loads each model the server has (name -> recipe); models that cannot be
    reloaded from a source (built in memory, tracr testbeds) are left out: no jobs for them."""
    from pathlib import Path

    from ..loading import DEFAULT_MODEL_DIR

    out = {}
    for name, m in debugger.models.items():
        src = str(m.source)
        if name == "default" and Path(src) == Path(DEFAULT_MODEL_DIR):
            spec = "default"
        elif src.startswith("hub:"):
            spec = src[4:]
        elif Path(src).is_dir() and (Path(src) / "config.json").exists():
            spec = src
        else:
            continue
        out[name] = {"name": name, "spec": spec, "device": getattr(settings, "device", None),
                     "dtype": getattr(settings, "dtype", None),
                     "autoencoders": list(getattr(settings, "autoencoders", {}).get(name, []))}
    return out
