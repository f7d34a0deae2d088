"""Prompt sets: rows of (prompt, target, distractor[, counterfactual]) with named template slots
(S1, IO, S2, END ...) mapped to token positions, so prompts of different lengths aggregate by
role rather than by index.

Built from a template with slots (`from_template`), parsed from pasted JSONL or CSV
(`parse_rows`), or taken ready-made for the default model (`builtin`).
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence

from .errors import UserError

SLOT = re.compile(r"\{([A-Za-z][A-Za-z0-9_]*)\}")
END = "END"
MAX_ROWS = 2000


@dataclass
class Row:
    prompt: str
    target: str
    distractor: Optional[str] = None
    counterfactual: Optional[str] = None
    slots: dict = field(default_factory=dict)  # slot name -> token position (END = the last position)


@dataclass
class PromptSet:
    name: str
    rows: list
    description: str = ""

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "rows": [asdict(r) for r in self.rows]}

    @classmethod
    def from_dict(cls, d: dict) -> "PromptSet":
        return cls(d.get("name", "prompt set"), [Row(**r) for r in d["rows"]], d.get("description", ""))

    @property
    def slot_names(self) -> list:
        return slot_order(r.slots for r in self.rows)


def slot_order(all_slots) -> list:
    """Slot names in reading order (by their mean position), whatever order they were stored in."""
    pos: dict = {}
    for slots in all_slots:
        for k, v in slots.items():
            pos.setdefault(k, []).append(v)
    return sorted(pos, key=lambda k: (sum(pos[k]) / len(pos[k]), k))


def occurrence_names(template: str) -> list:
    """Slot names per occurrence: a slot used once keeps its name, a repeated one is X1, X2 ..."""
    found = SLOT.findall(template)
    counts = {s: found.count(s) for s in found}
    seen: dict = {}
    out = []
    for s in found:
        seen[s] = seen.get(s, 0) + 1
        out.append(s if counts[s] == 1 else f"{s}{seen[s]}")
    return out


def fill(template: str, values: dict) -> tuple:
    """(text, [(occurrence name, end offset of its value in the text)])."""
    names = iter(occurrence_names(template))
    text, ends, last = "", [], 0
    for m in SLOT.finditer(template):
        if m.group(1) not in values:
            raise UserError(f"template slot {{{m.group(1)}}} has no values")
        text += template[last:m.start()] + values[m.group(1)]
        ends.append((next(names), len(text)))
        last = m.end()
    return text + template[last:], ends


def align(tokenize, text: str, ends: Sequence) -> dict:
    """Slot -> position of the last token of its value. The prefix's tokens must be a prefix
    of the whole prompt's tokens (true for BPE when values start at a word boundary)."""
    ids = tokenize(text)
    out = {}
    for name, end in ends:
        pre = tokenize(text[:end])
        if ids[:len(pre)] != pre:
            raise UserError(f"slot {name} does not end on a token boundary in {text!r}; put a space before "
                            "slot values or make them whole tokens")
        out[name] = len(pre) - 1
    out[END] = len(ids) - 1
    return out


def from_template(tokenize, templates: Sequence[str], values: dict, target: str, distractor: Optional[str] = None,
                  counterfactual: Optional[Sequence[str]] = None, n: int = 100, seed: int = 0,
                  name: str = "template", description: str = "") -> PromptSet:
    """`n` rows drawn from `templates` (one chosen per row); slots sharing a value list get
    distinct values in a row. `target`/`distractor` are templates over the same slots (e.g.
    ' {IO}'). `counterfactual[i]` is the counterfactual of `templates[i]` (it may use more slots)."""
    if not templates or not 1 <= n <= MAX_ROWS:
        raise UserError(f"give at least one template and 1..{MAX_ROWS} rows")
    if counterfactual is not None and len(counterfactual) != len(templates):
        raise UserError("give one counterfactual template per template")
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        i = rng.randrange(len(templates))
        vals: dict = {}
        for slot in sorted(values):
            pool = [v for v in values[slot] if not any(v == vals[o] for o in vals if values[o] == values[slot])]
            if not pool:
                raise UserError(f"slot {slot}: not enough distinct values")
            vals[slot] = rng.choice(pool)
        text, ends = fill(templates[i], vals)
        cf = fill(counterfactual[i], vals)[0] if counterfactual else None
        rows.append(Row(text, fill(target, vals)[0], fill(distractor, vals)[0] if distractor else None, cf,
                        align(tokenize, text, ends)))
    return PromptSet(name, rows, description)


def parse_rows(text: str, fmt: str, tokenize, name: str = "pasted") -> PromptSet:
    """JSONL (one object per line: prompt, target, distractor?, counterfactual?, slots?) or CSV
    with a header (prompt,target[,distractor][,counterfactual]). Only END is known for these,
    unless a JSONL row gives its own `slots` (name -> position)."""
    if fmt == "jsonl":
        items = []
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    items.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise UserError(f"line {i}: not JSON ({e.msg})") from None
                except (RecursionError, ValueError) as e:  # nesting past Python's stack; a 5,000-digit number
                    why = "nested too deeply" if isinstance(e, RecursionError) else "a number too long"
                    raise UserError(f"line {i}: not a prompt row ({why})") from None
    elif fmt == "csv":
        try:
            items = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
        except csv.Error as e:  # a field over csv's 128 KiB limit, a broken quote
            raise UserError(f"not CSV ({e})") from None
    else:
        raise UserError("format must be 'jsonl' or 'csv'")
    return rows_from_items(items, tokenize, name)


def _text(s, max_len: int = 100) -> bool:
    """Text a tokenizer and a JSON response can carry: no lone surrogate ("\\ud800", which JSON
    allows), at most `max_len` characters."""
    if not isinstance(s, str) or len(s) > max_len:
        return False
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def rows_from_items(items: list, tokenize, name: str = "rows") -> PromptSet:
    """Validated rows from dicts (prompt, target, distractor?, counterfactual?, slots?); END is
    added as the last position."""
    if not 1 <= len(items) <= MAX_ROWS:
        raise UserError(f"a prompt set has 1..{MAX_ROWS} rows (got {len(items)})")
    rows = []
    for i, it in enumerate(items, 1):
        if not isinstance(it, dict) or not it.get("prompt") or not it.get("target"):
            raise UserError(f"row {i}: needs 'prompt' and 'target'")
        for key in ("prompt", "target", "distractor", "counterfactual"):
            if it.get(key) is not None and not isinstance(it[key], str):
                raise UserError(f"row {i}: '{key}' must be text")
            if isinstance(it.get(key), str) and not _text(it[key], 10**9):
                raise UserError(f"row {i}: '{key}' is not valid Unicode text")
        n = len(tokenize(it["prompt"]))
        slots = it.get("slots") or {}
        if not isinstance(slots, dict) or not all(type(v) is int and 0 <= v < n and _text(k) for k, v in slots.items()):
            raise UserError(f"row {i}: slots must map names to positions 0..{n - 1}")
        rows.append(Row(str(it["prompt"]), str(it["target"]), it.get("distractor") or None,
                        it.get("counterfactual") or None, {**{str(k): v for k, v in slots.items()}, END: n - 1}))
    return PromptSet(name, rows)


# ------------------------------------------------------------------ ready-made sets (default model)
def builtin(name: str, tokenize, n: int = 100, seed: int = 0) -> PromptSet:
    from .default_model import corpus as C

    if name == "ioi":
        # held-out intro/action combinations, ABBA and BABA; counterfactual: S2 -> a third name (ABC)
        base = [t.replace("{P}", "{PLACE}").replace("{O}", "{OBJ}") for t in C.IOI_HELDOUT_TEMPLATES]
        templates, cfs = [], []
        for t in base:
            for a, b in (("IO", "S"), ("S", "IO")):
                tt = t.replace("{A}", "{" + a + "}").replace("{B}", "{" + b + "}")
                templates.append(tt)
                k = tt.rfind("{S}")
                cfs.append(tt[:k] + "{C}" + tt[k + 3:])
        return from_template(tokenize, templates, {"IO": C.NAMES, "S": C.NAMES, "C": C.NAMES, "PLACE": C.PLACES,
                                                   "OBJ": C.OBJECTS}, " {IO}", " {S}", cfs, n, seed, "ioi",
                             "IOI on held-out templates, ABBA and BABA; counterfactual: S2 replaced by a third name")
    if name == "greater_than":
        years = [f"{y:02d}" for y in range(2, 98)]
        rng = random.Random(seed)
        rows = []
        for _ in range(n):
            noun, cc, yy = rng.choice(C.NOUNS), rng.randint(11, 19), int(rng.choice(years))
            text, ends = fill("The {NOUN} lasted from the year {CC}{YY} to the year {CC}",
                              {"NOUN": noun, "CC": f"{cc}", "YY": f"{yy:02d}"})
            cf, _ = fill("The {NOUN} lasted from the year {CC}01 to the year {CC}", {"NOUN": noun, "CC": f"{cc}"})
            rows.append(Row(text, f"{(yy + 100) // 2:02d}", f"{yy // 2:02d}", cf, align(tokenize, text, ends)))
        return PromptSet("greater_than", rows, "years: target the middle of the later years, distractor the middle "
                                              "of the earlier ones (a proxy for p(>) − p(≤)); counterfactual: start year 01")
    if name == "induction":
        words = [" " + w for w in C.NAMES + C.PLACES + C.OBJECTS]
        t = "{A}{B}{C}{D}{E}{F}{A}{B}{C}"
        return from_template(tokenize, [t], {k: words for k in "ABCDEF"}, "{D}", "{E}", None, n, seed, "induction",
                             "six random words, then the first three again: the next word repeats D")
    raise UserError(f"no ready-made prompt set {name!r} (have: ioi, greater_than, induction)")


BUILTINS = ("ioi", "greater_than", "induction")


# ------------------------------------------------------------------ encoded for a model
@dataclass
class Batch:
    """The rows of one token length, encoded for a model (batched forwards need equal lengths)."""
    rows: list  # indices into the prompt set's rows
    ids: object  # LongTensor [n, T]
    refs: object  # the counterfactuals' ids [n, T] (the prompts' own when not asked for)
    t: object  # target ids [n]
    d: object  # distractor ids [n]; -1: compare with the mean logit
    slots: list


def batches(m, ps: PromptSet, counterfactuals: bool = False) -> list:
    """One Batch per token length, shortest first; targets checked to be single tokens."""
    import torch

    groups: dict = {}
    for i, r in enumerate(ps.rows):
        ids = m.tokenize(r.prompt)
        ref = m.tokenize(r.counterfactual) if counterfactuals else ids
        if len(ref) != len(ids):
            raise UserError(f"counterfactual of {r.prompt!r} has {len(ref)} tokens, the prompt {len(ids)}")
        t = m.codec.output_token(r.target, "target")
        d = None if not r.distractor else m.codec.output_token(r.distractor, "distractor")
        if d == t:
            raise UserError(f"row {i + 1}: target and distractor are the same token")
        groups.setdefault(len(ids), []).append((i, ids, ref, t, -1 if d is None else d, r.slots))
    tensor = lambda xs: torch.tensor(xs, device=m.device)  # noqa: E731
    return [Batch([x[0] for x in items], tensor([x[1] for x in items]), tensor([x[2] for x in items]),
                  tensor([x[3] for x in items]), tensor([x[4] for x in items]), [x[5] for x in items])
            for _, items in sorted(groups.items())]


def split_batches(bs: list, size: Optional[int]) -> list:
    """Each Batch cut into pieces of at most `size` rows (memory is bounded by `size`, not by
    the set); a piece keeps its rows' order, so the same piece computes the same numbers
    wherever it runs (one process, a worker, a Ray actor)."""
    if not size:
        return bs
    return [Batch(b.rows[i:i + size], b.ids[i:i + size], b.refs[i:i + size], b.t[i:i + size], b.d[i:i + size],
                  b.slots[i:i + size]) for b in bs for i in range(0, len(b.rows), size)]


def logit_diff(last, t, d):
    """Per row: logit(target) − logit(distractor), or − the mean logit where d is -1."""
    import torch

    rows = torch.arange(last.shape[0], device=last.device)
    return last[rows, t] - torch.where(d >= 0, last[rows, d.clamp(min=0)], last.mean(-1))
