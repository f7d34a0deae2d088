"""Mining cost at scale: a GPT-2-small-shaped model (random weights: 12 layers, d 768, 50,257
vocabulary) with every head and neuron (36,864) plus one 24,576-latent residual TopK SAE (k = 64) per
layer (294,912 latents), as a ratio to a bare HuggingFace forward over the same tokens (goal ≤ 3×),
and the peak resident memory (the miner's state is O(nodes × k); one batch of activations is
O(batch tokens × nodes)).

    PYTHONPATH=backend .venv/bin/python benchmarks/bench_mine_gpt2.py [--tokens 2048] [--batch 4] [--ctx 64] [--clock wall|cpu]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))
sys.path.insert(0, str(ROOT / "tests"))


def rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--ctx", type=int, default=64)
    ap.add_argument("--latents", type=int, default=24576)
    ap.add_argument("--k", type=int, default=64, help="active latents per token (TopK SAEs)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="cpu: this process's CPU time (steadier than wall time on a machine others load)")
    a = ap.parse_args()
    clock = time.process_time if a.clock == "cpu" else time.perf_counter
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    from transformers import GPT2Config, GPT2LMHeadModel

    from helpers import build_tokenizer

    from circuit_debugger.autoencoders import place
    from circuit_debugger.autoencoders.format import Autoencoder
    from circuit_debugger.explanations.mine import Config, mine
    from circuit_debugger.loading import load_model

    with tempfile.TemporaryDirectory() as tmp:
        hf = GPT2LMHeadModel(GPT2Config()).eval()
        hf.save_pretrained(tmp)
        build_tokenizer().save_pretrained(tmp)
        m = load_model(tmp, name="gpt2-shape")
    d, F, L = 768, a.latents, 12
    g = torch.Generator().manual_seed(1)
    for l in range(L):
        # TopK with k = 64: the L0 of public residual SAEs (random ReLU ones would be unrealistically dense)
        ae = Autoencoder(f"res{l}", torch.randn(d, F, generator=g) / d ** 0.5, torch.zeros(F),
                         torch.randn(F, d, generator=g) / F ** 0.5, torch.zeros(d), f"blocks.{l}.hook_resid_pre",
                         activation="topk", k=a.k)
        place(m, ae, f"res{l}")
    rss_model = rss_gib()
    rows = torch.randint(0, 50257, (max(1, a.tokens // a.ctx), a.ctx), generator=g)
    rows[:, 0] = m.codec.bos_id
    valid = torch.ones_like(rows, dtype=torch.bool)
    valid[:, 0] = False
    cfg = Config(batch=a.batch)
    t = clock()
    with torch.no_grad():
        for b in range(0, len(rows), cfg.batch):
            hf(rows[b:b + cfg.batch])
    bare = clock() - t
    t = clock()
    miner = mine(m, rows, valid, cfg, progress=False)
    mined = clock() - t
    n, nodes = int(valid.sum()), miner.s["top_val"].shape[0]
    state = sum(v.numel() * v.element_size() for v in miner.s.values()) / 2 ** 30
    print(f"torch {torch.__version__}, {a.threads} thread(s), {a.clock} clock, load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs; {n} tokens in {len(rows)} rows of {a.ctx}, batch {a.batch}; "
          f"{nodes} nodes (144 heads, 36,864 neurons, {L} × {F} residual-SAE latents)")
    print(f"bare forward: {bare:.2f} s ({n / bare:.0f} tok/s); mining: {mined:.2f} s ({n / mined:.0f} tok/s); "
          f"ratio {mined / bare:.2f} (goal <= 3)")
    print(f"miner state {state:.2f} GiB (nodes × k); peak RSS {rss_gib():.2f} GiB (after loading model + SAEs: "
          f"{rss_model:.2f} GiB)")


if __name__ == "__main__":
    main()
