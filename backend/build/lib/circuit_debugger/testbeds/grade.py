"""Grade the debugger against tracr ground truth.

    python -m circuit_debugger.testbeds.grade [--only NAME ...] [--max-examples N] [--json OUT]

For every testbed, example and position with a defined output, ask "why this output and not
the runner-up?" (numerical programs: why this value) and rank units — heads, MLP layers,
token and position embeddings — by |effect|. A unit is correct if the ground truth says it
implements the output op ("output" set) or the output op or any op upstream of it
("upstream" set). Methods: act×grad total effect, direct effect, and, as a reference, exact
zero ablation of each unit. Scores: top-1 (is the top unit correct?) and top-k recall
(k = size of the set: what fraction of the set is in the top k).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import mean

from ..attribution import exact_ablation
from ..engine import Debugger
from ..ground_truth import ground_truth
from ..loading import TESTBED_DIR, load_model, testbed_names
from ..nodes import parse_node
from ..targets import LogitDiff

UNIT_KINDS = ("head", "mlp", "embed", "pos_embed")
METHODS = ("total", "direct", "exact")


def score(effects: dict, truth: set) -> tuple[float, float]:
    """(top-1, top-k recall) with k = |truth|, as expectations under uniform random tie-breaking:
    units whose |effect| ties at the cut share the remaining places, so no ordering of the table
    can change a score."""
    mags = {u: abs(e) for u, e in effects.items()}
    tol = lambda v: 1e-6 * max(1.0, v)
    order = sorted(mags.values(), reverse=True)

    def expected_hits(k: int) -> float:
        cut = order[k - 1]
        above = [u for u, v in mags.items() if v > cut + tol(cut)]
        at = [u for u, v in mags.items() if abs(v - cut) <= tol(cut)]
        hits = sum(u in truth for u in above)
        return hits + (k - len(above)) * sum(u in truth for u in at) / len(at)

    k = min(len(truth), len(order))
    return expected_hits(1), expected_hits(k) / len(truth)


def grade_testbed(name: str, max_examples: int) -> dict:
    m = load_model(f"tracr/{name}")
    dbg = Debugger([m], cache_size=8)
    gt = ground_truth(m)
    sets = {"output": gt.units([gt.data["output_node"]]), "upstream": gt.units(gt.upstream())}
    examples = json.loads((TESTBED_DIR / name / "examples.json").read_text())[:max_examples]
    scores = {(meth, s): [] for meth in METHODS for s in sets}
    for ex in examples:
        prompt = " ".join(ex["input"])
        ids = m.tokenize(prompt)
        logits = dbg.clean_pass(m, ids)["logits"][0]
        for p, want in enumerate(ex["output"], start=1):
            if want is None:
                continue
            if m.d_vocab_out == 1:
                target, distractor = m.codec.output_str(0), None
            else:
                top2 = logits[p].topk(2).indices.tolist()
                target, distractor = m.codec.output_str(top2[0]), m.codec.output_str(top2[1])
            r = dbg.attribute(m.name, prompt, target, distractor, position=p, top_k=None)
            units = [n for n in r["nodes"] if n["kind"] in UNIT_KINDS]
            t = LogitDiff(m, p, m.codec.output_token(target),
                          None if distractor is None else m.codec.output_token(distractor))
            exact = exact_ablation(m, ids, t, [], {}, [parse_node(u["id"]) for u in units], r["value"])
            effects = {"total": {u["id"]: u["total_effect"] for u in units},
                       "direct": {u["id"]: u["direct_effect"] for u in units},
                       "exact": {u["id"]: e for u, e in zip(units, exact)}}
            for meth in METHODS:
                for s, truth in sets.items():
                    scores[(meth, s)].append(score(effects[meth], truth))
    out = {"testbed": name, "questions": len(scores[("total", "output")]),
           "output_units": sorted(sets["output"]), "upstream_units": sorted(sets["upstream"])}
    for (meth, s), vals in scores.items():
        out[f"{meth}/{s}/top1"] = mean(v[0] for v in vals) if vals else None
        out[f"{meth}/{s}/topk_recall"] = mean(v[1] for v in vals) if vals else None
    return out


def summary(rows: list[dict]) -> dict:
    """Means over testbeds (each testbed weighs the same)."""
    keys = [k for k in rows[0] if "/" in k]
    return {k: mean(r[k] for r in rows if r[k] is not None) for k in keys}


def table(rows: list[dict]) -> str:
    s = summary(rows)
    lines = ["| method | ground-truth set | top-1 | top-k recall |", "|---|---|---|---|"]
    for meth in METHODS:
        for gset in ("output", "upstream"):
            lines.append(f"| {meth} | {gset} | {s[f'{meth}/{gset}/top1']:.3f} | {s[f'{meth}/{gset}/topk_recall']:.3f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    from tqdm import tqdm

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--max-examples", type=int, default=24)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    names = [n for n in testbed_names() if not a.only or n in a.only]
    rows = [grade_testbed(n, a.max_examples) for n in tqdm(names, desc="grade testbeds")]
    print(f"{len(rows)} testbeds, {sum(r['questions'] for r in rows)} questions")
    print(table(rows))
    if a.json:
        a.json.write_text(json.dumps({"summary": summary(rows), "testbeds": rows}, indent=1))


if __name__ == "__main__":
    main()
