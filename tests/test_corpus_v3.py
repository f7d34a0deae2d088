"""Corpus v3 (issue 14): the held-out measures in the model cards are honest only if the held-out
families really are held out. Checked word by word on a large sample of the training stream:
held-out families share no content word with any IOI / greater-than training example, strict
families share none with any training text (nor the tokenizer's), the hand-written outside
prompts occur nowhere, filler never puts a name where an IOI answer goes; the stream is
deterministic for a seed; and the one scorer counts what the cards say it counts."""

import random
import re

import pytest
import torch

from circuit_debugger.default_model import corpus_v3 as C3
from circuit_debugger.default_model import outside
from circuit_debugger.default_model import words as W

N = 20000


@pytest.fixture(scope="module")
def stream():
    rng = random.Random(0)
    train, _ = C3.name_pairs()
    return [C3.sample(rng, train) for _ in range(N)]


def test_held_out_families_share_no_content_word_with_any_task_example(stream):
    tasks = [e for e in stream if e.kind in ("ioi", "gt")]
    assert len(tasks) > N // 2
    seen = set().union(*(W.words(e.prefix) for e in tasks))
    for family in (C3.IOI_HELDOUT_INTROS, C3.IOI_HELDOUT_ACTIONS, C3.GT_HELDOUT_FRAMES):
        for t in family:
            content = W.words(t) - W.FUNCTION_WORDS
            assert content and not content & seen, (t, content & seen)
    # they are ordinary words the model may have read in plain text (that is what separates
    # them from the strict families)
    filler = set().union(*(W.words(e.prefix) for e in stream if e.kind == "filler"))
    assert len(C3.HELD_WORDS & filler) >= 15


def test_strict_families_use_words_in_no_training_text(stream):
    text = set().union(*(W.words(e.prefix + e.answer) for e in stream))
    text |= set().union(*(W.words(t) for t in C3.tokenizer_corpus(n=5000)))
    for family in (C3.STRICT_IOI_INTROS, C3.STRICT_IOI_ACTIONS, C3.STRICT_GT_FRAMES):
        for t in family:
            content = W.words(t) - W.FUNCTION_WORDS
            assert content and not content & text, (t, content & text)
    assert not set(C3.STRICT_GT_FRAMES) & set(C3.GT_HELDOUT_FRAMES)


def test_outside_prompts_occur_nowhere_in_training_text(stream):
    assert len(outside.IOI) == 40 and len(outside.GREATER_THAN) == 40
    text = "\n".join(e.prefix + e.answer for e in stream) + "\n" + "\n".join(C3.tokenizer_corpus(n=5000))
    for prompt in [p for p, _, _ in outside.IOI] + [p for p, _ in outside.GREATER_THAN]:
        last_clause = re.split(r"[.,:] ", prompt)[-1]
        assert prompt not in text and last_clause not in text, prompt
    for prompt, io, s in outside.IOI:  # well formed: both named, S again as the last clause's subject
        io, s = io.strip(), s.strip()
        assert prompt.count(io) >= 1 and prompt.count(s) >= 2 and prompt.rfind(s) > prompt.rfind(io), prompt
    for prompt, start in outside.GREATER_THAN:
        century = prompt.rsplit(" ", 1)[1]
        assert f"{century}{start:02d}" in prompt and 10 <= int(century) <= 20, prompt


def test_filler_never_puts_a_name_where_an_ioi_answer_goes(stream):
    names = "|".join(W.NAMES)
    after_prep = re.compile(rf"\b(to|for|at|with|toward|by)\s+({names})\b")
    fillers = [e for e in stream if e.kind == "filler"]
    assert len(fillers) > N // 5 and any(re.search(rf"\b({names})\b", e.prefix) for e in fillers)
    for e in fillers:
        assert not after_prep.search(e.prefix), e.prefix
    # an IOI example names exactly its two people (its filler sentence names no one)
    for e in (e for e in stream if e.kind == "ioi"):
        assert set(re.findall(rf"\b({names})\b", e.prefix)) == {e.answer.strip(), e.distractor.strip()}, e.prefix
        assert e.prefix.count(e.distractor.strip()) == 2 and e.prefix.count(e.answer.strip()) == 1, e.prefix
    gts = [e for e in stream if e.kind == "gt"]
    assert all(int(e.answer) > int(re.findall(r"\d{4}", e.prefix)[-1][2:]) for e in gts)


def test_about_thirty_percent_of_ioi_uses_made_up_verbs(stream):
    ioi = [e for e in stream if e.kind == "ioi"]
    known = W.words(" ".join(W.NAMES + W.PLACES + W.OBJECTS + W.ADJECTIVES + W.ADVERBS + W.TALK_ACTIONS
                             + W.MOTION_VERBS + W.SEE_VERBS + W.DO_VERBS + W.ING_VERBS + W.TIMES + W.STATES
                             + W.DAYPARTS + C3.INTRO_SHAPES + C3.ACTION_SHAPES
                             + [g for g, b in W.GIVE_VERBS] + [b for g, b in W.GIVE_VERBS]))
    made_up = sum(bool(W.words(e.prefix) - known - W.words(" ".join(W.F_NOUNS + W.F_ADJ + W.PRONOUNS + W.F_VERBS_T
                                                                   + W.F_VERBS_T_PAST + W.F_VERBS_I + W.F_VERBS_I_PAST
                                                                   + W.F_PREPS + W.F_TIMES + W.F_OPENERS + W.F_QUESTIONS)))
                  for e in ioi)
    assert 0.2 < made_up / len(ioi) < 0.4, made_up / len(ioi)
    assert len(set(C3.INTRO_SHAPES)) >= 17 and len(set(C3.ACTION_SHAPES)) >= 8


def test_stream_and_tokenizer_are_deterministic_for_a_seed():
    from circuit_debugger.default_model.tokenizer import train_tokenizer

    train, _ = C3.name_pairs()
    draw = lambda seed: [C3.sample(random.Random(seed), train).prefix for _ in range(50)]  # noqa: E731
    rng_a, rng_b, rng_c = random.Random(3), random.Random(3), random.Random(4)
    a = [C3.sample(rng_a, train).prefix for _ in range(300)]
    assert a == [C3.sample(rng_b, train).prefix for _ in range(300)]
    assert a != [C3.sample(rng_c, train).prefix for _ in range(300)]
    assert draw(1) == draw(1)
    t1, t2 = train_tokenizer(corpus="v3"), train_tokenizer(corpus="v3")
    assert t1.backend_tokenizer.get_vocab() == t2.backend_tokenizer.get_vocab()
    for name in W.NAMES:  # every name one token, as the debugger's questions need
        assert len(t1.encode(" " + name, add_special_tokens=False)) == 1


class _Fixed:
    """A stand-in model whose last-position logits are given, to check what the scorer counts."""

    def __init__(self, logits):
        self.last = logits

    def __call__(self, ids):
        out = torch.zeros(1, ids.shape[1], len(self.last))
        out[0, -1] = self.last
        return type("Out", (), {"logits": out})


def test_the_scorer_counts_later_years_and_io_over_s():
    from circuit_debugger.default_model import generalisation as G
    from circuit_debugger.default_model.tokenizer import train_tokenizer

    tok = train_tokenizer(corpus="v3")
    V = len(tok)
    year = lambda y: tok.encode(f"{y:02d}", add_special_tokens=False)[0]  # noqa: E731
    logits = torch.full((V,), -30.0)
    logits[year(50)] = 10.0
    r = G.gt_scores(_Fixed(logits), tok, [("The war lasted from 1749 to 17", 49), ("The war lasted from 1750 to 17", 50)])
    assert r["accuracy"] == 0.5 and r["n"] == 2  # the same year is not a later year
    assert abs(r["mean_prob_diff"] - 0.0) < 1e-6  # +1 and -1
    mary, john = (tok.encode(x, add_special_tokens=False)[0] for x in (" Mary", " John"))
    logits = torch.zeros(V)
    logits[mary], logits[john] = 2.0, 1.0
    r = G.ioi_scores(_Fixed(logits), tok, [("x", " Mary", " John"), ("y", " John", " Mary")])
    assert (r["accuracy"], r["prefers_io_over_s"], r["mean_logit_diff"]) == (0.5, 0.5, 0.0)
