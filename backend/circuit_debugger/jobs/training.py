"""Autoencoder training (ReLU+L1, autoencoders/train.py's `ReluTrainer`) as a job: resumable,
in chunks of training steps.

As for mining (mining.py), the corpus is a file name inside `<mining_dir>/corpora` (or the
default model's built-in corpus) and the output goes to the server's folder
`<mining_dir>/jobs/<key>/`, the key hashing everything that fixes the result; so the same
request submitted again continues from the newest complete checkpoint and ends with the same
weights, bit for bit, as one uninterrupted run (every step depends on (seed, step) and the saved
state only). Layers are trained one after another.

Folder: `l<layer>/s<steps>/` checkpoints (state.json written last marks one complete; the
older one is deleted after), then `autoencoders/<name>/` in the SAELens layout (load it with
`--autoencoders MODEL=<that folder>`) and `metrics.json`.

Tasks (run in a worker; the offline trainer is imported there only):
- 'train_plan': steps already done per layer (from the checkpoints);
- 'train_chunk': train one layer up to `upto` steps and checkpoint;
- 'train_write': save the dictionaries and measure them on held-out tokens
  (autoencoders/metrics.py's `reconstruction_metrics`: L0, variance explained, dead latents,
  CE loss recovered).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional

from ..errors import UserError

CHUNK_STEPS = 200  # training steps per task: the grain of progress, cancellation and resumption
_CORPUS: dict = {}  # this worker's last corpora (key -> rows): chunks of one job reuse them


def _ids(m, task: dict, split: str):
    from ..explanations.build import CorpusSpec, corpus
    from ..explanations.corpus import CorpusError

    spec = CorpusSpec(task["corpus"], task["column"], task["ctx"]) if task["corpus"] else None
    n, seed = (task["tokens"], task["seed"] + 1000) if split == "mine" else (task["eval_tokens"], task["seed"] + 2000)
    key = json.dumps([m.name, task["corpus"], task["column"], task["ctx"], n, seed, split])
    if key not in _CORPUS:
        try:
            rows = corpus(m, n, seed, spec, split=split)
        except CorpusError as e:
            raise UserError(str(e)) from None
        if len(_CORPUS) >= 2:  # the training and the held-out corpus
            _CORPUS.pop(next(iter(_CORPUS)))
        _CORPUS[key] = rows
    return _CORPUS[key]


def latest(folder: Path) -> Optional[Path]:
    done = sorted(p for p in folder.glob("s*") if (p / "state.json").exists())
    return done[-1] if done else None


def _trainer(m, task: dict, layer: int):
    from ..autoencoders.train import ReluTrainer

    t = ReluTrainer(m, _ids(m, task, "mine"), task["ae_kind"], layer, task["latents"], task["l1"], task["seed"],
                    task["batch"])
    last = latest(Path(task["folder"]) / f"l{layer}")
    if last is not None:
        t.load(last)
    return t


def run_training_task(m, task: dict):
    folder = Path(task["folder"])
    for layer in task["layers"]:
        if not 0 <= layer < m.shape.n_layers:
            raise UserError(f"layer {layer}: model {m.name!r} has layers 0..{m.shape.n_layers - 1}")
    if task["kind"] == "train_plan":
        out = {}
        for layer in task["layers"]:
            last = latest(folder / f"l{layer}")
            out[str(layer)] = json.loads((last / "state.json").read_text())["step"] if last else 0
        return {"steps": out}
    if task["kind"] == "train_chunk":
        t = _trainer(m, task, task["layer"])
        upto = min(task["upto"], task["steps"])
        if t.step < upto:
            t.run(upto)
            layer_dir = folder / f"l{task['layer']}"
            t.save(layer_dir / f"s{t.step:08d}")
            for old in layer_dir.glob("s*"):
                if old.name != f"s{t.step:08d}":
                    shutil.rmtree(old, ignore_errors=True)
        return {"step": t.step}
    if task["kind"] == "train_write":
        from ..autoencoders.format import save
        from ..autoencoders.metrics import reconstruction_metrics

        held = _ids(m, task, "held")
        rows = []
        for layer in task["layers"]:
            t = _trainer(m, task, layer)
            if t.step != task["steps"]:
                raise UserError(f"layer {layer} has {t.step} of {task['steps']} steps; submit the job again")
            ae = t.autoencoder()
            save(ae, folder / "autoencoders" / ae.name)
            rows.append({"layer": layer, "kind": task["ae_kind"], **reconstruction_metrics(m, ae, held)})
        (folder / "metrics.json").write_text(json.dumps(rows, indent=1))
        return {"metrics": rows, "autoencoders": f"{folder.name}/autoencoders"}
    raise ValueError(f"unknown training task {task['kind']!r}")
