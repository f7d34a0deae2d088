"""Circuit evaluation cost: a circuit of the first N heads of the default model on the
ready-made IOI set, all three criteria, plus batched dataset attribution on the same set.

    .venv/bin/python benchmarks/bench_circuit.py [--nodes 10] [--prompts 100] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))

from circuit_debugger.circuits import evaluate_circuit  # noqa: E402
from circuit_debugger.dataset_attribution import summarize  # noqa: E402
from circuit_debugger.loading import load_model  # noqa: E402
from circuit_debugger.promptsets import builtin  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--prompts", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    m = load_model("default")
    ps = builtin("ioi", m.tokenize, n=a.prompts, seed=0)
    heads = [f"L{l}.H{h}" for l in range(m.shape.n_layers) for h in range(m.shape.n_heads)][:a.nodes]
    t0 = time.perf_counter()
    s = summarize(m, ps)
    print(f"dataset attribution, {a.prompts} prompts: {(time.perf_counter() - t0) * 1000:.0f} ms "
          f"(mean logit diff {s['metric_mean']:.2f} ± {s['metric_std']:.2f})")
    r = evaluate_circuit(m, ps, heads)
    c, f = r["cost"], r["faithfulness"]
    print(f"circuit of {len(heads)} heads, {a.prompts} prompts: {c['elapsed_ms'] / 1000:.1f} s, {c['configs']} ablation sets "
          f"in {c['forwards']} batched forwards; faithfulness {f['fraction']:.3f}, worst incompleteness "
          f"{r['completeness']['relative']:.3f} of F(M)")


if __name__ == "__main__":
    main()
