"""Measure an embedded model's quality bars and find its mechanisms with the debugger itself.

    python -m circuit_debugger.default_model.evaluate [--model default|llama] [--dir DIR] [--n 400] [--write]

Prints metrics as JSON; with --write, stores metrics.json and the model card (README.md)
beside the weights.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch

from . import corpus as C
from . import generalisation as G

MODELS = Path(__file__).resolve().parents[1] / "models"
DIR = MODELS / "default"


def training_info(directory: Path) -> dict:
    """training.json (written by train.py); the shipped default predates it: GPT-2 on corpus v1."""
    f = directory / "training.json"
    return json.loads(f.read_text()) if f.exists() else {"arch": "gpt2", "corpus": "v1"}


def _logits(hf, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return hf(torch.tensor([ids])).logits[0]


def ioi_prompts(n: int, pairs, templates, seed: int) -> list[tuple[str, str, str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        e = C.ioi(rng, pairs, templates)
        out.append((e.prefix, e.answer, e.distractor))
    return out


def greater_than(hf, tok, n: int, seed: int, make_prompt=C.greater_than_prompt) -> dict:
    """Corpus v1's frame: p(year > start) − p(year ≤ start) and the fraction where a later year is
    the likelier (generalisation.gt_scores)."""
    rng = random.Random(seed)
    return G.gt_scores(hf, tok, [make_prompt(rng) for _ in range(n)])


def induction(hf, tok, n: int, seed: int, length: int = 20) -> dict:
    g = torch.Generator().manual_seed(seed)
    first, second = [], []
    V = len(tok)
    for _ in range(n):
        seq = torch.randint(1, V, (length,), generator=g).tolist()
        ids = [tok.bos_token_id] + seq + seq
        logp = _logits(hf, ids).log_softmax(-1)
        nll = -logp[:-1].gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
        first.append(float(nll[:length].mean()))
        second.append(float(nll[length:].mean()))
    f, s = sum(first) / n, sum(second) / n
    return {"first_half_loss": f, "second_half_loss": s, "ratio": s / f, "n": n, "length": length}


def filler_loss(hf, tok, n: int, seed: int, corpus=C) -> dict:
    rng = random.Random(seed)
    total, count = 0.0, 0
    for _ in range(n):
        ids = [tok.bos_token_id] + tok.encode(corpus.filler(rng).prefix, add_special_tokens=False)
        logp = _logits(hf, ids).log_softmax(-1)
        total += float(-logp[:-1].gather(1, torch.tensor(ids[1:])[:, None]).sum())
        count += len(ids) - 1
    return {"loss": total / count, "tokens": count}


def mechanisms(directory: Path, prompts, n: int = 40, name: str = "default") -> dict:
    """Mean total effect per node over IOI prompts, and what mean-ablating the top nodes does."""
    from ..engine import Debugger
    from ..loading import load_model

    m = load_model(str(directory), name=name)
    dbg = Debugger([m], cache_size=8)
    sums: dict = {}
    lds = []
    for prefix, io, s in prompts[:n]:
        r = dbg.attribute(name, prefix, io, s, top_k=None)
        lds.append(r["logit_diff"])
        for row in r["nodes"]:
            if row["kind"] in ("head", "neuron", "attn", "mlp", "embed", "pos_embed"):
                sums.setdefault(row["id"], [0.0, 0.0])
                sums[row["id"]][0] += row["total_effect"] / n
                sums[row["id"]][1] += row["direct_effect"] / n
    heads = sorted(((k, v) for k, v in sums.items() if ".H" in k), key=lambda kv: -abs(kv[1][0]))[:5]
    neurons = sorted(((k, v) for k, v in sums.items() if ".N" in k), key=lambda kv: -abs(kv[1][0]))[:5]
    named = [k for k, _ in heads[:3]] + [k for k, _ in neurons[:3]]
    ablated = []
    for prefix, io, s in prompts[:n]:
        out = dbg.intervene(name, prefix, [{"node": k, "op": "mean"} for k in named], target=io, distractor=s)
        ablated.append(out["logit_diff"])
    split = {k: {"IO": 0.0, "S": 0.0} for k, _ in heads[:3]}
    for prefix, io, s in prompts[:n]:
        for role, tok in (("IO", io), ("S", s)):
            rows = {r["id"]: r for r in dbg.attribute(name, prefix, tok, top_k=None)["nodes"]}
            for k in split:
                split[k][role] += rows[k]["direct_effect"] / n
    roles = {}
    for k, _ in heads[:3]:
        layer, head = int(k[1:].split(".")[0]), int(k.split(".H")[1])
        acc = {"IO": 0.0, "S1": 0.0, "S2": 0.0, "BOS": 0.0}
        used = 0
        for prefix, io, s in prompts[:n]:
            ids = m.tokenize(prefix)
            a, b = m.codec.output_token(io), m.codec.output_token(s)
            s_pos = [i for i, t in enumerate(ids) if t == b]
            if a not in ids or len(s_pos) < 2:  # a name that opens the text has no leading space: roles unclear
                continue
            used += 1
            where = {"IO": ids.index(a), "S1": s_pos[0], "S2": s_pos[-1], "BOS": 0}
            row = dbg.attention(name, prefix, layer, head)["heads"][k][-1]
            for role, pos in where.items():
                acc[role] += row[pos]
        roles[k] = {role: v / max(used, 1) for role, v in acc.items()}
    base = sum(lds) / n
    return {
        "attention_from_end": roles,
        "direct_effect_on_io_and_s": split,
        "n_prompts": n, "mean_logit_diff": base,
        "top_heads": [{"node": k, "mean_total_effect": v[0], "mean_direct_effect": v[1]} for k, v in heads],
        "top_neurons": [{"node": k, "mean_total_effect": v[0], "mean_direct_effect": v[1]} for k, v in neurons],
        "sublayers": {k: {"mean_total_effect": v[0], "mean_direct_effect": v[1]} for k, v in sums.items()
                      if k.endswith(("ATTN", "MLP")) or k in ("EMB", "POS")},
        "mean_ablated_nodes": named, "mean_logit_diff_with_nodes_mean_ablated": sum(ablated) / n,
        "fraction_of_logit_diff_removed": 1 - (sum(ablated) / n) / base,
    }


def _hf(directory: Path):
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    torch.set_num_threads(1)
    return AutoModelForCausalLM.from_pretrained(directory).eval(), PreTrainedTokenizerFast.from_pretrained(directory)


def measure(directory: Path, n: int, name: str = "default") -> dict:
    from .train import corpus_module

    info = training_info(directory)
    corpus = corpus_module(info["corpus"])
    hf, tok = _hf(directory)
    train_pairs, held_pairs = C.name_pairs()
    if info["corpus"] == "v1":
        held_pair_prompts = ioi_prompts(n, held_pairs, C.IOI_TRAIN_TEMPLATES, seed=101)
    else:  # the corpus's own training distribution, held-out name pairs
        rng = random.Random(101)
        held_pair_prompts = [(e.prefix, e.answer, e.distractor) for e in (corpus.ioi(rng, held_pairs) for _ in range(n))]
    return {
        "training": info,
        "ioi_heldout_pairs": G.ioi_scores(hf, tok, held_pair_prompts),
        "ioi_heldout_templates": G.ioi_scores(hf, tok, ioi_prompts(n, held_pairs + train_pairs, C.IOI_HELDOUT_TEMPLATES, 102)),
        "ioi_unseen_words_templates": G.ioi_scores(hf, tok, ioi_prompts(n, held_pairs + train_pairs, C.IOI_UNSEEN_TEMPLATES, 106)),
        "generalisation": G.measure(hf, tok, n),
        "greater_than": greater_than(hf, tok, n, 103),
        "induction_random_tokens": induction(hf, tok, min(n, 200), 104),
        "filler_heldout": filler_loss(hf, tok, n, 105, corpus),
        "parameters": sum(p.numel() for p in hf.parameters()),
        "vocab_size": len(tok),
        "mechanisms_ioi": mechanisms(directory, held_pair_prompts, name=name),
    }


def find_circuit(directory: Path, task: str, n: int = 200, target: float = 0.9, name: str = "default") -> dict:
    """The circuit the debugger finds on a ready-made prompt set (promptsets.builtin: ioi,
    greater_than, induction): heads added greedily, each time the one that most raises
    faithfulness (everything else mean-ablated, over the set's counterfactuals where it has them),
    until the circuit recovers `target` of the model's metric; then heads whose removal keeps it at
    `target` are pruned (the least useful first); then its faithfulness, completeness and
    minimality (circuits.evaluate_circuit)."""
    from ..circuits import Evaluator, evaluate_circuit, parse_circuit
    from ..loading import load_model
    from ..promptsets import builtin

    m = load_model(str(directory), name=name)
    ps = builtin(task, m.tokenize, n=n, seed=0)
    heads = [f"L{l}.H{h}" for l in range(m.shape.n_layers) for h in range(m.shape.n_heads)]
    ev = Evaluator(m, ps, parse_circuit(m, heads, ps.slot_names))
    f_model = ev.evaluate([("model", frozenset())])[0]
    chosen, path = frozenset(), []
    while len(chosen) < len(heads):
        options = [chosen | {i} for i in range(len(heads)) if i not in chosen]
        values = ev.evaluate([("circuit", o) for o in options])
        j = max(range(len(options)), key=values.__getitem__)
        chosen = options[j]
        path.append({"heads": [heads[i] for i in sorted(chosen)], "faithfulness": values[j] / f_model})
        if values[j] / f_model >= target:
            break
    pruned = []
    while len(chosen) > 1:
        options = [chosen - {i} for i in sorted(chosen)]
        values = ev.evaluate([("circuit", o) for o in options])
        j = max(range(len(options)), key=values.__getitem__)
        if values[j] / f_model < target:
            break
        pruned.append({"removed": heads[sorted(chosen)[j]], "faithfulness": values[j] / f_model})
        chosen = options[j]
    nodes = [heads[i] for i in sorted(chosen)]
    result = evaluate_circuit(m, ps, nodes, n_random=20, greedy_steps=3)
    return {"prompt_set": f"builtin {task}, n={n}, seed 0", "description": ps.description, "greedy_path": path,
            "pruned": pruned, "nodes": nodes, "evaluation": result}


TASKS = ("ioi", "greater_than", "induction")


def circuits(directory: Path, name: str, n: int = 200) -> dict:
    return {task: find_circuit(directory, task, n=n, name=name) for task in TASKS}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="default", help="an embedded model's name (default, llama)")
    ap.add_argument("--dir", type=Path, default=None, help="its directory (default: models/MODEL)")
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--circuit-n", type=int, default=200, help="prompts per ready-made set for the circuits")
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--only-circuit", action="store_true", help="recompute only the circuits section")
    ap.add_argument("--only-generalisation", action="store_true", help="recompute only the held-out measures")
    a = ap.parse_args(argv)
    a.dir = a.dir or MODELS / a.model
    if a.only_circuit or a.only_generalisation:
        metrics = json.loads((a.dir / "metrics.json").read_text())
        if a.only_circuit:
            metrics["circuits"] = circuits(a.dir, a.model, a.circuit_n)
        if a.only_generalisation:
            metrics["generalisation"] = G.measure(*_hf(a.dir), a.n)
    else:
        metrics = {**measure(a.dir, a.n, a.model), "circuits": circuits(a.dir, a.model, a.circuit_n)}
    print(json.dumps(metrics, indent=1))
    if a.write:
        (a.dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
        from .card import write_card

        write_card(a.dir, metrics, a.model)


if __name__ == "__main__":
    main()
