"""Dataset attribution's peak memory against --batch-size, and the same set as a job.

    PYTHONPATH=backend .venv/bin/python benchmarks/bench_jobs.py [--rows 2000] [--tokens 63]

Each measurement runs in a fresh process (default model, CPU, 1 thread): peak RSS above the
process's RSS after loading the model, for dataset attribution over `--rows` prompts of
`--tokens` tokens with batch sizes 16, 64, 256 and (with --unbatched) the whole set per token
length, as before batching existed (about 4.4 MB per 63-token row: 8.6 GB for 2,000 rows)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
import torch
torch.set_num_threads(1)
from circuit_debugger.loading import load_model
from circuit_debugger.promptsets import rows_from_items
from circuit_debugger.dataset_attribution import summarize
rows, tokens, batch = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
m = load_model("default")
words = ["the", "store", "park", "went", "and", "to", "a", "drink", "gave", "book"]
def prompt(i):
    ws = [words[(i * 7 + k * 3) % len(words)] for k in range(400)]
    text = "When Mary and John went"
    for w in ws:
        nxt = text + " " + w
        if len(m.tokenize(nxt + " to")) > tokens:
            break
        text = nxt
    return text + " to"
items = [{"prompt": prompt(i), "target": " Mary", "distractor": " John"} for i in range(rows)]
ps = rows_from_items(items, m.tokenize)
lengths = sorted({len(m.tokenize(r.prompt)) for r in ps.rows})
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
summarize(m, ps, 50, 10, None if batch == "none" else int(batch))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"rows": rows, "tokens": lengths, "batch": batch, "peak_above_load_mb": (peak - base) / 1024,
                  "seconds": time.perf_counter() - t0}))
"""


def measure(rows: int, tokens: int, batch: str) -> dict:
    env = {"PYTHONPATH": str(ROOT / "backend"), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-c", CHILD, str(rows), str(tokens), batch], capture_output=True, text=True,
                       env=env, timeout=3600)
    if r.returncode != 0:
        raise SystemExit(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--tokens", type=int, default=63)
    ap.add_argument("--batches", default="16,64,256")
    ap.add_argument("--unbatched", action="store_true", help="also the whole set per forward (needs ~4.4 MB per row)")
    a = ap.parse_args()
    sizes = a.batches.split(",") + (["none"] if a.unbatched else [])
    for b in sizes:
        x = measure(a.rows, a.tokens, b)
        print(f"rows {x['rows']}, tokens {x['tokens']}, batch {b:>5}: peak {x['peak_above_load_mb']:8.0f} MB above the "
              f"loaded model, {x['seconds']:.1f} s")


if __name__ == "__main__":
    main()
