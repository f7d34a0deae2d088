"""Corpus v2: the wider training corpus (issue 14), and held-out template families.

Corpus v1 (`corpus.py`) is left untouched so that the shipped default GPT-2 stays reproducible
(`train --arch gpt2 --corpus v1`). v2 widens every task:

- IOI: many more intros (different sentence shapes and clause orders, names conjoined or not),
  more verbs and objects, optionally after a sentence of filler;
- greater-than: centuries 10-20 and eight phrasings ("lasted from ... to", "was born in ... and
  died in", ...);
- filler: more varied, natural-text-like sentences (pronouns, questions, dialogue);
- nonce words: 40% of IOI intros/actions and greater-than frames use made-up verbs and
  prepositions ("Mary and John tobiked to the park. John kesed a book to"), so the tasks cannot be
  solved by recognising a trained verb or frame.

HELD-OUT families (`IOI_HELDOUT_*`, `GT_HELDOUT_FRAMES`) share no intro, verb or frame with
anything `sample` can produce (tests/test_corpus_v2.py checks it word by word over a sample of the
training stream), and the v2 tokenizer is trained without them, so their words are as new to the
model as a user's. The model cards report accuracy on them.
"""

from __future__ import annotations

import random

from .corpus import NAMES, NOUNS, Example, name_pairs, stream_text, word_induction  # noqa: F401 (re-exported)
from .corpus import OBJECTS as OBJECTS_V1
from .corpus import PLACES as PLACES_V1

PLACES = PLACES_V1 + ["kitchen", "cafe", "theater", "airport", "bakery", "harbor", "village", "zoo",
                      "stadium", "hotel"]
OBJECTS = OBJECTS_V1 + ["cup", "box", "note", "lamp", "toy", "shirt", "apple", "phone", "coat", "card"]
CENTURIES = list(range(10, 21))

IOI_INTROS = [
    "When {A} and {B} went to the {P},", "After {A} and {B} went to the {P},",
    "While {A} and {B} were working at the {P},", "Then, {A} and {B} went to the {P}.",
    "{A} and {B} had a long talk at the {P}.", "Friends {A} and {B} found a {O} at the {P}.",
    "Once {A} and {B} arrived at the {P},", "Yesterday {A} and {B} met at the {P}.",
    "As {A} and {B} left the {P},", "After the lunch, {A} and {B} went to the {P}.",
    "On Monday {A} and {B} visited the {P}.", "At the {P}, {A} and {B} had dinner.",
    "{A} met {B} at the {P}, and then", "{A} and {B} were sitting in the {P}.",
    "In the {P}, {A} talked with {B}.", "The {P} was busy when {A} and {B} arrived.",
    "{A} and {B} spent the day at the {P}.", "Last week {A} and {B} cleaned the {P}.",
    "{A} called {B} from the {P}, and", "After {A} and {B} finished work at the {P},",
    "{A} and {B} got a {O} at the {P}.", "Since {A} and {B} were at the {P},",
    "It was late when {A} and {B} reached the {P}.", "{A} saw {B} at the {P}.",
    "The {O} that {A} and {B} found at the {P} was old.", "{A}, {B} and their friends went to the {P}.",
]
IOI_ACTIONS = [
    "{S} gave a {O} to", "{S} handed the {O} to", "{S} passed a {O} to", "{S} sent a {O} to",
    "{S} decided to give it to", "{S} showed the {O} to", "Afterwards {S} gave a {O} to",
    "{S} brought a {O} to", "{S} offered a {O} to", "{S} mailed the {O} to", "{S} returned the {O} to",
    "{S} sold a {O} to", "{S} tossed the {O} to", "{S} delivered the {O} to", "{S} said goodbye to",
    "{S} wrote a letter to", "{S} waved to", "{S} smiled at", "{S} gave the {O} back to",
    "{S} quickly handed a {O} to", "Then {S} gave a {O} to", "{S} wanted to give the {O} to",
    "{S} bought a {O} for", "{S} made a {O} for", "{S} talked to",
]
# Held out: intros and verbs that no training text uses.
IOI_HELDOUT_INTROS = [
    "Later {A} and {B} walked to the {P}, and", "Before {A} and {B} came to the {P},",
    "During the holiday, {A} and {B} camped at the {P}.", "Early one evening {A} and {B} drove to the {P}.",
    "{A} and {B} were waiting outside the {P}.", "Having searched the {P}, {A} and {B} rested.",
]
IOI_HELDOUT_ACTIONS = [
    "{S} threw a {O} to", "{S} lent a {O} to", "{S} presented a {O} to", "{S} forwarded the {O} to",
    "{S} slipped a {O} to", "{S} carried the {O} over to",
]
IOI_HELDOUT_TEMPLATES = [f"{i} {a}" for i in IOI_HELDOUT_INTROS for a in IOI_HELDOUT_ACTIONS]

GT_FRAMES = [
    "The {N} lasted from the year {X} to the year {C}", "The {N} lasted from {X} to {C}",
    "The {N} started in {X} and ended in {C}", "{A} was born in {X} and died in {C}",
    "The {N} began in the year {X} and finished in the year {C}", "The {P} was open from {X} until {C}",
    "In {X} the {N} started, and in {C}", "The {N} ran from {X} to {C}",
]
GT_HELDOUT_FRAMES = [
    "{A} resided at the {P} between {X} and {C}", "The {N} continued from {X} through {C}",
    "The {P} was built in {X} and rebuilt in {C}", "The {N} was first recorded in {X}, and last recorded in {C}",
]
_HELD_WORDS: set = set()  # filled below, once the held-out families are defined
FILLER = [
    "{A} likes the {P} near the {P2}.", "The {O} is on the table in the {P}.", "{A} went to the {P} in the morning.",
    "It was a quiet day at the {P}.", "The {O} was old, but {A} kept it.", "{A} and {B} are good friends.",
    "There is a small {P} next to the {P2}.", "{A} read a book about the {N}.", "The {N} ended after many years.",
    "{A} bought a new {O} at the {P}.", "Everyone at the {P} knew {A}.", "The weather was cold, so {A} stayed home.",
    "She said that the {P} was closed.", "He could not find his {O} anywhere.", "Do you know where the {P} is?",
    "\"I like this {O},\" said {A}.", "They often talk about the {N}.", "The {P} opens at nine and closes at six.",
    "{A} thinks the {O} is too expensive.", "Nobody remembers the {N} any more.", "It rained all day in the {P}.",
    "We should go to the {P} tomorrow.", "The children played near the {P2} for hours.", "What a beautiful {O}!",
    "{A} has never been to the {P}.", "Most people in the village liked {A}.", "The old {O} broke last year.",
    "Why did {A} leave so early?", "The {P} is far from here, but the {P2} is close.", "{A} wrote about the {N} in a letter.",
]


# Nonce words: a share of IOI and greater-than examples use made-up verbs and prepositions, so
# the tasks cannot be solved by recognising a verb or a frame (they never spell a held-out word).
NONCE_IOI_INTROS = ["{A} and {B} {V} to the {P},", "{A} and {B} {V} at the {P}.", "{A} {V} {B} at the {P}, and",
                    "{W} {A} and {B} {V} the {P}.", "In the {P}, {A} and {B} {V}."]
NONCE_IOI_ACTIONS = ["{S} {V} a {O} to", "{S} {V} the {O} to", "{S} {V} to", "{S} {V} the {O} {W} to"]
NONCE_GT_FRAMES = ["The {N} {V} in {X} and {V2} in {C}", "The {N} {V} from {X} {W} {C}",
                   "{A} {V} at the {P} {W} {X} and {C}", "In {X} the {N} {V}, and in {C}"]
_CONS, _VOW = "bcdfghklmnprstvz", "aeiou"


def _held_words() -> set:
    import re

    text = " ".join(IOI_HELDOUT_INTROS + IOI_HELDOUT_ACTIONS + GT_HELDOUT_FRAMES)
    return {w.lower() for w in re.findall(r"[A-Za-z]+", re.sub(r"\{\w+\}", "", text))}


def nonce(rng: random.Random, suffix: str = "") -> str:
    while True:
        w = "".join(rng.choice(_CONS) + rng.choice(_VOW) for _ in range(rng.randint(1, 3))) + suffix
        if w not in _HELD_WORDS:
            return w


def ioi(rng: random.Random, pairs, intros=IOI_INTROS, actions=IOI_ACTIONS, nonce_rate: float = 0.0) -> Example:
    io, s = rng.choice(pairs)
    a, b = (io, s) if rng.random() < 0.5 else (s, io)  # ABBA and BABA orders
    intro = rng.choice(NONCE_IOI_INTROS if rng.random() < nonce_rate else intros)
    action = rng.choice(NONCE_IOI_ACTIONS if rng.random() < nonce_rate else actions)
    intro = intro.replace("{V}", nonce(rng, "ed")).replace("{W}", nonce(rng).capitalize())
    action = action.replace("{V}", nonce(rng, "ed")).replace("{W}", nonce(rng))
    text = f"{intro} {action}".format(A=a, B=b, S=s, P=rng.choice(PLACES), O=rng.choice(OBJECTS))
    return Example(text, " " + io, "ioi", " " + s)


def greater_than_prompt(rng: random.Random, frames=GT_FRAMES, centuries=CENTURIES,
                        nonce_rate: float = 0.0) -> tuple[str, int]:
    c, start = rng.choice(centuries), rng.randint(2, 97)
    f = rng.choice(NONCE_GT_FRAMES if rng.random() < nonce_rate else frames)
    f = f.replace("{V}", nonce(rng, "ed")).replace("{V2}", nonce(rng, "ed")).replace("{W}", nonce(rng))
    text = f.format(N=rng.choice(NOUNS), A=rng.choice(NAMES), P=rng.choice(PLACES), X=f"{c}{start:02d}", C=c)
    return text, start


def greater_than(rng: random.Random) -> Example:
    prompt, start = greater_than_prompt(rng, nonce_rate=0.4)
    return Example(prompt, f"{rng.randint(start + 1, 99):02d}", "gt")


def filler_sentence(rng: random.Random) -> str:
    return rng.choice(FILLER).format(A=rng.choice(NAMES), B=rng.choice(NAMES), P=rng.choice(PLACES),
                                     P2=rng.choice(PLACES), O=rng.choice(OBJECTS), N=rng.choice(NOUNS))


def filler(rng: random.Random) -> Example:
    return Example(" ".join(filler_sentence(rng) for _ in range(rng.randint(2, 4))), "", "filler")


def sample(rng: random.Random, train_pairs) -> Example:
    r = rng.random()
    if r < 0.40:
        e = ioi(rng, train_pairs, nonce_rate=0.4)
    elif r < 0.60:
        e = greater_than(rng)
    elif r < 0.72:
        return word_induction(rng)
    else:
        return filler(rng)
    if rng.random() < 0.25:  # the task after a sentence of ordinary text
        e = Example(filler_sentence(rng) + " " + e.prefix, e.answer, e.kind, e.distractor)
    return e


def tokenizer_corpus(n: int = 20000, seed: int = 0) -> list[str]:
    """The v2 tokenizer's training text: the training stream only (held-out families excluded)."""
    return stream_text(sample, NAMES, CENTURIES, n, seed)


_HELD_WORDS |= _held_words()
