"""What a worker runs: one task on its own model copy. A task is a plain dict (it crosses
process boundaries and Ray); its result is plain data (numpy arrays and JSON-able values).

Kinds:
- 'attribute_shard': per-prompt attribution arrays for some rows of a prompt set (one piece
  of at most `batch_size` equal-length rows: the same piece the one-process path computes,
  so merged shards give exactly its numbers);
- 'ablate' and 'circuit': an ablation over a set / a circuit evaluation, whole (their mean
  references need every row).
- 'mine_*' and 'train_*': explanation mining (mining.py) and autoencoder training
  (training.py) in resumable chunks.
"""

from __future__ import annotations

import os
from typing import Optional

MODELS: dict = {}  # this worker's model copies, loaded on first use: name -> DebugModel


def load(recipe: dict):
    """A model from its recipe (what the server loaded it from), cached in this worker."""
    name = recipe["name"]
    if name not in MODELS:
        import torch

        from ..autoencoders import load_onto
        from ..loading import load_model

        torch.set_num_threads(int(os.environ.get("CD_WORKER_THREADS", "1")))
        dtype = getattr(torch, recipe["dtype"]) if recipe.get("dtype") else None
        m = load_model(recipe["spec"], name=None if recipe["spec"] == "default" else name,
                       device=recipe.get("device"), dtype=dtype)
        for directory in recipe.get("autoencoders", []):
            load_onto(m, directory)
        MODELS[name] = m
    return MODELS[name]


def run_task(task: dict, recipes: dict):
    from ..promptsets import PromptSet

    m = load(recipes[task["model"]])
    if task["kind"].startswith("mine_"):
        from .mining import run_mining_task

        return run_mining_task(m, task)
    if task["kind"].startswith("train_"):
        from .training import run_training_task

        return run_training_task(m, task)
    ps = PromptSet.from_dict(task["promptset"])
    kind = task["kind"]
    if kind == "attribute_shard":
        from ..dataset_attribution import per_prompt

        sub = PromptSet(ps.name, [ps.rows[i] for i in task["rows"]], ps.description)
        r = per_prompt(m, sub, task["batch_size"])
        return {"rows": task["rows"], "ids": r["ids"], "metric": r["metric"].numpy(), "direct": r["direct"].numpy(),
                "total": r["total"].numpy(), "slots": {s: v.numpy() for s, v in r["slots"].items()}}
    if kind == "ablate":
        from ..circuits import ablate_over_set

        return ablate_over_set(m, ps, task["nodes"], task["ablation"])
    if kind == "circuit":
        from ..circuits import evaluate_circuit

        return evaluate_circuit(m, ps, task["nodes"], ablation=task["ablation"], n_random=task["n_random"],
                                greedy_steps=task["greedy_steps"], seed=task["seed"])
    raise ValueError(f"unknown task kind {kind!r}")


def outcome(task: dict, recipes: dict) -> tuple:
    """('ok', result) | ('user', message, status) | ('error', text): never raises, so a
    worker survives a bad task."""
    from ..errors import UserError

    try:
        return ("ok", run_task(task, recipes))
    except UserError as e:
        return ("user", e.message, e.status)
    except Exception as e:  # noqa: BLE001 - reported as the job's error
        return ("error", f"{type(e).__name__}: {e}")


def worker_main(conn, recipes: dict) -> None:
    """A local worker process: tasks in, outcomes out, until the pipe closes."""
    while True:
        try:
            task: Optional[dict] = conn.recv()
        except EOFError:
            return
        conn.send(outcome(task, recipes))
