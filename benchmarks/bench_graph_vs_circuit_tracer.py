"""Our attribution graph vs circuit-tracer 0.5.0 on the same CPU, model, transcoders, prompt and
target (the logit difference), one thread each; prints the ratio to circuit-tracer's fastest
batch size.

    python3 -m venv .ct-venv && .ct-venv/bin/pip install torch==2.13.0 \\
        && .ct-venv/bin/pip install -r benchmarks/requirements-circuit-tracer.txt
    PYTHONPATH=backend .venv/bin/python benchmarks/bench_graph_vs_circuit_tracer.py [--repeats 5]

Goal: ratio <= 0.7. circuit-tracer runs in `benchmarks/ct_side.py` under `.ct-venv` (its own
transformers pin), loading the default model's weights and our transcoders (TopK) into its
TransformerLens replacement model. Both build the unpruned graph and prune at 0.8 / 0.98; ours
also finds each node's top heads (`attention`) — QK edges are off (the default "ov" attention
has no head nodes).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--ct-python", default=str(ROOT / ".ct-venv" / "bin" / "python"))
    ap.add_argument("--batch-sizes", default="8,16,32,64,128,512")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(1)
    from circuit_debugger.autoencoders import REPO_AUTOENCODERS
    from circuit_debugger.autoencoders.attribution_graph import build
    from circuit_debugger.loading import DEFAULT_MODEL_DIR, load_model

    m = load_model("default")
    ids = m.tokenize("When Mary and John went to the store, John gave a drink to")
    ids = ids[:1] + [ids[1]] + ids[1:]  # 16 tokens: "When When Mary and John ..."
    t, d = m.codec.output_token(" Mary"), m.codec.output_token(" John")

    def ours():
        return build(m, ids, t, d, len(ids) - 1)

    def time_ours():
        ours()
        ts = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            ours()
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts) * 1000

    def time_ct(batch_sizes: str) -> dict:
        cmd = [a.ct_python, str(ROOT / "benchmarks" / "ct_side.py"), "--model-dir", str(DEFAULT_MODEL_DIR),
               "--tc-dir", str(REPO_AUTOENCODERS / "default"), "--ids", json.dumps(ids), "--target", str(t),
               "--distractor", str(d), "--repeats", str(a.repeats), "--batch-sizes", batch_sizes]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    # the machine may be shared: alternate the two, and report each round's ratio and the median
    ct = time_ct(a.batch_sizes)
    best_bs, best = min(ct["times_ms"].items(), key=lambda kv: kv[1])
    print(f"torch {torch.__version__}, 1 thread, {len(ids)} tokens, medians of {a.repeats}")
    print("circuit-tracer 0.5.0 by batch size (ms): " + ", ".join(f"{k}: {v:.1f}" for k, v in ct["times_ms"].items()))
    ratios = []
    for r in range(a.rounds):
        mine = time_ours()
        theirs = time_ct(best_bs)["times_ms"][best_bs]
        ratios.append(mine / theirs)
        print(f"round {r + 1}: ours {mine:.1f} ms, circuit-tracer (batch {best_bs}) {theirs:.1f} ms, ratio {mine / theirs:.2f}")
    print(f"ratio (median of rounds): {statistics.median(ratios):.2f} (goal <= 0.7)")
    g = ours()
    print(f"target value: ours {g['target']['value']:.5f}, circuit-tracer's model {ct['logit_diff']:.5f}")
    print(f"pruned at 0.8/0.98 — ours (circuit-tracer definition): {g['n_latents_kept']} latents, {len(g['edges'])} edges "
          f"of {g['n_active_latents']} active; circuit-tracer: {ct['pruned']['features']} features, "
          f"{ct['pruned']['edges']} edges of {ct['pruned']['active_features']} active (it zeroes position 0)")


if __name__ == "__main__":
    main()
