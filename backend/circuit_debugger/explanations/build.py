"""Mine a model's nodes and explain them offline, into one SQLite file.

    python -m circuit_debugger.explanations.build [--model default|llama|SPEC] [--tokens 60000]
        [--corpus PATH|hf:ORG/NAME [--column text] [--ctx 64]]
        [--out ../explanations/MODEL.sqlite] [--work ../.cache/mine-MODEL]

Corpus: `--corpus` (see corpus.py: text, JSONL, Parquet, CSV or a cached hub dataset, streamed
into fixed-length windows; held-out windows are a disjoint, seeded share of the same stream).
Without it: for an embedded model ('default', 'llama'), the corpus generator it was trained on
(embedded.py), tokenized with its own tokenizer, with a seed of its own (one document per row);
for a tracr testbed, random inputs; any other model needs `--corpus` (it is never mined on the
embedded models' synthetic text). An embedded model is mined with its shipped dictionaries.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Optional

import torch

REPO_EXPLANATIONS = Path(__file__).resolve().parents[3] / "explanations"


@dataclass
class CorpusSpec:
    path: str
    column: str = "text"
    ctx: int = 64


def corpus(model, n_tokens: int, seed: int, spec: Optional[CorpusSpec] = None, split: str = "mine",
           progress: bool = False) -> torch.Tensor:
    from .corpus import CorpusError, windows

    if spec is not None:
        if not hasattr(model.codec, "tokenizer"):
            raise CorpusError(f"model {model.name}: --corpus needs a model with a tokenizer")
        ctx = min(spec.ctx, model.n_ctx)
        return windows(spec.path, model.codec.tokenizer, n_tokens, ctx, seed, spec.column, split, progress=progress)
    if hasattr(model.codec, "tokenizer"):
        from ..embedded import corpus_module, embedded_name

        name = embedded_name(model)
        if name is None:
            raise CorpusError(f"model {model.name}: give --corpus (a text, JSONL, Parquet or CSV file, or hf:ORG/NAME); "
                             "only the embedded models (default, llama) have a built-in corpus")
        from ..autoencoders.train import corpus_ids

        return corpus_ids(model.codec.tokenizer, n_tokens, seed=seed, corpus=corpus_module(name))
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


def valid_of(model, rows: torch.Tensor) -> torch.Tensor:
    """Positions holding corpus tokens (not BOS, padding or document separators)."""
    if hasattr(model.codec, "tokenizer"):
        from .corpus import valid_mask

        return valid_mask(rows, model.codec.tokenizer)
    return rows != model.codec.bos_id


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
    aes = model.autoencoders
    blocks += [("T", l, ae.W_dec, ae.W_enc if ae.read in ("", "ln2_normalized") else None)
               for l, ae in sorted(aes.family("transcoder").items())]
    blocks += [("S", l, ae.W_dec, None) for l, ae in sorted(aes.saes.items())]
    blocks += [("R", l, ae.W_dec, None) for l, ae in sorted(aes.resids.items())]
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
          progress: bool = True, spec: Optional[CorpusSpec] = None) -> dict:
    from .activations import node_index
    from .explain import explain_all, held_out
    from .heads import head_explanations
    from .mine import Config, mine
    from .store import Store, write

    cfg = cfg or Config()
    t0 = time.perf_counter()
    rows = corpus(model, tokens, seed, spec, progress=progress)
    miner = mine(model, rows, valid_of(model, rows), cfg, work, progress=progress)
    mined_s = time.perf_counter() - t0
    index = node_index(model)
    write(out, model, index, miner, rows, write_lens(model, index),
          {"model": model.name, "corpus_seed": seed, "corpus": vars(spec) if spec else "built-in", "tokens": int(miner.s["n_tokens"][0]), "rows": len(rows),
           "config": vars(cfg), "created": time.time(), "mine_seconds": round(mined_s, 1)})
    # held out: the disjoint split of the same stream (a user corpus), or another seed (built-in)
    held_rows = corpus(model, held_tokens, seed, spec, split="held") if spec else corpus(model, held_tokens, seed + 1)
    held_valid = valid_of(model, held_rows)
    held = held_out(model, held_rows, held_valid)
    heads = head_explanations(model, held_rows, held_valid)
    n = explain_all(model, Store(out, model.codec), held, index, heads=heads)
    return {"nodes": len(index), "explained": n, "tokens": int(miner.s["n_tokens"][0]), "mine_seconds": mined_s,
            "bytes": out.stat().st_size}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default", help="'default', 'llama', a checkpoint folder or hub name")
    ap.add_argument("--tokens", type=int, default=60_000)
    ap.add_argument("--out", type=Path, default=None, help="default: explanations/MODEL.sqlite for an embedded model")
    ap.add_argument("--work", type=Path, default=None, help="resume state (default: .cache/mine-MODEL)")
    ap.add_argument("--seed", type=int, default=777)
    ap.add_argument("--corpus", default=None, help="text/JSONL/Parquet/CSV file or hf:ORG/NAME (cached hub dataset)")
    ap.add_argument("--column", default="text", help="the text field / column of a JSONL, Parquet or CSV corpus")
    ap.add_argument("--ctx", type=int, default=64, help="window length in tokens (at most the model's context)")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    from ..loading import load_model

    from .corpus import CorpusError

    spec = CorpusSpec(a.corpus, a.column, a.ctx) if a.corpus else None
    label = Path(a.model).name or "model"
    if a.out is None:
        from ..embedded import EMBEDDED

        if a.model not in EMBEDDED:
            raise SystemExit("build: give --out for a model other than the embedded ones (default, llama)")
        a.out = REPO_EXPLANATIONS / f"{a.model}.sqlite"
    a.work = a.work or Path(f".cache/mine-{label}")
    try:
        print(build(load_model(a.model), a.out, a.tokens, a.work, a.seed, spec=spec))
    except CorpusError as e:
        raise SystemExit(f"build: {e}") from None


if __name__ == "__main__":
    main()
