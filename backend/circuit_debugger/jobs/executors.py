"""Where tasks run, off the interactive path: worker processes on this machine (embedded, the
default; needs nothing installed) or Ray actors on a cluster (`serve --ray auto|ADDRESS`).

Both hold one model copy per worker (loaded on first use, never the server's own, so no
interactive request waits on a job's lock), run one task at a time per worker, and share the
same contract: `run(task, stop)` blocks until the task's outcome, polling `stop()` (which
returns why to stop, or None); a stopped task's worker is killed (cancellation does not wait
for the task), and a task whose worker died is run again on a fresh one (`retries` counts)."""

from __future__ import annotations

import multiprocessing
import queue
import threading
from pathlib import Path
from typing import Callable, Optional

from ..errors import UserError

POLL_S = 0.2
MAX_ATTEMPTS = 3


class Cancelled(Exception):
    """The job was cancelled or ran out of time (the message says which)."""


class TaskFailed(Exception):
    """The task raised (not a bad request): the message is the error."""


def _settle(out: tuple):
    if out[0] == "ok":
        return out[1]
    if out[0] == "user":
        raise UserError(out[1], out[2])
    raise TaskFailed(out[1])


class _Pool:
    """Slots for `n` workers, each None (not started) or a started worker."""

    def __init__(self, n: int):
        self.n = n
        self.idle: queue.Queue = queue.Queue()
        for _ in range(n):
            self.idle.put(None)
        self.retries = 0
        self._lock = threading.Lock()

    def take(self, stop: Callable[[], Optional[str]]):
        while True:
            try:
                return self.idle.get(timeout=POLL_S)
            except queue.Empty:
                why = stop()
                if why:
                    raise Cancelled(why) from None

    def run(self, task: dict, stop: Callable[[], Optional[str]]):
        why = stop()  # a job of many quick tasks: each would end before `attempt` ever polls
        if why:
            raise Cancelled(why)
        for attempt in range(MAX_ATTEMPTS):
            w = self.take(stop)
            if w is None or not self.alive(w):
                w = self.start()
            try:
                out = self.attempt(w, task, stop)
            except BaseException:  # cancelled, out of time, or the executor failed: the worker goes
                self.kill(w)
                self.idle.put(None)
                raise
            if out is None:  # the worker died under the task: run it again on a fresh one
                with self._lock:
                    self.retries += 1
                self.kill(w)
                self.idle.put(None)
                continue
            self.idle.put(w)
            return _settle(out)
        raise TaskFailed(f"a worker died {MAX_ATTEMPTS} times running this task")


class LocalExecutor(_Pool):
    """`n` worker processes (spawned: a clean interpreter, no inherited locks or threads)."""

    name = "local"

    def __init__(self, recipes: dict, n: int = 1):
        super().__init__(n)
        self.recipes = recipes
        self.ctx = multiprocessing.get_context("spawn")
        self.workers: list = []

    def start(self):
        from .tasks import worker_main

        parent, child = self.ctx.Pipe()
        p = self.ctx.Process(target=worker_main, args=(child, self.recipes), daemon=True, name="cd-job-worker")
        p.start()
        child.close()
        w = (p, parent)
        with self._lock:
            self.workers = [x for x in self.workers if x[0].is_alive()] + [w]
        return w

    def alive(self, w) -> bool:
        return w[0].is_alive()

    def kill(self, w) -> None:
        p, conn = w
        if p.is_alive():
            p.kill()
        p.join(5)
        conn.close()

    def attempt(self, w, task: dict, stop):
        p, conn = w
        try:
            conn.send(task)
            while True:
                if conn.poll(POLL_S):
                    return conn.recv()
                if not p.is_alive():
                    return None
                why = stop()
                if why:
                    raise Cancelled(why)
        except (EOFError, BrokenPipeError, ConnectionResetError):
            return None

    def pids(self) -> list[int]:
        with self._lock:
            return [p.pid for p, _ in self.workers if p.is_alive()]

    def close(self) -> None:
        with self._lock:
            workers, self.workers = self.workers, []
        for w in workers:
            self.kill(w)


class RayExecutor(_Pool):
    """`n` Ray actors, each holding a model replica. `address`: 'auto' (join a running cluster,
    or start one on this machine) or a cluster address."""

    name = "ray"

    def __init__(self, recipes: dict, n: int = 2, address: str = "auto", num_cpus: Optional[int] = None):
        super().__init__(n)
        import ray

        self.ray = ray
        self.recipes = recipes
        if not ray.is_initialized():
            backend = str(Path(__file__).resolve().parents[2])  # workers import this package from here
            env = {"env_vars": {"PYTHONPATH": backend}}
            try:
                ray.init(address=None if address == "local" else address, runtime_env=env, include_dashboard=False,
                         num_cpus=num_cpus, logging_level="WARNING", log_to_driver=False)
            except ConnectionError:
                if address != "auto":
                    raise
                ray.init(runtime_env=env, include_dashboard=False, num_cpus=num_cpus, logging_level="WARNING",
                         log_to_driver=False)
        self.Actor = ray.remote(num_cpus=1, max_restarts=0)(_ShardActor)
        self.actors: list = []

    def start(self):
        a = self.Actor.remote(self.recipes)
        with self._lock:
            self.actors.append(a)
        return a

    def alive(self, a) -> bool:
        return a in self.actors

    def kill(self, a) -> None:
        with self._lock:
            if a in self.actors:
                self.actors.remove(a)
        try:
            self.ray.kill(a)
        except Exception:  # noqa: BLE001 - already gone
            pass

    def attempt(self, a, task: dict, stop):
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, WorkerCrashedError

        ref = a.run.remote(task)
        while True:
            ready, _ = self.ray.wait([ref], timeout=POLL_S)
            if ready:
                try:
                    return self.ray.get(ref)
                except (RayActorError, ActorDiedError, ActorUnavailableError, WorkerCrashedError):
                    return None
            why = stop()
            if why:
                raise Cancelled(why)

    def pids(self) -> list[int]:
        with self._lock:
            actors = list(self.actors)
        out = []
        for a in actors:
            try:
                out.append(self.ray.get(a.pid.remote(), timeout=10))
            except Exception:  # noqa: BLE001
                pass
        return out

    def close(self) -> None:
        with self._lock:
            actors, self.actors = self.actors, []
        for a in actors:
            try:
                self.ray.kill(a)
            except Exception:  # noqa: BLE001
                pass


class _ShardActor:
    """A Ray actor: this process's model copies and the task runner (see tasks.py)."""

    def __init__(self, recipes: dict):
        self.recipes = recipes

    def pid(self) -> int:
        import os

        return os.getpid()

    def run(self, task: dict) -> tuple:
        from circuit_debugger.jobs.tasks import outcome

        return outcome(task, self.recipes)
