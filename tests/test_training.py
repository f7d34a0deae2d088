"""Long jobs are deterministic and resumable: stopping and resuming gives the same weights as
running straight through."""

import json

import torch
from safetensors.torch import load_file


def test_default_model_training_resumes_deterministically(tmp_path):
    from circuit_debugger.default_model.train import main

    common = ["--batch", "4", "--every", "3", "--threads", "1"]
    main(["--steps", "6", "--work", str(tmp_path / "w1"), "--out", str(tmp_path / "o1")] + common)
    main(["--steps", "3", "--work", str(tmp_path / "w2"), "--out", str(tmp_path / "o2")] + common)
    assert json.loads((tmp_path / "w2" / "state.json").read_text())["step"] == 3
    early = load_file(str(tmp_path / "o2" / "model.safetensors"))
    main(["--steps", "6", "--work", str(tmp_path / "w2"), "--out", str(tmp_path / "o2")] + common)  # resumes at 3
    straight = load_file(str(tmp_path / "o1" / "model.safetensors"))
    resumed = load_file(str(tmp_path / "o2" / "model.safetensors"))
    # within the warm-up the schedule does not depend on the total, so resuming must match exactly
    assert straight.keys() == resumed.keys() and all(torch.equal(straight[k], resumed[k]) for k in straight)
    assert any(not torch.equal(early[k], resumed[k]) for k in early), "steps 3..6 changed nothing: vacuous"


def test_relu_autoencoder_training_resumes(tiny, tmp_path):
    """... on the user's own corpus (CSV, a named column), as `train --corpus` reads it."""
    import csv

    from helpers import CORPUS

    from circuit_debugger.autoencoders import load
    from circuit_debugger.autoencoders.train import train_relu
    from circuit_debugger.explanations.build import CorpusSpec, corpus

    with (tmp_path / "c.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["body"]] + [[t] for t in CORPUS * 4])
    ids = corpus(tiny, 2000, 1, CorpusSpec(str(tmp_path / "c.csv"), "body", 32))
    assert ids.shape[1] == 32 and ids[:, 1:].numel() >= 2000
    train_relu(tiny, ids, "transcoder", [1], 32, 1e-3, 0, tmp_path / "w", tmp_path / "a", steps=400, batch=4)
    train_relu(tiny, ids, "transcoder", [1], 32, 1e-3, 0, tmp_path / "w2", tmp_path / "b", steps=200, batch=4)
    train_relu(tiny, ids, "transcoder", [1], 32, 1e-3, 0, tmp_path / "w2", tmp_path / "b", steps=400, batch=4)
    a, b = load(tmp_path / "a" / "tc1"), load(tmp_path / "b" / "tc1")
    assert a.activation == "standard" and a.is_transcoder
    assert torch.allclose(a.W_enc, b.W_enc) and torch.allclose(a.W_dec, b.W_dec)
