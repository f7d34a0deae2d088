"""Corpus v3: IOI and greater-than composed from parts, plain-English filler from a small grammar,
and honest held-out families (issue 14).

Corpus v1 (`corpus.py`) and v2 (`corpus_v2.py`) are left untouched so earlier models reproduce.
v2 listed whole templates, and the models learned the templates rather than the tasks. v3
composes every example from parts (`words.py`):

- IOI: 17 intro shapes x 9 action shapes, over give / talk / motion / see / do verbs, places,
  objects, adverbs, adjectives and time phrases; ABBA and BABA orders; in a quarter of examples a
  sentence of (name-free) filler before the intro or between intro and action; ~30% of examples
  use made-up verbs ("Mary and John tobiked to the park. John kesed a book to"), so the task cannot
  be solved by recognising a verb;
- greater-than: subjects x verb pairs x spans, over centuries 10-20, ~30% made-up verbs;
- filler: a small grammar over a few hundred words (names only ever as subjects, never after a
  preposition, so filler never puts a name where an IOI answer goes).

Held-out families (reported in every card, `generalisation.py`):
- HELD: corpus v2's 36 held-out IOI templates and 4 greater-than frames. No IOI or greater-than
  training example contains any of their content words (they may occur in plain filler);
- STRICT: the families below, whose content words occur in no training text at all;
- outside.py: prompts written by hand, before training, to none of these rules.
tests/test_corpus_v3.py checks all of it word by word on the generated stream.
"""

from __future__ import annotations

import random

from . import corpus_v2 as V2
from . import words as W
from .corpus import Example, name_pairs, stream_text  # noqa: F401 (re-exported: the same name-pair split)

NAMES, PLACES, OBJECTS, EVENTS = W.NAMES, W.PLACES, W.OBJECTS, W.EVENTS
CENTURIES = list(range(10, 21))

# ---------------------------------------------------------------- held-out and strict families
IOI_HELDOUT_INTROS, IOI_HELDOUT_ACTIONS = V2.IOI_HELDOUT_INTROS, V2.IOI_HELDOUT_ACTIONS
GT_HELDOUT_FRAMES = V2.GT_HELDOUT_FRAMES
STRICT_IOI_INTROS = [
    "Around midnight {A} and {B} tiptoed into the {P}.", "{A} and {B} strolled toward the {P}, chatting,",
    "Whenever {A} and {B} lingered beneath the {P} archway,", "{A} and {B} gathered pebbles beyond the {P}.",
    "Amid thunderstorms, {A} and {B} sheltered within the {P}.",
]
STRICT_IOI_ACTIONS = ["{S} bequeathed a {O} to", "{S} entrusted the {O} to", "{S} hurled a {O} to",
                      "{S} dispatched the {O} to", "{S} surrendered the {O} to"]
STRICT_GT_FRAMES = ["The {N} commenced around {X} and concluded around {C}",
                    "{A} inherited the {P} in {X} and bequeathed it in {C}",
                    "The {N} flourished circa {X} and dwindled circa {C}",
                    "Construction commenced in {X}; completion ensued in {C}"]
HELD_WORDS = W.words(" ".join(IOI_HELDOUT_INTROS + IOI_HELDOUT_ACTIONS + GT_HELDOUT_FRAMES)) - W.FUNCTION_WORDS
STRICT_WORDS = W.words(" ".join(STRICT_IOI_INTROS + STRICT_IOI_ACTIONS + STRICT_GT_FRAMES)) - W.FUNCTION_WORDS
W.check_lists(HELD_WORDS, STRICT_WORDS)

# ---------------------------------------------------------------- IOI
INTRO_SHAPES = [
    "When {A} and {B} {MV} to the {P},", "After {A} and {B} {MV} to the {P},", "{T} {A} and {B} {MV} to the {P}.",
    "{A} and {B} {MV} to the {ADJ} {P} together.", "While {A} and {B} were {ING} at the {P},",
    "{A} {SV} {B} at the {P}, and then", "At the {P}, {A} and {B} {DV} a {O}.", "{A} and {B} {DV} a {ADJ} {O} at the {P}.",
    "{T} {A} {SV} {B} at the {P}.", "The {P} was {ST} when {A} and {B} arrived.", "{A}, {B} and their friends {MV} to the {P}.",
    "Since {A} and {B} were at the {P},", "Once {A} and {B} {MV} to the {P},", "{A} and {B} spent the {DP} at the {P}.",
    "As {A} and {B} {DV} the {O} at the {P},", "{A} and {B} were {ING} in the {P}.", "It was {ST} at the {P}, so {A} and {B} {MV} home.",
]
ACTION_SHAPES = [
    "{S} {GV} a {O} to", "{S} {GV} the {ADJ} {O} to", "{S} {ADV} {GV} a {O} to", "{S} decided to {GB} the {O} to",
    "{S} {TA}", "Then {S} {GV} a {O} to", "{S} {GV} the {O} back to", "{S} wanted to {GB} a {O} to", "{S} {ADV} {TA}",
]
NONCE_RATE = 0.3
_CONS, _VOW = "bcdfghklmnprstvz", "aeiou"
_REAL = W.words(" ".join(W.PLACES + W.OBJECTS + W.F_NOUNS + W.F_ADJ + W.F_VERBS_T + W.F_VERBS_T_PAST + W.F_VERBS_I
                         + W.F_VERBS_I_PAST + W.MOTION_VERBS + W.DO_VERBS + W.SEE_VERBS))


def nonce(rng: random.Random, suffix: str = "") -> str:
    """A made-up word; never a held-out, strict or listed English word."""
    while True:
        w = "".join(rng.choice(_CONS) + rng.choice(_VOW) for _ in range(rng.randint(1, 3))) + suffix
        if w not in HELD_WORDS | STRICT_WORDS | _REAL:
            return w


def _verbs(rng: random.Random, made_up: bool) -> dict:
    if made_up:
        ed = lambda: nonce(rng, "ed")
        return {"MV": ed(), "SV": ed(), "DV": ed(), "GV": ed(), "GB": nonce(rng),
                "TA": f"{ed()} {rng.choice(['to', 'to', 'for', 'at'])}", "ING": nonce(rng, "ing")}
    g = rng.choice([v for v in W.GIVE_VERBS if v[1]])
    return {"MV": rng.choice(W.MOTION_VERBS), "SV": rng.choice(W.SEE_VERBS), "DV": rng.choice(W.DO_VERBS),
            "GV": rng.choice(W.GIVE_VERBS)[0], "GB": g[1], "TA": rng.choice(W.TALK_ACTIONS), "ING": rng.choice(W.ING_VERBS)}


def _fill(template: str, slots: dict) -> str:
    for _ in range(2):  # a slot's value may itself hold a slot ("made a {O} for")
        for k, v in slots.items():
            template = template.replace("{" + k + "}", v)
    return template


def ioi(rng: random.Random, pairs, intros=None, actions=None, nonce_rate: float = NONCE_RATE,
        filler_rate: float = 0.25) -> Example:
    """An IOI example; with `intros`/`actions` (template lists) a held-out or strict family instead."""
    io, s = rng.choice(pairs)
    a, b = (io, s) if rng.random() < 0.5 else (s, io)  # ABBA and BABA orders
    made_up = intros is None and rng.random() < nonce_rate
    slots = {**_verbs(rng, made_up), "A": a, "B": b, "S": s, "P": rng.choice(PLACES), "O": rng.choice(OBJECTS),
             "ADJ": rng.choice(W.ADJECTIVES), "ADV": rng.choice(W.ADVERBS), "T": rng.choice(W.TIMES),
             "ST": rng.choice(W.STATES), "DP": rng.choice(W.DAYPARTS)}
    intro = _fill(rng.choice(intros or INTRO_SHAPES), slots)
    action = _fill(rng.choice(actions or ACTION_SHAPES), slots)
    if intro.endswith("then") and action.startswith("Then "):
        action = action[5:]
    elif intro.endswith(",") and action.startswith("Then "):
        action = "then " + action[5:]
    parts = [intro, action]
    if intros is None and rng.random() < filler_rate:  # a sentence of ordinary text before or between
        where = rng.choice([0, 1]) if intro.endswith(".") else 0
        parts.insert(where, filler_sentence(rng, names=False, avoid=HELD_WORDS))
    return Example(" ".join(parts), " " + io, "ioi", " " + s)


# ---------------------------------------------------------------- greater-than
GT_SHAPES = [
    "{SUBJ} {V1} in {X} and {V2} in {C}", "{SUBJ} {V1} in the year {X} and {V2} in the year {C}",
    "{SUBJ} lasted {FROM} {X} {TO} {C}", "{SUBJ} ran {FROM} {X} {TO} {C}", "In {X} the {N} {V1}, and in {C}",
    "{SUBJ}, which {V1} in {X}, {V2} in {C}", "{NAME} {PV1} in {X} and {PV2} in {C}",
    "{SUBJ} went on {FROM} {X} {TO} {C}",
]


def greater_than_prompt(rng: random.Random, frames=None, centuries=CENTURIES,
                        nonce_rate: float = NONCE_RATE) -> tuple[str, int]:
    """A greater-than prompt ending in a century token, and its start year (2..97); with `frames`
    (templates with {N} {A} {P} {X} {C}) a held-out or strict family instead."""
    c, start = rng.choice(centuries), rng.randint(2, 97)
    n = rng.choice(EVENTS)
    if frames is not None:
        f = rng.choice(frames)
        return f.format(N=n, A=rng.choice(NAMES), P=rng.choice(PLACES), X=f"{c}{start:02d}", C=c), start
    v1, v2 = rng.choice(W.GT_VERB_PAIRS)
    pv1, pv2 = rng.choice(W.PERSON_PAIRS)
    if rng.random() < nonce_rate:
        v1, v2, pv1, pv2 = (nonce(rng, "ed") for _ in range(4))
    fr, to = rng.choice(W.SPAN_FROM_TO)
    subj = rng.choice(["The {N}", "The {ADJ} {N}", "The {N}", "Our {N}"])
    text = _fill(rng.choice(GT_SHAPES), {"SUBJ": subj, "V1": v1, "V2": v2, "PV1": pv1, "PV2": pv2, "FROM": fr,
                                        "TO": to, "NAME": rng.choice(NAMES), "N": n, "ADJ": rng.choice(W.ADJECTIVES),
                                        "P": rng.choice(PLACES), "X": f"{c}{start:02d}", "C": str(c)})
    return text[0].upper() + text[1:], start


def greater_than(rng: random.Random, filler_rate: float = 0.25) -> Example:
    prompt, start = greater_than_prompt(rng)
    if rng.random() < filler_rate:
        prompt = filler_sentence(rng, names=False, avoid=HELD_WORDS) + " " + prompt
    return Example(prompt, f"{rng.randint(start + 1, 99):02d}", "gt")


# ---------------------------------------------------------------- filler
def _np(rng: random.Random, names: bool) -> tuple[str, bool]:
    """A subject and whether it is third person singular."""
    r = rng.random()
    if names and r < 0.3:
        return rng.choice(NAMES), True
    if r < 0.6:
        p = rng.choice(W.PRONOUNS)
        return p, p in ("He", "She")
    return f"The {rng.choice(W.F_ADJ)} {rng.choice(W.F_NOUNS)}", True


def _lower(subj: str) -> str:
    return subj if subj == "I" or subj in NAMES else subj[0].lower() + subj[1:]


def _sentence(rng: random.Random, names: bool) -> str:
    s = _sentence_raw(rng, names)
    for v in "aeiou":
        s = s.replace(f" a {v}", f" an {v}")
    return s


def _sentence_raw(rng: random.Random, names: bool) -> str:
    subj, third = _np(rng, names)
    fa, fn, fn2 = rng.choice(W.F_ADJ), rng.choice(W.F_NOUNS), rng.choice(W.F_NOUNS)
    pp = f"{rng.choice(W.F_PREPS)} the {fn2}"
    k = rng.randrange(9)
    if k == 0:
        verb = rng.choice(W.F_VERBS_T) if third and rng.random() < 0.5 else rng.choice(W.F_VERBS_T_PAST)
        return f"{subj} {verb} the {fa} {fn} {pp}."
    if k == 1:
        verb = rng.choice(W.F_VERBS_I) if third and rng.random() < 0.5 else rng.choice(W.F_VERBS_I_PAST)
        return f"{subj} {verb} {rng.choice(W.F_TIMES)}."
    if k == 2:
        return f"{rng.choice(W.F_OPENERS)}, {_lower(subj)} {rng.choice(W.F_VERBS_T_PAST)} the {fn}."
    if k == 3:
        return f"The {fn} was {fa} {rng.choice(W.F_TIMES)}."
    if k == 4:
        return f"{subj} said that the {fn} was {fa}."
    if k == 5:
        return _fill(rng.choice(W.F_QUESTIONS), {"FN": fn, "FA": fa, "FT": rng.choice(W.F_TIMES)})
    if k == 6:
        return f"There is a {fa} {fn} {pp}."
    if k == 7:
        verb = rng.choice(W.F_VERBS_I_PAST)
        return f"{subj} {verb} {pp}, and the {fn} was {fa}."
    return f"It was {fa} {rng.choice(W.F_TIMES)}, so {_lower(subj)} {rng.choice(W.F_VERBS_I_PAST)}."


def filler_sentence(rng: random.Random, names: bool = True, avoid: set = frozenset()) -> str:
    """One sentence of plain English; `names=False` for the sentence inside a task example (a
    third name there would change the task), `avoid` for words it must not contain."""
    while True:
        s = _sentence(rng, names)
        if not (avoid and W.words(s) & avoid):
            return s


def filler(rng: random.Random) -> Example:
    return Example(" ".join(filler_sentence(rng) for _ in range(rng.randint(2, 4))), "", "filler")


def word_induction(rng: random.Random) -> Example:
    """A repeated sequence of random words; the trainer weights the repeat."""
    pool = NAMES + PLACES + OBJECTS + EVENTS + W.F_NOUNS
    seq = " " + " ".join(rng.choice(pool) for _ in range(rng.randint(4, 10)))
    return Example(seq + seq, "", "induction_words")


def sample(rng: random.Random, train_pairs) -> Example:
    r = rng.random()
    if r < 0.40:
        return ioi(rng, train_pairs)
    if r < 0.60:
        return greater_than(rng)
    if r < 0.72:
        return word_induction(rng)
    return filler(rng)


def tokenizer_corpus(n: int = 20000, seed: int = 0) -> list[str]:
    """The v3 tokenizer's training text: the training stream only (held-out and strict families and
    outside prompts excluded), plus every name and year piece."""
    return stream_text(sample, NAMES, CENTURIES, n, seed)
