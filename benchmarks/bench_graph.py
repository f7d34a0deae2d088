"""Attribution-graph time on the default model with transcoders on every layer, as a ratio to
one bare forward+backward of the same weights (HuggingFace), 16-token prompts.

    .venv/bin/python benchmarks/bench_graph.py [--repeats 5] [--threads 1]

Goal: ratio ≤ 20 and under one second on a CPU here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))
sys.path.insert(0, str(Path(__file__).parent))

from bench_engine import timed  # noqa: E402  (the same median-of-repeats timer)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from transformers import GPT2LMHeadModel

    from circuit_debugger.engine import LRU, Debugger
    from circuit_debugger.loading import DEFAULT_MODEL_DIR, load_model

    m = load_model("default")
    if len(m.autoencoders.transcoders) < m.shape.n_layers:
        raise SystemExit("the default model has no transcoders on every layer (autoencoders/default)")
    hf = GPT2LMHeadModel.from_pretrained(DEFAULT_MODEL_DIR).eval()
    dbg = Debugger([m])
    prompts = [("When Mary and John went to the store, John gave a drink to", " Mary", " John"),
               ("The war lasted from the year 1732 to the year 17", "45", "20"),
               ("After Tom and Anna met at the school, Tom handed a book to", " Anna", " Tom")]
    print(f"torch {torch.__version__}, {a.threads} thread(s); medians of {a.repeats}")
    print("prompt tokens | bare fwd+bwd ms | graph ms | ratio | active latents | kept | completeness | replacement")
    for prompt, t, d in prompts:
        ids = m.tokenize(prompt)
        toks = torch.tensor([ids])
        ta, tb = m.codec.output_token(t), m.codec.output_token(d)

        def bare():
            hf.zero_grad(set_to_none=True)
            out = hf(toks).logits
            (out[0, -1, ta] - out[0, -1, tb]).backward()

        def graph():
            dbg._results = LRU(8)
            return dbg.graph("default", prompt, t, d)

        ts = {"bare": timed(bare, a.repeats), "graph": timed(graph, a.repeats)}
        g = graph()
        print(f"{len(ids)} | {ts['bare'] * 1e3:.1f} | {ts['graph'] * 1e3:.1f} | {ts['graph'] / ts['bare']:.1f} | "
              f"{g['n_active_latents']} | {g['n_latents_kept']} | {g['completeness']:.3f} | {g['replacement_score']:.3f}")


if __name__ == "__main__":
    main()
