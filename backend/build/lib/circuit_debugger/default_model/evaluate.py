"""Measure the default model's quality bars and find its mechanisms with the debugger itself.

    python -m circuit_debugger.default_model.evaluate [--dir DIR] [--n 400] [--write]

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

DIR = Path(__file__).resolve().parents[1] / "models" / "default"


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


def ioi_metrics(hf, tok, prompts) -> dict:
    correct, diffs = 0, []
    for prefix, io, s in prompts:
        ids = [tok.bos_token_id] + tok.encode(prefix, add_special_tokens=False)
        last = _logits(hf, ids)[-1]
        a, b = tok.encode(io, add_special_tokens=False)[0], tok.encode(s, add_special_tokens=False)[0]
        correct += int(last.argmax() == a)
        diffs.append(float(last[a] - last[b]))
    return {"accuracy": correct / len(prompts), "mean_logit_diff": sum(diffs) / len(diffs), "n": len(prompts)}


def greater_than(hf, tok, n: int, seed: int) -> dict:
    rng = random.Random(seed)
    years = [tok.encode(f"{y:02d}", add_special_tokens=False)[0] for y in range(100)]
    scores = []
    for _ in range(n):
        prompt, start = C.greater_than_prompt(rng)
        ids = [tok.bos_token_id] + tok.encode(prompt, add_special_tokens=False)
        p = _logits(hf, ids)[-1].softmax(-1)[years]
        scores.append(float(p[start + 1:].sum() - p[: start + 1].sum()))
    return {"mean_prob_diff": sum(scores) / n, "n": n}


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


def filler_loss(hf, tok, n: int, seed: int) -> dict:
    rng = random.Random(seed)
    total, count = 0.0, 0
    for _ in range(n):
        ids = [tok.bos_token_id] + tok.encode(C.filler(rng).prefix, add_special_tokens=False)
        logp = _logits(hf, ids).log_softmax(-1)
        total += float(-logp[:-1].gather(1, torch.tensor(ids[1:])[:, None]).sum())
        count += len(ids) - 1
    return {"loss": total / count, "tokens": count}


def mechanisms(directory: Path, prompts, n: int = 40) -> dict:
    """Mean total effect per node over IOI prompts, and what mean-ablating the top nodes does."""
    from ..engine import Debugger
    from ..loading import load_model

    m = load_model(str(directory), name="default")
    dbg = Debugger([m], cache_size=8)
    sums: dict = {}
    lds = []
    for prefix, io, s in prompts[:n]:
        r = dbg.attribute("default", prefix, io, s, top_k=None)
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
        out = dbg.intervene("default", prefix, [{"node": k, "op": "mean"} for k in named], target=io, distractor=s)
        ablated.append(out["logit_diff"])
    split = {k: {"IO": 0.0, "S": 0.0} for k, _ in heads[:3]}
    for prefix, io, s in prompts[:n]:
        for name, tok in (("IO", io), ("S", s)):
            rows = {r["id"]: r for r in dbg.attribute("default", prefix, tok, top_k=None)["nodes"]}
            for k in split:
                split[k][name] += rows[k]["direct_effect"] / n
    roles = {}
    for k, _ in heads[:3]:
        layer, head = int(k[1:].split(".")[0]), int(k.split(".H")[1])
        acc = {"IO": 0.0, "S1": 0.0, "S2": 0.0, "BOS": 0.0}
        for prefix, io, s in prompts[:n]:
            ids = m.tokenize(prefix)
            a, b = m.codec.output_token(io), m.codec.output_token(s)
            s_pos = [i for i, t in enumerate(ids) if t == b]
            where = {"IO": ids.index(a), "S1": s_pos[0], "S2": s_pos[-1], "BOS": 0}
            row = dbg.attention("default", prefix, layer, head)["heads"][k][-1]
            for name, pos in where.items():
                acc[name] += row[pos] / n
        roles[k] = acc
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


def measure(directory: Path, n: int) -> dict:
    from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast

    torch.set_num_threads(1)
    hf = GPT2LMHeadModel.from_pretrained(directory).eval()
    tok = PreTrainedTokenizerFast.from_pretrained(directory)
    train_pairs, held_pairs = C.name_pairs()
    held_pair_prompts = ioi_prompts(n, held_pairs, C.IOI_TRAIN_TEMPLATES, seed=101)
    return {
        "ioi_heldout_pairs": ioi_metrics(hf, tok, held_pair_prompts),
        "ioi_heldout_templates": ioi_metrics(hf, tok, ioi_prompts(n, held_pairs + train_pairs, C.IOI_HELDOUT_TEMPLATES, 102)),
        "ioi_unseen_words_templates": ioi_metrics(hf, tok, ioi_prompts(n, held_pairs + train_pairs, C.IOI_UNSEEN_TEMPLATES, 106)),
        "greater_than": greater_than(hf, tok, n, 103),
        "induction_random_tokens": induction(hf, tok, min(n, 200), 104),
        "filler_heldout": filler_loss(hf, tok, n, 105),
        "parameters": sum(p.numel() for p in hf.parameters()),
        "vocab_size": len(tok),
        "mechanisms_ioi": mechanisms(directory, held_pair_prompts),
    }


def ioi_circuit(directory: Path, n: int = 200, target: float = 0.9) -> dict:
    """The IOI circuit the debugger finds on a prompt distribution: heads added greedily, each
    time the one that most raises faithfulness (everything else mean-ablated over the ABC
    counterfactuals), until the circuit recovers `target` of the logit difference; then its
    faithfulness, completeness and minimality (circuits.evaluate_circuit)."""
    from ..circuits import Evaluator, evaluate_circuit, parse_circuit
    from ..loading import load_model
    from ..promptsets import builtin

    m = load_model(str(directory), name="default")
    ps = builtin("ioi", m.tokenize, n=n, seed=0)
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
    nodes = path[-1]["heads"]
    result = evaluate_circuit(m, ps, nodes, n_random=20, greedy_steps=3)
    return {"prompt_set": f"builtin ioi, n={n}, seed 0", "greedy_path": path, "nodes": nodes, "evaluation": result}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dir", type=Path, default=DIR)
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--only-circuit", action="store_true", help="recompute only the IOI circuit section")
    a = ap.parse_args(argv)
    if a.only_circuit:
        metrics = json.loads((a.dir / "metrics.json").read_text())
        metrics["ioi_circuit"] = ioi_circuit(a.dir)
    else:
        metrics = {**measure(a.dir, a.n), "ioi_circuit": ioi_circuit(a.dir)}
    print(json.dumps(metrics, indent=1))
    if a.write:
        (a.dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
        from .card import write_card

        write_card(a.dir, metrics)


if __name__ == "__main__":
    main()
