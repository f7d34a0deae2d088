"""Mining speed on the default model with all its autoencoders, as a ratio to a bare
HuggingFace forward over the same tokens (goal ≤ 3×).

    .venv/bin/python benchmarks/bench_mine.py [--tokens 20000] [--threads 1] [--clock wall|cpu]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=20_000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="cpu: this process's CPU time (steadier than wall time on a machine others load)")
    a = ap.parse_args()
    clock = time.process_time if a.clock == "cpu" else time.perf_counter
    torch.set_num_threads(a.threads)
    from transformers import GPT2LMHeadModel

    from circuit_debugger.explanations.build import corpus
    from circuit_debugger.explanations.mine import Config, mine
    from circuit_debugger.loading import DEFAULT_MODEL_DIR, load_model

    m = load_model("default")
    hf = GPT2LMHeadModel.from_pretrained(DEFAULT_MODEL_DIR).eval()
    rows = corpus(m, a.tokens, seed=5)
    cfg = Config()
    valid = rows != m.codec.bos_id
    t = clock()
    with torch.no_grad():
        for b in range(0, len(rows), cfg.batch):
            hf(rows[b:b + cfg.batch])
    bare = clock() - t
    t = clock()
    miner = mine(m, rows, valid, cfg, progress=False)
    mined = clock() - t
    n = int(valid.sum())
    nodes = miner.s["top_val"].shape[0]
    print(f"torch {torch.__version__}, {a.threads} thread(s), {a.clock} clock, load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs; {n} document tokens in {len(rows)} rows of {rows.shape[1]}; "
          f"{nodes} nodes ({len(m.autoencoders.transcoders)} transcoders, {len(m.autoencoders.saes)} SAEs)")
    print(f"bare forward: {bare:.2f} s ({n / bare:.0f} tok/s); mining: {mined:.2f} s ({n / mined:.0f} tok/s); "
          f"ratio {mined / bare:.2f} (goal <= 3)")


if __name__ == "__main__":
    main()
