"""Exact-effects column and generation cost on the default model (IOI prompt): exact zero- and
mean-ablation of every head (and every neuron), integrated gradients, against one attribution
request; and generation with / without interventions. Prints medians and ratios, plus how well
act×grad and IG rank heads against exact ablation.

    .venv/bin/python benchmarks/bench_effects.py [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))

from circuit_debugger import Debugger, load_model  # noqa: E402

PROMPT = "When Mary and John went to the store, John gave a drink to"


def timed(fn, repeats: int) -> float:
    ts = []
    for _ in range(repeats):
        dbg = Debugger([MODEL])  # a fresh debugger: no cached results (the model's weights are shared)
        dbg.mean_activations(MODEL, MODEL.reference_prompts)  # the corpus means are computed once per server, not timed
        t0 = time.perf_counter()
        fn(dbg)
        ts.append((time.perf_counter() - t0) * 1000)
    return statistics.median(ts)


def main():
    global MODEL
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    MODEL = load_model("default")
    q = dict(model="default", prompt=PROMPT, target=" Mary", distractor=" John")
    base = timed(lambda d: d.attribute(**q), a.repeats)
    rows = [("attribute (one request, act×grad)", base)]
    for label, kw in (("exact zero, 12 heads, no IG", dict(ig_steps=0)),
                      ("exact zero, 12 heads, IG 16 steps", dict(ig_steps=16)),
                      ("exact mean, 12 heads, IG 16 steps", dict(ablation="mean", ig_steps=16)),
                      ("exact zero, heads + 1536 neurons, IG 16", dict(neurons=True, ig_steps=16))):
        rows.append((label, timed(lambda d, kw=kw: d.effects(**q, **kw), a.repeats)))
    for label, kw in (("generate 16 tokens, no interventions", {}),
                      ("generate 16 tokens, with 2 ablations", dict(interventions=[{"node": "L1.H3", "op": "zero"},
                                                                                   {"node": "L2.H1", "op": "zero"}]))):
        rows.append((label, timed(lambda d, kw=kw: d.generate("default", PROMPT, max_new_tokens=16, **kw), a.repeats)))
    print(f"{'what':45s} {'median ms':>10s} {'× attribute':>12s}")
    for label, ms in rows:
        print(f"{label:45s} {ms:10.1f} {ms / base:12.1f}")
    d = Debugger([MODEL])
    for abl in ("zero", "mean"):
        r = d.effects(**q, ablation=abl, ig_steps=16)
        print(f"{abl}-ablation, heads: Spearman(act×grad, exact) = {r['spearman_heads']['estimate']:.2f}, "
              f"Spearman(IG, exact) = {r['spearman_heads']['ig']:.2f}; sign disagreements: "
              f"act×grad {r['sign_disagreements']['estimate']}, IG {r['sign_disagreements']['ig']} of 12; "
              f"flagged rows: act×grad {sum(x['flag'] is not None for x in r['rows'])}, IG {sum(x['ig_flag'] is not None for x in r['rows'])}")


if __name__ == "__main__":
    main()
