"""The word lists corpus v3 composes its examples from (issue 14).

Three kinds of words matter for honest generalisation numbers:

- TRAIN words: everything below that IOI and greater-than training examples are built from;
- HELD words: the content words of corpus v2's held-out families (36 IOI templates, 4 greater-than
  frames). They may occur in plain filler text (so the model knows them as English words) but in no
  IOI or greater-than training example;
- STRICT words: the content words of the "strict" families (`STRICT_*` in corpus_v3), which occur in
  no training text at all (nor in the tokenizer's training text).

`check_lists()` (run at import) fails loudly if a list ever breaks these rules, and
tests/test_corpus_v3.py checks the generated stream word by word.
"""

from __future__ import annotations

import re

from .corpus import NAMES  # the 30 single-token names every model and test relies on  # noqa: F401

PLACES = ["store", "park", "school", "office", "garden", "station", "market", "library", "beach", "hospital",
          "restaurant", "museum", "church", "river", "farm", "kitchen", "cafe", "theater", "airport", "bakery",
          "harbor", "village", "zoo", "stadium", "hotel", "bank", "gym", "shop", "lake", "forest", "castle",
          "bridge", "square", "hall", "studio", "clinic", "cinema", "factory", "playground", "pool"]
OBJECTS = ["drink", "book", "ball", "letter", "gift", "key", "bag", "flower", "ring", "cake", "pen", "map",
           "coin", "hat", "ticket", "cup", "box", "note", "lamp", "toy", "shirt", "apple", "phone", "coat", "card",
           "bottle", "watch", "basket", "camera", "guitar", "pencil", "sandwich", "scarf", "candle", "picture",
           "plate", "kite", "jacket", "blanket", "radio"]
ADJECTIVES = ["small", "red", "new", "old", "big", "green", "blue", "heavy", "little", "bright", "strange",
              "lovely", "yellow", "warm", "tiny", "fine", "plain", "broken", "shiny", "white"]
ADVERBS = ["quickly", "slowly", "happily", "quietly", "finally", "gently", "suddenly", "proudly", "soon",
           "kindly", "eagerly", "carefully"]
# past-tense verbs that take an object and then "to" (IOI's action): and their base forms
GIVE_VERBS = [("gave", "give"), ("handed", "hand"), ("passed", "pass"), ("sent", "send"), ("showed", "show"),
              ("brought", "bring"), ("offered", "offer"), ("mailed", "mail"), ("returned", "return"),
              ("sold", "sell"), ("tossed", "toss"), ("delivered", "deliver"), ("taught", "teach"),
              ("posted", "post"), ("kicked", "kick"), ("rolled", "roll"), ("loaned", "loan"), ("served", "serve"),
              ("read", "read")]
# verbs (with their own particle) that end in "to"/"at"/"for" with no object
TALK_ACTIONS = ["talked to", "spoke to", "waved to", "said goodbye to", "wrote to", "smiled at", "shouted to",
                "whispered to", "nodded to", "explained the plan to", "told a story to", "sang a song to",
                "made a {O} for", "bought a {O} for", "baked a cake for", "cooked dinner for", "waited for",
                "looked at", "called out to", "sent a message to"]
MOTION_VERBS = ["went", "ran", "hurried", "moved", "rode", "travelled", "headed", "returned", "raced", "wandered",
                "cycled", "flew", "sailed", "marched", "rushed", "hiked"]
SEE_VERBS = ["met", "saw", "called", "visited", "joined", "helped", "found", "greeted", "followed", "noticed"]
DO_VERBS = ["found", "bought", "shared", "cleaned", "painted", "fixed", "opened", "packed", "washed", "wrapped",
            "picked", "lost", "chose", "admired"]
ING_VERBS = ["working", "sitting", "eating", "reading", "playing", "shopping", "singing", "talking", "studying",
             "cooking", "dancing", "painting"]
TIMES = ["Yesterday", "On Monday", "On Sunday", "That morning", "In the afternoon", "After lunch", "At noon",
         "Today", "In spring", "On Friday night", "After school", "In the morning", "That day", "Then"]
STATES = ["busy", "quiet", "empty", "crowded", "cold", "warm", "noisy", "calm", "dark", "sunny"]
DAYPARTS = ["morning", "afternoon", "day", "weekend", "night"]

# greater-than
EVENTS = ["war", "drought", "project", "journey", "reign", "strike", "expedition", "trial", "dynasty", "festival",
          "famine", "voyage", "campaign", "era", "conflict", "siege", "boom", "exhibition", "survey", "crisis",
          "revolt", "plague", "treaty", "empire", "tour"]
# (first verb, second verb): "The war started in 1732 and ended in 17"
GT_VERB_PAIRS = [("started", "ended"), ("began", "finished"), ("began", "ended"), ("opened", "closed"),
                 ("started", "stopped"), ("rose", "fell"), ("arrived", "left"), ("grew", "shrank"),
                 ("appeared", "vanished"), ("started", "finished")]
PERSON_PAIRS = [("was born", "died"), ("moved to the {P}", "left"), ("joined the {P}", "retired"),
                ("married", "divorced"), ("arrived", "departed"), ("bought the {P}", "sold it")]
SPAN_FROM_TO = [("from", "to"), ("from", "until"), ("from the year", "to the year"), ("from", "till"),
                ("from the year", "until the year")]

# plain-English filler (a small grammar, corpus_v3.filler_sentence)
PRONOUNS = ["He", "She", "They", "We", "I", "You"]
F_NOUNS = ["dog", "cat", "bird", "child", "teacher", "doctor", "farmer", "neighbor", "baker", "driver", "horse",
           "house", "car", "window", "door", "street", "city", "road", "table", "chair", "tree", "garden",
           "sky", "sun", "rain", "wind", "snow", "water", "bread", "soup", "tea", "coffee", "song", "story",
           "game", "idea", "plan", "question", "answer", "friend", "family", "week", "year", "morning", "night",
           "letter", "boat", "train", "bus", "shoe", "hill", "field", "room", "floor", "wall", "book", "box"]
F_ADJ = ["old", "new", "small", "big", "quiet", "busy", "happy", "sad", "cold", "warm", "long", "short", "red",
         "green", "kind", "tired", "hungry", "clean", "dirty", "early", "late", "bright", "dark", "young",
         "simple", "strange", "heavy", "empty", "full", "soft"]
F_VERBS_T = ["likes", "likes", "needs", "wants", "sees", "finds", "keeps", "cleans", "paints", "fixes", "opens",
             "closes", "loves", "hates", "carries", "holds", "watches", "remembers", "forgets", "moves"]
F_VERBS_T_PAST = ["liked", "needed", "wanted", "saw", "found", "kept", "cleaned", "painted", "fixed", "opened",
                  "closed", "loved", "watched", "remembered", "forgot", "moved", "threw", "carried", "searched",
                  "presented", "forwarded", "recorded", "built"]
F_VERBS_I = ["sleeps", "waits", "laughs", "works", "sings", "reads", "walks", "runs", "rests", "cries", "smiles",
             "talks", "listens", "stays"]
F_VERBS_I_PAST = ["slept", "waited", "laughed", "worked", "sang", "walked", "ran", "rested", "cried", "stayed",
                  "camped", "drove", "came", "continued", "resided"]
F_PREPS = ["in", "near", "behind", "under", "beside", "on", "by", "inside", "outside", "across", "through",
           "between the trees and"]
F_TIMES = ["every day", "in the morning", "at night", "on Sunday", "last week", "all day", "for hours",
           "after dinner", "before breakfast", "this year", "during the holiday", "one evening", "later",
           "early", "again", "first", "over there"]
F_OPENERS = ["Of course", "In the end", "Sadly", "Luckily", "Still", "Meanwhile", "However", "Later", "Before that",
             "Having eaten", "Early on", "During the storm"]
F_QUESTIONS = ["Where is the {FN}?", "Why is the {FN} so {FA}?", "Do you like the {FA} {FN}?",
               "Who has the {FN}?", "What did you do {FT}?", "Is the {FN} {FA}?", "How old is the {FN}?"]


def words(text: str) -> set:
    """Lower-cased alphabetic words of a text, template slots ({A}, {P} ...) removed."""
    return {w.lower() for w in re.findall(r"[A-Za-z]+", re.sub(r"\{\w+\}", "", text))}


FUNCTION_WORDS = {"the", "a", "and", "at", "from", "in", "to", "was", "were", "of", "it", "on"}


def check_lists(held: set, strict: set) -> None:
    """Refuse word lists that would leak held-out or strict words into training examples."""
    task = " ".join(PLACES + OBJECTS + ADJECTIVES + ADVERBS + [g for g, _ in GIVE_VERBS]
                    + [b for _, b in GIVE_VERBS if b] + TALK_ACTIONS + MOTION_VERBS + SEE_VERBS + DO_VERBS
                    + ING_VERBS + TIMES + STATES + DAYPARTS + EVENTS + [v for p in GT_VERB_PAIRS for v in p]
                    + [v for p in PERSON_PAIRS for v in p] + [v for p in SPAN_FROM_TO for v in p])
    leak = words(task) & (held | strict)
    if leak:
        raise RuntimeError(f"task word lists use held-out or strict words: {sorted(leak)}")
    filler = " ".join(PRONOUNS + F_NOUNS + F_ADJ + F_VERBS_T + F_VERBS_T_PAST + F_VERBS_I + F_VERBS_I_PAST
                      + F_PREPS + F_TIMES + F_OPENERS + F_QUESTIONS)
    leak = words(filler) & strict
    if leak:
        raise RuntimeError(f"filler word lists use strict words: {sorted(leak)}")
