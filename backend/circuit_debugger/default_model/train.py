"""Train an embedded model from scratch on the generated corpus: the default model (a 3-layer
GPT-2, `--arch gpt2`) or the Llama-family model (`--arch llama`: rotary, RMSNorm, gated SiLU MLP,
grouped-query attention). Both train on corpus v3 by default; `--corpus v1` / `v2` reproduce the
earlier models.

    python -m circuit_debugger.default_model.train [--arch gpt2|llama] [--corpus v1|v2|v3] [--steps N]

Deterministic given --seed (and --threads); resumable (checkpoints in --work every --every steps;
`--keep-every K` also keeps a copy of every K-th step's weights under WORK/keep/); shows a progress
bar; records the process CPU time. Writes a HuggingFace model directory (config.json,
model.safetensors, tokenizer files) plus reference_prompts.json and training.json to --out.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch

from . import corpus as C
from .tokenizer import train_tokenizer

MODELS = Path(__file__).resolve().parents[1] / "models"
OUT = MODELS / "default"
# Step counts: the previous session's runs on corpus v3 (held-out families used as validation):
# llama at 10,000 steps overfit the training families, the GPT-2 at 5,000 steps under-trained.
DEFAULTS = {"gpt2": {"out": OUT, "work": Path(".cache/default-train"), "corpus": "v3", "steps": 10000},
            "llama": {"out": MODELS / "llama", "work": Path(".cache/llama-train"), "corpus": "v3", "steps": 5000}}
ANSWER_WEIGHT = 10.0
REPEAT_WEIGHT = 5.0


def model_config(vocab_size: int, bos: int):
    from transformers import GPT2Config

    return GPT2Config(vocab_size=vocab_size, n_positions=64, n_embd=128, n_layer=3, n_head=4, n_inner=512,
                      activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                      bos_token_id=bos, eos_token_id=bos, tie_word_embeddings=True)


def llama_config(vocab_size: int, bos: int):
    """Same width, depth and context as the default GPT-2; 4 query heads share 2 key/value heads."""
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=vocab_size, hidden_size=128, intermediate_size=384, num_hidden_layers=3,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=64,
                       hidden_act="silu", rms_norm_eps=1e-5, rope_theta=10000.0, attention_bias=False,
                       mlp_bias=False, attention_dropout=0.0, bos_token_id=bos, eos_token_id=bos,
                       tie_word_embeddings=True)


def build_model(arch: str, vocab_size: int, bos: int):
    from transformers import GPT2LMHeadModel, LlamaForCausalLM

    if arch == "llama":
        return LlamaForCausalLM(llama_config(vocab_size, bos))
    return GPT2LMHeadModel(model_config(vocab_size, bos))


def encode_example(tok, rng: random.Random, train_pairs, vocab_size: int, corpus=C) -> tuple[list[int], list[float]]:
    """Token ids (BOS first) and per-target-token loss weights (len(ids) - 1)."""
    bos = tok.bos_token_id
    if rng.random() < 0.20:  # uniformly random tokens, repeated: the standard induction test
        seq = [rng.randrange(1, vocab_size) for _ in range(rng.randint(8, 20))]
        ids = [bos] + seq + seq
        w = [1.0] * len(seq) + [REPEAT_WEIGHT] * len(seq)
        return ids, w
    ex = corpus.sample(rng, train_pairs)
    ids = [bos] + tok.encode(ex.prefix, add_special_tokens=False)
    w = [1.0] * (len(ids) - 1)
    if ex.answer:
        ids += tok.encode(ex.answer, add_special_tokens=False)
        w += [ANSWER_WEIGHT] * (len(ids) - 1 - len(w))
    if ex.kind == "induction_words":
        half = len(ids) // 2
        w = [REPEAT_WEIGHT if i + 1 > half else 1.0 for i in range(len(ids) - 1)]
    return ids[:64], w[:63]


def batch(tok, step: int, seed: int, size: int, train_pairs, vocab_size: int, corpus=C):
    rng = random.Random(seed * 1_000_003 + step)
    items = [encode_example(tok, rng, train_pairs, vocab_size, corpus) for _ in range(size)]
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


def reference_prompts(n: int = 64, seed: int = 12345, corpus=C) -> list[str]:
    """A held-out sample of the corpus mix, used for mean ablation."""
    rng = random.Random(seed)
    train, held = C.name_pairs()
    return [corpus.sample(rng, train + held).prefix for _ in range(n)]


def corpus_module(version: str):
    if version == "v1":
        return C
    if version == "v2":
        from . import corpus_v2

        return corpus_v2
    from . import corpus_v3

    return corpus_v3


def main(argv=None) -> None:
    from safetensors.torch import load_file, save_file
    from tqdm import tqdm
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=sorted(DEFAULTS), default="gpt2")
    ap.add_argument("--corpus", choices=["v1", "v2", "v3"], default=None,
                    help="v3 (default); v1 and v2 reproduce the earlier default and llama models")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--every", type=int, default=250)
    ap.add_argument("--keep-every", type=int, default=0, help="also keep every K-th step's weights in WORK/keep/")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    for k, v in DEFAULTS[a.arch].items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    corpus = corpus_module(a.corpus)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    tok = train_tokenizer(seed=a.seed, corpus=a.corpus)
    V = len(tok)
    model = build_model(a.arch, V, tok.bos_token_id)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.98), weight_decay=a.weight_decay)
    train_pairs, _ = C.name_pairs(a.seed)
    a.work.mkdir(parents=True, exist_ok=True)
    state_file = a.work / "state.json"
    start, cpu_s, wall_s = 0, 0.0, 0.0
    if state_file.exists():  # resume
        state = json.loads(state_file.read_text())
        if state.get("arch", "gpt2") != a.arch or state.get("corpus", "v1") != a.corpus:
            raise SystemExit(f"{a.work} holds a {state.get('arch', 'gpt2')}/{state.get('corpus', 'v1')} run; use another --work")
        start, cpu_s, wall_s = state["step"], state.get("cpu_seconds", 0.0), state.get("wall_seconds", 0.0)
        model.load_state_dict(load_file(str(a.work / "model.safetensors")), strict=False)
        model.tie_weights()
        opt.load_state_dict(torch.load(a.work / "optim.pt", weights_only=True))
        print(f"resuming at step {start}")
    model.train()
    bar = tqdm(range(start, a.steps), initial=start, total=a.steps, desc=f"train {a.arch} model")
    t0, w0 = time.process_time(), time.monotonic()
    for step in bar:
        ids, w = batch(tok, step, a.seed, a.batch, train_pairs, V, corpus)
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
            spent, wall = cpu_s + time.process_time() - t0, wall_s + time.monotonic() - w0
            state_file.write_text(json.dumps({"step": step + 1, "arch": a.arch, "corpus": a.corpus, "cpu_seconds": spent,
                                              "wall_seconds": wall}))
            if a.keep_every and (step + 1) % a.keep_every == 0:
                keep = a.work / "keep" / f"step-{step + 1}"
                keep.mkdir(parents=True, exist_ok=True)
                save_file(sd, str(keep / "model.safetensors"))
                (keep / "state.json").write_text(state_file.read_text())
    model.eval()
    a.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(a.out)
    tok.save_pretrained(a.out)
    (a.out / "reference_prompts.json").write_text(json.dumps({"prompts": reference_prompts(corpus=corpus)}, indent=1))
    if a.arch != "gpt2" or a.corpus != "v1":  # what evaluate.py and the card read (the v1 default predates it)
        spent, wall = cpu_s + time.process_time() - t0, wall_s + time.monotonic() - w0
        (a.out / "training.json").write_text(json.dumps({
            "arch": a.arch, "corpus": a.corpus, "steps": a.steps, "batch": a.batch, "lr": a.lr, "seed": a.seed,
            "weight_decay": a.weight_decay, "cpu_minutes": round(spent / 60, 1), "wall_minutes": round(wall / 60),
            "threads": a.threads}, indent=1))
    print(f"saved to {a.out}")


if __name__ == "__main__":
    main()
