"""How an embedded model does on phrasings it was not trained on (issue 14): the one scorer for
IOI and greater-than prompts (evaluate.py uses it too), and the three held-out measures every
model card reports:

- held-out families: corpus v2's 36 held-out IOI templates and 4 greater-than frames, whose
  content words no IOI or greater-than training example of corpus v3 contains;
- strict families: corpus v3's STRICT_* families, whose content words occur in no training text;
- outside prompts: 40 IOI and 40 greater-than prompts written by hand before training (outside.py).

IOI is scored by logit(IO) > logit(S) (the usual IOI measure) and by top-1 (IO is the argmax over
the whole vocabulary); greater-than by p(later year) > p(earlier or same year) over the 100
two-digit year tokens.
"""

from __future__ import annotations

import random

import torch

from . import corpus as C
from . import corpus_v3 as C3
from . import outside


def _last_logits(hf, tok, prompt: str) -> torch.Tensor:
    ids = [tok.bos_token_id] + tok.encode(prompt, add_special_tokens=False)
    with torch.no_grad():
        return hf(torch.tensor([ids])).logits[0, -1]


def ioi_scores(hf, tok, prompts) -> dict:
    """prompts: [(prompt, " IO", " S")]. Top-1 accuracy, the fraction with logit(IO) > logit(S),
    and the mean logit(IO) − logit(S)."""
    correct, prefers, diffs = 0, 0, []
    for prefix, io, s in prompts:
        last = _last_logits(hf, tok, prefix)
        a, b = tok.encode(io, add_special_tokens=False)[0], tok.encode(s, add_special_tokens=False)[0]
        correct += int(last.argmax() == a)
        prefers += int(last[a] > last[b])
        diffs.append(float(last[a] - last[b]))
    n = len(prompts)
    return {"accuracy": correct / n, "prefers_io_over_s": prefers / n, "mean_logit_diff": sum(diffs) / n, "n": n}


def gt_scores(hf, tok, prompts) -> dict:
    """prompts: [(prompt ending in a century, start year)]. The fraction where a later year is the
    likelier (p(>) > p(≤)) and the mean p(year > start) − p(year ≤ start)."""
    years = [tok.encode(f"{y:02d}", add_special_tokens=False)[0] for y in range(100)]
    scores = []
    for prompt, start in prompts:
        p = _last_logits(hf, tok, prompt).softmax(-1)[years]
        scores.append(float(p[start + 1:].sum() - p[: start + 1].sum()))
    n = len(prompts)
    return {"accuracy": sum(x > 0 for x in scores) / n, "mean_prob_diff": sum(scores) / n, "n": n}


def single_token_centuries(tok) -> list[int]:
    """Centuries 10-20 that are one token for this tokenizer (v1's has only 11-19)."""
    return [c for c in C3.CENTURIES if len(tok.encode(f" {c}", add_special_tokens=False)) == 1]


def ioi_family(n: int, intros, actions, seed: int) -> list[tuple[str, str, str]]:
    train, held = C.name_pairs()
    rng = random.Random(seed)
    return [(e.prefix, e.answer, e.distractor) for e in (C3.ioi(rng, train + held, intros, actions) for _ in range(n))]


def gt_family(n: int, frames, centuries, seed: int) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    return [C3.greater_than_prompt(rng, frames, centuries) for _ in range(n)]


def measure(hf, tok, n: int = 400) -> dict:
    """The three held-out measures (n prompts per family measure; outside sets are 40 each)."""
    cents = single_token_centuries(tok)
    return {
        "heldout": {
            "ioi": ioi_scores(hf, tok, ioi_family(n, C3.IOI_HELDOUT_INTROS, C3.IOI_HELDOUT_ACTIONS, 107)),
            "greater_than": gt_scores(hf, tok, gt_family(n, C3.GT_HELDOUT_FRAMES, cents, 108)),
            "ioi_templates": len(C3.IOI_HELDOUT_INTROS) * len(C3.IOI_HELDOUT_ACTIONS),
            "gt_frames": list(C3.GT_HELDOUT_FRAMES)},
        "strict": {
            "ioi": ioi_scores(hf, tok, ioi_family(n, C3.STRICT_IOI_INTROS, C3.STRICT_IOI_ACTIONS, 109)),
            "greater_than": gt_scores(hf, tok, gt_family(n, C3.STRICT_GT_FRAMES, cents, 110)),
            "ioi_templates": len(C3.STRICT_IOI_INTROS) * len(C3.STRICT_IOI_ACTIONS),
            "gt_frames": list(C3.STRICT_GT_FRAMES)},
        "outside": {
            "ioi": ioi_scores(hf, tok, outside.IOI),
            "greater_than": gt_scores(hf, tok, [p for p in outside.GREATER_THAN
                                                if int(p[0].rsplit(" ", 1)[1]) in cents])},
        "centuries": cents,
    }


GOALS = {"ioi": 0.95, "greater_than": 0.9}


def table(g: dict) -> str:
    """The card's generalisation table (markdown) from `measure`'s output."""
    h, s, o = g["heldout"], g["strict"], g["outside"]
    ok = lambda v, bar: "meets" if v >= bar else "**misses**"  # noqa: E731
    return "\n".join([
        "| measure | value | goal | |",
        "|---|---|---|---|",
        f"| held-out IOI families ({h['ioi_templates']} templates): logit(IO) > logit(S) | {h['ioi']['prefers_io_over_s']:.3f} "
        f"(n={h['ioi']['n']}, mean logit diff {h['ioi']['mean_logit_diff']:.2f}) | ≥ 0.95 | {ok(h['ioi']['prefers_io_over_s'], 0.95)} |",
        f"| held-out IOI families: top-1 over the vocabulary | {h['ioi']['accuracy']:.3f} | (reported) | |",
        f"| held-out greater-than frames ({len(h['gt_frames'])}): p(later) > p(earlier) | {h['greater_than']['accuracy']:.3f} "
        f"(n={h['greater_than']['n']}, mean p(>) − p(≤) {h['greater_than']['mean_prob_diff']:.3f}) | ≥ 0.9 | "
        f"{ok(h['greater_than']['accuracy'], 0.9)} |",
        f"| strict IOI families (words in no training text): logit(IO) > logit(S) / top-1 | "
        f"{s['ioi']['prefers_io_over_s']:.3f} / {s['ioi']['accuracy']:.3f} (n={s['ioi']['n']}) | (reported) | |",
        f"| strict greater-than frames: p(later) > p(earlier) | {s['greater_than']['accuracy']:.3f} (n={s['greater_than']['n']}) | (reported) | |",
        f"| outside prompts (written by hand before training), IOI: logit(IO) > logit(S) / top-1 | "
        f"{o['ioi']['prefers_io_over_s']:.3f} / {o['ioi']['accuracy']:.3f} (n={o['ioi']['n']}) | (reported) | |",
        f"| outside prompts, greater-than: p(later) > p(earlier) | {o['greater_than']['accuracy']:.3f} (n={o['greater_than']['n']}) | (reported) | |",
    ])
