"""Attribution graphs on a GPT-2-small-shaped model (12 layers, d_model 768, 12 heads, d_mlp
3072, context 1024; random weights, a 400-token vocabulary) with 12 transcoders of 8,192
latents (random weights, TopK k=64: 64 active latents per token, a realistic L0): time and peak
memory of a graph, as a ratio to one bare forward+backward of the same model (HuggingFace).

    PYTHONPATH=backend .venv/bin/python benchmarks/bench_graph_large.py [--tokens 64,512] [--max-nodes 4096]

Goal: <= 30x at 64 tokens. Each graph runs in a fresh subprocess so its peak RSS is its own
(reported as the rise over the process's RSS after loading the model).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))
sys.path.insert(0, str(ROOT / "tests"))


def build_dir(root: Path) -> Path:
    from safetensors.torch import save_file

    from helpers import build_gpt2_dir

    model_dir = build_gpt2_dir(root / "gpt2-small-shaped", n_layer=12, n_embd=768, n_head=12, n_positions=1024)
    g = torch.Generator().manual_seed(0)
    for l in range(12):
        d = root / "tcs" / f"tc{l}"
        d.mkdir(parents=True)
        save_file({"W_enc": torch.randn(768, 8192, generator=g) / 768 ** 0.5, "b_enc": 0.1 * torch.randn(8192, generator=g),
                   "W_dec": torch.randn(8192, 768, generator=g) / 8192 ** 0.5, "b_dec": 0.1 * torch.randn(768, generator=g)},
                  str(d / "sae_weights.safetensors"))
        (d / "cfg.json").write_text(json.dumps({"architecture": "topk", "k": 64, "d_in": 768, "d_sae": 8192, "d_out": 768,
                                                "hook_name": f"blocks.{l}.ln2.hook_normalized",
                                                "hook_name_out": f"blocks.{l}.hook_mlp_out"}))
    return model_dir


def child(model_dir: str, tc_dir: str, tokens: int, max_nodes: int) -> None:
    torch.set_num_threads(1)
    from transformers import GPT2LMHeadModel

    from circuit_debugger.autoencoders import load_onto
    from circuit_debugger.autoencoders.attribution_graph import build
    from circuit_debugger.loading import load_model

    m = load_model(model_dir, name="gpt2-small-shaped")
    assert load_onto(m, Path(tc_dir)) == {}
    g = torch.Generator().manual_seed(1)
    ids = [m.codec.bos_id] + torch.randint(5, 300, (tokens - 1,), generator=g).tolist()
    hf = GPT2LMHeadModel.from_pretrained(model_dir).eval()
    toks = torch.tensor([ids])

    def bare():
        hf.zero_grad(set_to_none=True)
        out = hf(toks).logits
        (out[0, -1, 10] - out[0, -1, 11]).backward()

    bare()
    ts = []
    for _ in range(3):
        t0 = time.perf_counter()
        bare()
        ts.append(time.perf_counter() - t0)
    bare_s = sorted(ts)[1]
    del hf
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    out = build(m, ids, 10, 11, len(ids) - 1, max_nodes=max_nodes)
    graph_s = time.perf_counter() - t0
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"tokens": tokens, "bare_ms": bare_s * 1e3, "graph_ms": graph_s * 1e3, "ratio": graph_s / bare_s,
                      "peak_rise_mb": (rss1 - rss0) / 1024, "peak_rss_mb": rss1 / 1024,
                      "internal_total": out["n_internal_total"], "with_rows": out["n_internal_with_rows"],
                      "kept_latents": out["n_latents_kept"], "edges": len(out["edges"]),
                      "json_kb": len(json.dumps(out)) / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", default="64,512")
    ap.add_argument("--max-nodes", type=int, default=1024)
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child[0], a.child[1], int(a.child[2]), int(a.child[3]))
        return
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_dir(Path(tmp))
        print("tokens | bare fwd+bwd ms | graph ms | ratio (goal <= 30 at 64) | peak RSS rise MB | internal nodes "
              "(with rows) | kept latents | edges | JSON KB")
        for n in [int(x) for x in a.tokens.split(",")]:
            r = subprocess.run([sys.executable, __file__, "--child", str(model_dir), str(Path(tmp) / "tcs"), str(n),
                                str(a.max_nodes)], capture_output=True, text=True)
            if r.returncode != 0:
                print(f"{n} | failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
                continue
            x = json.loads(r.stdout.strip().splitlines()[-1])
            print(f"{n} | {x['bare_ms']:.1f} | {x['graph_ms']:.0f} | {x['ratio']:.1f} | {x['peak_rise_mb']:.0f} | "
                  f"{x['internal_total']} ({x['with_rows']}) | {x['kept_latents']} | {x['edges']} | {x['json_kb']:.0f}")


if __name__ == "__main__":
    main()
