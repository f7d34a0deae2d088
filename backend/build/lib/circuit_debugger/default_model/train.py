"""Train the embedded default model (a 3-layer GPT-2) from scratch on the generated corpus.

    python -m circuit_debugger.default_model.train [--steps 4000] [--work .cache/default-train]

Deterministic given --seed; resumable (checkpoints in --work every --every steps); shows a
progress bar. Writes a HuggingFace model directory (config.json, model.safetensors,
tokenizer files) plus reference_prompts.json to --out.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from pathlib import Path

import torch

from . import corpus as C
from .tokenizer import train_tokenizer

OUT = Path(__file__).resolve().parents[1] / "models" / "default"
ANSWER_WEIGHT = 10.0
REPEAT_WEIGHT = 5.0


def model_config(vocab_size: int, bos: int):
    from transformers import GPT2Config

    return GPT2Config(vocab_size=vocab_size, n_positions=64, n_embd=128, n_layer=3, n_head=4, n_inner=512,
                      activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                      bos_token_id=bos, eos_token_id=bos, tie_word_embeddings=True)


def encode_example(tok, rng: random.Random, train_pairs, vocab_size: int) -> tuple[list[int], list[float]]:
    """Token ids (BOS first) and per-target-token loss weights (len(ids) - 1)."""
    bos = tok.bos_token_id
    if rng.random() < 0.20:  # uniformly random tokens, repeated: the standard induction test
        seq = [rng.randrange(1, vocab_size) for _ in range(rng.randint(8, 20))]
        ids = [bos] + seq + seq
        w = [1.0] * len(seq) + [REPEAT_WEIGHT] * len(seq)
        return ids, w
    ex = C.sample(rng, train_pairs)
    ids = [bos] + tok.encode(ex.prefix, add_special_tokens=False)
    w = [1.0] * (len(ids) - 1)
    if ex.answer:
        ids += tok.encode(ex.answer, add_special_tokens=False)
        w += [ANSWER_WEIGHT] * (len(ids) - 1 - len(w))
    if ex.kind == "induction_words":
        half = len(ids) // 2
        w = [REPEAT_WEIGHT if i + 1 > half else 1.0 for i in range(len(ids) - 1)]
    return ids[:64], w[:63]


def batch(tok, step: int, seed: int, size: int, train_pairs, vocab_size: int):
    rng = random.Random(seed * 1_000_003 + step)
    items = [encode_example(tok, rng, train_pairs, vocab_size) for _ in range(size)]
    n = max(len(i) for i, _ in items)
    ids = torch.full((size, n), tok.bos_token_id, dtype=torch.long)
    w = torch.zeros(size, n - 1)
    for r, (i, ww) in enumerate(items):
        ids[r, :len(i)] = torch.tensor(i)
        w[r, :len(ww)] = torch.tensor(ww)
    return ids, w


def lr_at(step: int, steps: int, peak: float) -> float:
    if step < 100:
        return peak * (step + 1) / 100
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - 100) / max(1, steps - 100))))


def reference_prompts(n: int = 64, seed: int = 12345) -> list[str]:
    """A held-out sample of the corpus mix, used for mean ablation."""
    rng = random.Random(seed)
    train, held = C.name_pairs()
    return [C.sample(rng, train + held).prefix for _ in range(n)]


def main(argv=None) -> None:
    from safetensors.torch import load_file, save_file
    from tqdm import tqdm
    from transformers import GPT2LMHeadModel

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=14000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--every", type=int, default=250)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", type=Path, default=Path(".cache/default-train"))
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    tok = train_tokenizer(seed=a.seed)
    V = len(tok)
    model = GPT2LMHeadModel(model_config(V, tok.bos_token_id))
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.98), weight_decay=0.01)
    train_pairs, _ = C.name_pairs(a.seed)
    a.work.mkdir(parents=True, exist_ok=True)
    state_file = a.work / "state.json"
    start = 0
    if state_file.exists():  # resume
        start = json.loads(state_file.read_text())["step"]
        model.load_state_dict(load_file(str(a.work / "model.safetensors")), strict=False)
        model.tie_weights()
        opt.load_state_dict(torch.load(a.work / "optim.pt", weights_only=True))
        print(f"resuming at step {start}")
    model.train()
    bar = tqdm(range(start, a.steps), initial=start, total=a.steps, desc="train default model")
    for step in bar:
        ids, w = batch(tok, step, a.seed, a.batch, train_pairs, V)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, a.steps, a.lr)
        logits = model(ids).logits[:, :-1]
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, V), ids[:, 1:].reshape(-1), reduction="none")
        loss = (nll * w.reshape(-1)).sum() / w.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if (step + 1) % a.every == 0 or step + 1 == a.steps:
            sd = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
            save_file(sd, str(a.work / "model.safetensors"))
            torch.save(opt.state_dict(), a.work / "optim.pt")
            state_file.write_text(json.dumps({"step": step + 1}))
    model.eval()
    a.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(a.out)
    tok.save_pretrained(a.out)
    (a.out / "reference_prompts.json").write_text(json.dumps({"prompts": reference_prompts()}, indent=1))
    print(f"saved to {a.out}")


if __name__ == "__main__":
    main()
