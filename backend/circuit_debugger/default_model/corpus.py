"""The training and evaluation corpus of the default model: IOI, greater-than, induction and
plain English filler, generated from templates (no downloaded data; deterministic per seed).

Each example is (text_prefix, answer) where `answer` may be "" (plain LM text); the trainer
up-weights the loss on the answer token, which is what let IOI and induction emerge in a
CPU-sized budget.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

NAMES = ["Mary", "John", "Alice", "Bob", "Tom", "Anna", "James", "Sarah", "David", "Emma", "Paul", "Laura",
         "Mark", "Kate", "Peter", "Lucy", "Daniel", "Grace", "Henry", "Julia", "Jack", "Rose", "Adam", "Claire",
         "Sam", "Helen", "Luke", "Nina", "Oscar", "Ruth"]
PLACES = ["store", "park", "school", "office", "garden", "station", "market", "library", "beach", "hospital",
          "restaurant", "museum", "church", "river", "farm"]
OBJECTS = ["drink", "book", "ball", "letter", "gift", "key", "bag", "flower", "ring", "cake", "pen", "map",
           "coin", "hat", "ticket"]
NOUNS = ["war", "drought", "project", "journey", "reign", "strike", "expedition", "trial", "dynasty", "festival"]

# IOI templates are an intro clause (introducing A and B) + an action clause (S gives to IO).
IOI_INTROS = [
    "When {A} and {B} went to the {P},", "After {A} and {B} went to the {P},",
    "While {A} and {B} were working at the {P},", "Then, {A} and {B} went to the {P}.",
    "{A} and {B} had a long talk at the {P}.", "Friends {A} and {B} found a {O} at the {P}.",
    "Once {A} and {B} arrived at the {P},", "Yesterday {A} and {B} met at the {P}.",
    "As {A} and {B} left the {P},", "After the lunch, {A} and {B} went to the {P}.",
]
IOI_ACTIONS = [
    "{S} gave a {O} to", "{S} handed the {O} to", "{S} passed a {O} to", "{S} sent a {O} to",
    "{S} decided to give it to", "{S} showed the {O} to", "Afterwards {S} gave a {O} to",
    "{S} brought a {O} to",
]
# Held out: whole intro/action combinations never seen in training (their parts are).
IOI_HELDOUT_COMBOS = [(6, 2), (7, 3), (8, 5), (1, 7), (3, 4)]
IOI_TRAIN_TEMPLATES = [f"{i} {a}" for x, i in enumerate(IOI_INTROS) for y, a in enumerate(IOI_ACTIONS)
                       if (x, y) not in IOI_HELDOUT_COMBOS]
IOI_HELDOUT_TEMPLATES = [f"{IOI_INTROS[x]} {IOI_ACTIONS[y]}" for x, y in IOI_HELDOUT_COMBOS]
# A harder split, reported but not trained on at all: intro and verb never used in IOI training.
IOI_UNSEEN_TEMPLATES = [
    "Later {A} and {B} walked to the {P}, and {S} threw a {O} to",
    "Before {A} and {B} came to the {P}, {S} lent a {O} to",
]
FILLER_TEMPLATES = [
    "{A} likes the {P} near the {P2}.", "The {O} is on the table in the {P}.", "{A} went to the {P} in the morning.",
    "It was a quiet day at the {P}.", "The {O} was old, but {A} kept it.", "{A} and {B} are good friends.",
    "There is a small {P} next to the {P2}.", "{A} read a book about the {N}.", "The {N} ended after many years.",
    "{A} bought a new {O} at the {P}.", "Everyone at the {P} knew {A}.", "The weather was cold, so {A} stayed home.",
]


def name_pairs(seed: int = 0) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Ordered IOI name pairs, split 80/20 into train and held-out (a pair is held out in both orders)."""
    rng = random.Random(seed)
    unordered = [(a, b) for i, a in enumerate(NAMES) for b in NAMES[i + 1:]]
    rng.shuffle(unordered)
    cut = int(len(unordered) * 0.8)
    expand = lambda ps: [p for a, b in ps for p in ((a, b), (b, a))]
    return expand(unordered[:cut]), expand(unordered[cut:])


@dataclass
class Example:
    prefix: str
    answer: str  # '' for plain text
    kind: str
    distractor: str = ""  # IOI: the subject (the name that must not be predicted)


def ioi(rng: random.Random, pairs, templates) -> Example:
    io, s = rng.choice(pairs)
    a, b = (io, s) if rng.random() < 0.5 else (s, io)  # ABBA and BABA orders
    t = rng.choice(templates)
    return Example(t.format(A=a, B=b, S=s, P=rng.choice(PLACES), O=rng.choice(OBJECTS)), " " + io, "ioi", " " + s)


def greater_than(rng: random.Random) -> Example:
    century = rng.randint(11, 19)
    start = rng.randint(2, 97)
    end = rng.randint(start + 1, 99)
    noun = rng.choice(NOUNS)
    return Example(f"The {noun} lasted from the year {century}{start:02d} to the year {century}", f"{end:02d}", "gt")


def greater_than_prompt(rng: random.Random) -> tuple[str, int]:
    century, start = rng.randint(11, 19), rng.randint(2, 97)
    return f"The {rng.choice(NOUNS)} lasted from the year {century}{start:02d} to the year {century}", start


def filler(rng: random.Random) -> Example:
    parts = []
    for _ in range(rng.randint(2, 4)):
        t = rng.choice(FILLER_TEMPLATES)
        parts.append(t.format(A=rng.choice(NAMES), B=rng.choice(NAMES), P=rng.choice(PLACES),
                              P2=rng.choice(PLACES), O=rng.choice(OBJECTS), N=rng.choice(NOUNS)))
    return Example(" ".join(parts), "", "filler")


def word_induction(rng: random.Random) -> Example:
    """A repeated sequence of random words; the trainer weights the repeat."""
    words = [rng.choice(NAMES + PLACES + OBJECTS + NOUNS) for _ in range(rng.randint(4, 10))]
    seq = " " + " ".join(words)
    return Example(seq + seq, "", "induction_words")


def sample(rng: random.Random, train_pairs) -> Example:
    r = rng.random()
    if r < 0.40:
        return ioi(rng, train_pairs, IOI_TRAIN_TEMPLATES)
    if r < 0.60:
        return greater_than(rng)
    if r < 0.75:
        return word_induction(rng)
    return filler(rng)


def tokenizer_corpus(n: int = 20000, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    train, held = name_pairs(seed)
    out = []
    for _ in range(n):
        e = sample(rng, train + held)
        out.append(e.prefix + e.answer)
    out += [" ".join(NAMES), " " + " ".join(NAMES)]
    out += [f"the year {c}{y:02d}" for c in range(11, 20) for y in range(100)]
    for t in IOI_HELDOUT_TEMPLATES + IOI_UNSEEN_TEMPLATES:
        out.append(t.format(A="Mary", B="John", S="John", P="park", O="book"))
    return out


def stream_text(sample, names, centuries, n: int, seed: int) -> list[str]:
    """A tokenizer's training text drawn from a corpus's training stream (`sample`; held-out
    families are never drawn), then every name and every year piece, so each is one token."""
    rng = random.Random(seed)
    train, held = name_pairs(seed)
    out = [(e.prefix + e.answer) for e in (sample(rng, train + held) for _ in range(n))]
    out += [" ".join(names), " " + " ".join(names)]
    out += [f"the year {c}{y:02d}" for c in centuries for y in range(100)]
    return out
