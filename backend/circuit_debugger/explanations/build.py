"""Mine a model's nodes and explain them offline, into one SQLite file.

    python -m circuit_debugger.explanations.build [--model default] [--tokens 60000]
        [--out ../explanations/default.sqlite] [--work ../.cache/mine]

Corpus: for the default model, its corpus generator with a seed of its own (one document per
row); for a tracr testbed, random inputs. Held-out text (another seed) scores explanations.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import torch

REPO_EXPLANATIONS = Path(__file__).resolve().parents[3] / "explanations"


def corpus(model, n_tokens: int, seed: int) -> torch.Tensor:
    if hasattr(model.codec, "tokenizer"):
        from ..autoencoders.train import corpus_ids

        return corpus_ids(model.codec.tokenizer, n_tokens, seed=seed)
    # a testbed: random inputs of its vocabulary, BOS first, padded with BOS
    rng = random.Random(seed)
    vocab = [i for i, t in enumerate(model.codec.input_tokens) if not t.startswith("compiler_")]
    T = model.n_ctx
    rows, count = [], 0
    while count < n_tokens:
        n = rng.randint(1, T - 1)
        rows.append([model.codec.bos_id] + [rng.choice(vocab) for _ in range(n)] + [model.codec.bos_id] * (T - 1 - n))
        count += n
    return torch.tensor(rows)


def write_lens(model, index, k: int = 5) -> dict:
    """Per neuron / latent: the tokens its write promotes (final LN gain, centred); transcoder
    latents also their de-embedding."""
    W = model.W
    gain = W.ln["ln_final"][0] if "ln_final" in W.ln else torch.ones(model.shape.d_model)
    from ..linear import centre as centre_of

    centre = lambda x: centre_of(model, x)
    tok = lambda i: model.codec.output_str(int(i))
    out: dict = {}
    blocks = [("N", l, W.W_out[l], None) for l in range(model.shape.n_layers)]
    blocks += [("T", l, ae.W_dec, ae.W_enc) for l, ae in sorted(model.autoencoders.transcoders.items())]
    blocks += [("S", l, ae.W_dec, None) for l, ae in sorted(model.autoencoders.saes.items())]
    for letter, l, dec, enc in blocks:
        logits = (centre(dec) * gain) @ W.W_U  # [n, vocab]
        top = logits.topk(min(k, logits.shape[1]), dim=1)
        de = (centre(W.W_E) @ centre(enc.T).T).T.topk(k, dim=1) if enc is not None else None
        for i in range(dec.shape[0]):
            entry = {"logit_lens": [{"token": tok(t), "value": round(float(v), 4)}
                                    for v, t in zip(top.values[i], top.indices[i])]}
            if de is not None:
                entry["de_embedding"] = [{"token": model.codec.token_strs([int(t)])[0], "value": round(float(v), 4)}
                                         for v, t in zip(de.values[i], de.indices[i])]
            out[f"L{l}.{letter}{i}"] = entry
    return out


def build(model, out: Path, tokens: int, work=None, seed: int = 777, held_tokens: int = 6000, cfg=None,
          progress: bool = True) -> dict:
    from .activations import node_index
    from .explain import explain_all, held_out
    from .mine import Config, mine
    from .store import Store, write

    cfg = cfg or Config()
    t0 = time.perf_counter()
    rows = corpus(model, tokens, seed)
    bos = model.codec.bos_id
    miner = mine(model, rows, rows != bos, cfg, work, progress=progress)
    mined_s = time.perf_counter() - t0
    index = node_index(model)
    write(out, model, index, miner, rows, write_lens(model, index),
          {"model": model.name, "corpus_seed": seed, "tokens": int(miner.s["n_tokens"][0]), "rows": len(rows),
           "config": vars(cfg), "created": time.time(), "mine_seconds": round(mined_s, 1)})
    held_rows = corpus(model, held_tokens, seed + 1)
    held = held_out(model, held_rows, held_rows != bos)
    n = explain_all(model, Store(out, model.codec), held, index)
    return {"nodes": len(index), "explained": n, "tokens": int(miner.s["n_tokens"][0]), "mine_seconds": mined_s,
            "bytes": out.stat().st_size}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--tokens", type=int, default=60_000)
    ap.add_argument("--out", type=Path, default=REPO_EXPLANATIONS / "default.sqlite")
    ap.add_argument("--work", type=Path, default=Path(".cache/mine"))
    ap.add_argument("--seed", type=int, default=777)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    from ..loading import load_model

    print(build(load_model(a.model), a.out, a.tokens, a.work, a.seed))


if __name__ == "__main__":
    main()
