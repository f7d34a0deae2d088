"""Builders for small random models used by the tests (no hub, no shipped weights needed)."""

from __future__ import annotations

from pathlib import Path

import torch

CORPUS = [
    "When Mary and John went to the store, John gave a drink to Mary.",
    "When Alice and Bob went to the park, Bob gave a ball to Alice.",
    "The war lasted from the year 1732 to the year 1750.",
    "The cat sat on the mat and the dog sat on the rug.",
    "After Tom and Anna met at the school, Tom handed a book to Anna.",
] * 20


def build_tokenizer(vocab_size: int = 400):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>")


def build_gpt2_dir(path: Path, *, n_layer=2, n_embd=32, n_head=4, n_positions=64, seed=0, vocab_size=400) -> Path:
    """A random GPT-2 (HF layout) with perturbed layer norms, saved to `path`."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = build_tokenizer(vocab_size)
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=n_positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
                     initializer_range=0.15, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    model = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln" in name and name.endswith("weight"):
                p.copy_(1 + 0.3 * torch.randn_like(p))
            elif "ln" in name and name.endswith("bias") or name.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def paced_executor(recipes: dict, pause: float = 0.15, n: int = 1):
    """Real job worker processes; each task starts `pause` s late, so that a job of the tiny
    model (pieces of milliseconds) is still running when a test watches its progress or cancels
    it (the coordinator reads the cancel flag every 0.5 s), on a quiet machine or a loaded one."""
    import time

    from circuit_debugger.jobs import LocalExecutor

    class PacedExecutor(LocalExecutor):
        def run(self, task, stop):
            time.sleep(pause)
            return super().run(task, stop)

    return PacedExecutor(recipes, n=n)


JOB_WORDS = "the cat sat on a mat while Mary and John went to the store and the park to buy milk".split()


def job_client(tiny, executor, root, lines: int = 400, **settings):
    """An app on `tiny` whose job folder is `root`, with a corpus `corpora/c.txt` of `lines`
    lines of JOB_WORDS (mining and training jobs name corpora inside the folder)."""
    from fastapi.testclient import TestClient

    from circuit_debugger.engine import Debugger
    from circuit_debugger.server.app import Settings, create_app

    (root / "corpora").mkdir(parents=True, exist_ok=True)
    text = [" ".join(JOB_WORDS[(i * 7 + j) % len(JOB_WORDS)] for j in range(12 + i % 5)) for i in range(lines)]
    (root / "corpora" / "c.txt").write_text("\n".join(text))
    s = Settings(models=[], serve_frontend=False, job_executor=executor, mining_dir=str(root), **settings)
    return TestClient(create_app(s, debugger=Debugger([tiny]), failed={}), raise_server_exceptions=False)


def wait_job(c, jid, until=("done", "failed", "cancelled"), timeout: float = 180, cond=lambda j: True) -> dict:
    """Poll a job until its status is in `until` and `cond` holds (AssertionError after `timeout` s)."""
    import time

    t0 = time.time()
    while time.time() - t0 < timeout:
        j = c.get(f"/api/jobs/{jid}").json()
        if j["status"] in until and cond(j):
            return j
        time.sleep(0.02)
    raise AssertionError(f"job {jid}: {j}")
