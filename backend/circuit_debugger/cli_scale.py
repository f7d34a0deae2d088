"""Serve flags for scale: interactive replicas on one machine (`--workers N`: uvicorn worker
processes sharing the database), job executors (`--job-workers`, `--ray`), the dataset batch
size and the jobs' time limit."""

from __future__ import annotations

import dataclasses
import json
import os

SETTINGS_ENV = "CD_SERVE_SETTINGS"  # how `--workers N` hands the settings to each worker process


def add_scale_flags(s) -> None:
    env = os.environ.get
    s.add_argument("--workers", type=int, default=int(env("CD_WORKERS") or 1),
                   help="interactive server processes on this machine, sharing the database (env CD_WORKERS); "
                        "each loads its own model copies")
    s.add_argument("--job-workers", type=int, default=int(env("CD_JOB_WORKERS") or 1),
                   help="worker processes (or Ray actors) running jobs, each with its own model copies (env CD_JOB_WORKERS)")
    s.add_argument("--ray", default=env("CD_RAY") or None, metavar="auto|ADDRESS",
                   help="run jobs on a Ray cluster: 'auto' joins a running one (or starts one here), or give its address")
    s.add_argument("--batch-size", type=int, default=int(env("CD_BATCH_SIZE") or 64),
                   help="prompts per forward in dataset attribution: bounds its memory (env CD_BATCH_SIZE)")
    s.add_argument("--job-time-limit", type=float, default=float(env("CD_JOB_TIME_LIMIT") or 3600),
                   help="seconds after which the server stops a job (env CD_JOB_TIME_LIMIT)")
    s.add_argument("--request-time-limit", type=float, default=float(env("CD_REQUEST_TIME_LIMIT") or 300),
                   help="seconds after which an immediate dataset/circuit request is stopped with a 503 "
                        "(env CD_REQUEST_TIME_LIMIT); jobs have their own limit")
    s.add_argument("--mining-dir", default=env("CD_MINING_DIR") or None, metavar="DIR",
                   help="enables explanation-mining jobs: corpora are read from DIR/corpora, each job's "
                        "checkpoints and store are written under DIR/jobs (env CD_MINING_DIR)")


def scale_settings(ap, a) -> dict:
    for flag, value in (("--workers", a.workers), ("--job-workers", a.job_workers), ("--batch-size", a.batch_size)):
        if value < 1:
            ap.error(f"{flag} must be at least 1 (got {value})")
    for flag, value in (("--job-time-limit", a.job_time_limit), ("--request-time-limit", a.request_time_limit)):
        if not value > 0:
            ap.error(f"{flag} must be positive (got {value})")
    return {"job_workers": a.job_workers, "ray": a.ray, "batch_size": a.batch_size, "job_time_limit": a.job_time_limit,
            "request_time_limit": a.request_time_limit, "mining_dir": a.mining_dir}


def run_workers(settings, host: str, port: int, workers: int, **uvicorn_options) -> None:
    """`workers` uvicorn worker processes on one port; each builds the app from the same
    settings (passed in the environment) and loads its own model copies."""
    import uvicorn

    fields = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings) if f.name != "job_executor"}
    os.environ[SETTINGS_ENV] = json.dumps(fields)
    uvicorn.run("circuit_debugger.cli_scale:app_from_env", factory=True, host=host, port=port, workers=workers,
                **uvicorn_options)


def app_from_env():
    from .server.app import Settings, create_app

    return create_app(Settings(**json.loads(os.environ[SETTINGS_ENV])))
