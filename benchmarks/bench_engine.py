"""Engine speed as ratios to bare HuggingFace passes of the same weights, in one process.

    .venv/bin/python benchmarks/bench_engine.py [--repeats 5] [--threads 1] [--quick]

Models: a GPT-2-small-shaped model with random weights (12 layers, d_model 768, vocabulary
50257) and the embedded default model (when built). Prompts of 16 and 64 tokens.
Every timed call starts with ALL of the engine's caches empty (clean passes, cores, means,
results), as a user's first request does; the cached cases are measured and named separately.
Reported per (model, length):
  attribution / bare fwd+bwd    full "why A and not B" (every node), fresh, vs HF forward + backward  goal ≤ 1.5
  intervene / bare fwd          one-head ablation re-run, fresh (clean pass + edited pass) vs HF fwd  goal ≤ 1.2
  intervene cached / bare fwd   the same with the clean pass already cached (toggling live in the UI)
  repeat ms                     a repeated identical request (whole result cached; engine; over HTTP) goal ≤ 5 ms
  patching / attribution        per-head zero-ablation (one forward per head) vs attribution          goal ≥ 50
  spearman                      rank correlation of act×grad head effects with exact ablation
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))


def timed(fn, repeats: int) -> float:
    fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def fresh(dbg) -> None:
    """Empty every cache the Debugger holds (each LRU attribute, whatever it is named), so the
    next call pays what a user's first request pays."""
    from circuit_debugger.cache import LRU

    for name, value in list(vars(dbg).items()):
        if isinstance(value, LRU):
            setattr(dbg, name, LRU(value.size))


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra = a.argsort().argsort().double()
    rb = b.argsort().argsort().double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


WORDS = ("When Mary and John went to the store , John gave a drink to Mary . The war lasted from the year "
         "1732 to the year 1750 . The cat sat on the mat and the dog sat on the rug . After Tom and Anna met at "
         "the school , Tom handed a book to Anna .").split()


def prompt_of_length(m, n: int) -> str:
    """A text of exactly n tokens (BOS included): words while they fit, then single-token filler."""
    text = ""
    for w in WORDS * 10:
        nxt = (text + " " + w) if text else w
        if len(m.codec.encode_prompt(nxt)) > n:
            break
        text = nxt
    while len(m.codec.encode_prompt(text)) < n:
        text += " the" if len(m.codec.encode_prompt(text + " the")) == len(m.codec.encode_prompt(text)) + 1 else "."
    assert len(m.codec.encode_prompt(text)) == n, (n, len(m.codec.encode_prompt(text)))
    return text


def gpt2_small_dir(tmp: Path) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    sys.path.insert(0, str(ROOT / "tests"))
    from helpers import build_tokenizer

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12)
    GPT2LMHeadModel(cfg).eval().save_pretrained(tmp)
    tok: PreTrainedTokenizerFast = build_tokenizer(400)
    tok.save_pretrained(tmp)
    return tmp


def bench(name: str, directory: Path, lengths, repeats: int, patch_repeats: int) -> list[dict]:
    from fastapi.testclient import TestClient
    from transformers import GPT2LMHeadModel

    from circuit_debugger.engine import Debugger
    from circuit_debugger.loading import load_model
    from circuit_debugger.server.app import Settings, create_app

    hf = GPT2LMHeadModel.from_pretrained(directory).eval()  # independent copy: the bridge mutates its own
    m = load_model(str(directory), name=name)
    m.max_tokens = m.n_ctx
    dbg = Debugger([m])
    client = TestClient(create_app(Settings(models=[]), debugger=dbg))
    rows = []
    torch.Generator().manual_seed(1)
    for n in lengths:
        prompt = prompt_of_length(m, n)
        ids = m.tokenize(prompt)
        toks = torch.tensor([ids])
        target, distractor = " Mary", " John"
        ta, tb = m.codec.output_token(target), m.codec.output_token(distractor)

        def hf_fwd():
            with torch.no_grad():
                hf(toks)

        def hf_fwd_bwd():
            hf.zero_grad(set_to_none=True)
            out = hf(toks).logits
            (out[0, -1, ta] - out[0, -1, tb]).backward()

        def attribute():
            fresh(dbg)
            return dbg.attribute(name, prompt, target, distractor, top_k=100)

        iv = [{"node": "L0.H1", "op": "zero"}]

        def intervene():
            fresh(dbg)
            return dbg.intervene(name, prompt, iv, target=target, distractor=distractor)

        def intervene_cached_clean():
            clean = dbg._clean  # the clean pass (baseline) stays cached, as when toggling live
            fresh(dbg)
            dbg._clean = clean
            return dbg.intervene(name, prompt, iv, target=target, distractor=distractor)

        t_f, t_fb = timed(hf_fwd, repeats), timed(hf_fwd_bwd, repeats)
        t_attr, t_iv = timed(attribute, repeats), timed(intervene, repeats)
        t_iv_cached = timed(intervene_cached_clean, repeats)
        body = {"model": name, "prompt": prompt, "target": target, "distractor": distractor, "top_k": 100}
        dbg.attribute(name, prompt, target, distractor, top_k=100)
        t_rep = timed(lambda: dbg.attribute(name, prompt, target, distractor, top_k=100), repeats * 4)
        client.post("/api/attribute", json=body)
        t_rep_http = timed(lambda: client.post("/api/attribute", json=body), repeats * 4)

        # TransformerLens-style activation patching: one forward per head, zeroing it.
        L, H = m.shape.n_layers, m.shape.n_heads
        bridge = m.bridge
        exact = torch.zeros(L, H)

        def patch_all():
            with torch.no_grad():
                base = bridge(toks)[0, -1]
                ld0 = float(base[ta] - base[tb])
                for l in range(L):
                    for h in range(H):
                        def zero(z, hook, h=h):
                            z = z.clone()
                            z[:, :, h] = 0
                            return z
                        out = bridge.run_with_hooks(toks, fwd_hooks=[(f"blocks.{l}.attn.hook_z", zero)])[0, -1]
                        exact[l, h] = ld0 - float(out[ta] - out[tb])

        t_patch = timed(patch_all, patch_repeats)
        res = attribute()
        fresh(dbg)
        full = dbg.attribute(name, prompt, target, distractor, top_k=None)
        est = torch.zeros(L, H)
        for row in full["nodes"]:
            if row["kind"] == "head":
                est[row["layer"], row["index"]] = row["total_effect"]
        rows.append({
            "model": name, "tokens": n, "fwd_ms": t_f * 1e3, "fwd_bwd_ms": t_fb * 1e3, "attr_ms": t_attr * 1e3,
            "attr/fwd_bwd": t_attr / t_fb, "intervene/fwd": t_iv / t_f,
            "intervene_cached/fwd": t_iv_cached / t_f, "repeat_ms": t_rep * 1e3,
            "repeat_http_ms": t_rep_http * 1e3, "patching/attr": t_patch / t_attr,
            "spearman": spearman(est.flatten(), exact.flatten()), "sum_residual": res["sum_check"]["residual"],
        })
        print(fmt(rows[-1]), flush=True)
    return rows


COLS = ["model", "tokens", "fwd_ms", "fwd_bwd_ms", "attr_ms", "attr/fwd_bwd", "intervene/fwd", "intervene_cached/fwd",
        "repeat_ms",
        "repeat_http_ms", "patching/attr", "spearman", "sum_residual"]


def fmt(r: dict) -> str:
    return " | ".join(f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in COLS)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="16 tokens only, fewer repeats")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    lengths = [16] if a.quick else [16, 64]
    reps = 2 if a.quick else a.repeats
    print(f"torch {torch.__version__}, {a.threads} thread(s); medians of {reps} runs")
    print(" | ".join(COLS))
    from circuit_debugger.loading import DEFAULT_MODEL_DIR

    if (DEFAULT_MODEL_DIR / "config.json").exists():
        bench("default", DEFAULT_MODEL_DIR, lengths, reps, reps)
    else:
        print("default model not built; skipped")
    with tempfile.TemporaryDirectory() as tmp:
        bench("gpt2-small-shape", gpt2_small_dir(Path(tmp)), lengths, reps, 1)
    print("goals: attr/fwd_bwd <= 1.5, intervene/fwd <= 1.2, repeat_ms <= 5, patching/attr >= 50; every timed "
          "call starts with all caches empty except intervene_cached (clean pass cached) and repeat (result cached)")


if __name__ == "__main__":
    main()
