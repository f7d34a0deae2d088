"""RASP programs compiled into ground-truth testbeds (tracr's library programs and our own).

Each factory returns a fresh program; `build.py` resets tracr's global id counter before
calling it, so op labels are the same on every build. Importing this module needs tracr
(the optional `tracr` extra); running the debugger on the built testbeds does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from tracr.compiler import lib
from tracr.rasp import rasp

ABC = {"a", "b", "c"}
ABCD = {"a", "b", "c", "d"}
NUMS = {1, 2, 3, 4, 5}
BITS = {0, 1}


@dataclass
class Spec:
    name: str
    make: Callable[[], rasp.SOp]
    vocab: set
    max_seq_len: int
    description: str
    causal: bool = False


def _prev(sop, offset=1, name="prev"):
    sel = rasp.Select(rasp.indices, rasp.indices, lambda k, q: k == q - offset).named(f"{name}_select")
    return rasp.Aggregate(sel, sop, default=None).named(name)


def _length():
    return lib.make_length()


def _count_eq():
    sel = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ).named("same_token")
    return rasp.SelectorWidth(sel).named("count_same")


def _first_token():
    sel = rasp.Select(rasp.indices, rasp.indices, lambda k, q: k == 0).named("select_first")
    return rasp.Aggregate(sel, rasp.tokens).named("first_token")


def _own() -> list[Spec]:
    specs = [
        Spec("map_successor", lambda: rasp.Map(lambda x: x % 5 + 1, rasp.tokens).named("successor"), NUMS, 5,
             "each token's successor mod 5 (one MLP)"),
        Spec("map_is_even", lambda: rasp.Map(lambda x: x % 2 == 0, rasp.tokens).named("is_even"), NUMS, 5,
             "is the token even (one MLP)"),
        Spec("a_at_even_index", lambda: rasp.SequenceMap(lambda x, i: x == "a" and i % 2 == 0, rasp.tokens,
                                                          rasp.indices).named("a_at_even_index"), ABC, 6,
             "is this an a at an even position (a SequenceMap MLP on token and position)"),
        Spec("token_plus_index", lambda: rasp.SequenceMap(lambda x, y: (x + y) % 5, rasp.tokens, rasp.indices)
             .named("token_plus_index"), NUMS, 5, "(token + position) mod 5 (a SequenceMap MLP)"),
        Spec("double_plus_index", lambda: rasp.SequenceMap(
            lambda x, y: (x + y) % 7, rasp.Map(lambda x: 2 * x % 7, rasp.tokens).named("double"), rasp.indices)
             .named("double_plus_index"), NUMS, 5, "(2·token + position) mod 7: two MLPs in sequence"),
        Spec("prev_token", lambda: _prev(rasp.tokens), ABCD, 6, "copy the previous token (one head)", causal=True),
        Spec("prev_prev_token", lambda: _prev(rasp.tokens, 2, "prev2"), ABCD, 6,
             "copy the token two back (one head)", causal=True),
        Spec("next_token", lambda: rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, lambda k, q: k == q + 1)
                                                  .named("next_select"), rasp.tokens).named("next"), ABCD, 6,
             "copy the next token (one bidirectional head)"),
        Spec("first_token", _first_token, ABCD, 6, "copy the first token to every position (one head)"),
        Spec("count_same", _count_eq, ABC, 6, "how many tokens equal this one (SelectorWidth: a head and an MLP)"),
        Spec("count_smaller", lambda: rasp.SelectorWidth(
            rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LT).named("smaller")).named("count_smaller"),
             NUMS, 5, "how many tokens are smaller than this one (SelectorWidth)"),
        Spec("count_a_at_least_2", lambda: rasp.Map(lambda n: n >= 2, rasp.SelectorWidth(
            rasp.Select(rasp.tokens, rasp.tokens, lambda k, q: k == "a").named("is_a_key")).named("count_a"))
             .named("at_least_two_a"), ABC, 6, "are there at least two a's (SelectorWidth then a Map)"),
        Spec("equals_first", lambda: rasp.SequenceMap(lambda x, y: x == y, rasp.tokens, _first_token())
             .named("equals_first"), ABC, 6, "does this token equal the first token (head then SequenceMap)"),
        Spec("xor_prev", lambda: rasp.SequenceMap(lambda x, y: (x ^ y) if y is not None else x, rasp.tokens,
                                                   _prev(rasp.tokens)).named("xor_prev"), BITS, 6,
             "token XOR previous token (head then SequenceMap)", causal=True),
        Spec("frac_ones", lambda: rasp.numerical(rasp.Aggregate(
            rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.TRUE).named("all"),
            rasp.numerical(rasp.Map(lambda x: x, rasp.tokens).named("value")),
            default=0)).named("frac_ones"), BITS, 6, "fraction of ones in the sequence (numerical mean)"),
        Spec("frac_ones_so_far", lambda: rasp.numerical(rasp.Aggregate(
            rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ).named("up_to_here"),
            rasp.numerical(rasp.Map(lambda x: x, rasp.tokens).named("value")),
            default=0)).named("frac_ones_so_far"), BITS, 6, "running fraction of ones (numerical mean, causal select)"),
        Spec("length_parity", lambda: rasp.Map(lambda n: n % 2, _length()).named("length_parity"), ABC, 6,
             "parity of the sequence length (SelectorWidth then Map)"),
        Spec("last_token", lambda: rasp.Aggregate(rasp.Select(
            rasp.indices, rasp.Map(lambda n: n - 1, _length()).named("last_index"), rasp.Comparison.EQ)
            .named("select_last"), rasp.tokens).named("last_token"), ABCD, 5,
             "copy the last token everywhere (SelectorWidth, Map, then a head): 4 layers"),
        Spec("index_plus_length", lambda: rasp.SequenceMap(lambda x, n: (x + n) % 6, rasp.indices, _length())
             .named("index_plus_length"), ABC, 5, "(position + length) mod 6"),
        Spec("prev_equals", lambda: rasp.SequenceMap(lambda x, y: x == y, rasp.tokens, _prev(rasp.tokens))
             .named("prev_equals"), ABC, 6, "does this token repeat the previous one", causal=True),
        Spec("first_plus_prev", lambda: rasp.SequenceMap(
            lambda x, y: (x + (y or 0)) % 5, _first_token(), _prev(rasp.tokens)).named("first_plus_prev"), NUMS, 5,
             "(first token + previous token) mod 5: two heads then an MLP", causal=True),
        Spec("count_same_is_max", lambda: rasp.SequenceMap(
            lambda c, n: c == n, _count_eq(), _length()).named("all_same"), ABC, 5,
             "is every token equal to this one (two SelectorWidths then a SequenceMap)"),
    ]
    return specs


def _lib() -> list[Spec]:
    return [
        Spec("lib_length", lambda: lib.make_length(), ABC, 5, "tracr lib: sequence length"),
        Spec("lib_reverse", lambda: lib.make_reverse(rasp.tokens), ABCD, 5, "tracr lib: reverse the sequence"),
        Spec("lib_hist", lambda: lib.make_hist(), ABCD, 5, "tracr lib: histogram (count of each token)"),
        Spec("lib_sort_unique", lambda: lib.make_sort_unique(rasp.tokens, rasp.tokens), NUMS, 5,
             "tracr lib: sort (keys unique)"),
        Spec("lib_sort", lambda: lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=5, min_key=1), NUMS, 5,
             "tracr lib: sort (keys made unique by position)"),
        Spec("lib_sort_freq", lambda: lib.make_sort_freq(max_seq_len=5), ABC, 5, "tracr lib: sort by frequency"),
        Spec("lib_frac_prevs", lambda: lib.make_frac_prevs(rasp.tokens == "x"), {"x", "y"}, 5,
             "tracr lib: fraction of previous tokens that are x (numerical)"),
        Spec("lib_pair_balance", lambda: lib.make_pair_balance(rasp.tokens, "(", ")"), {"(", ")"}, 5,
             "tracr lib: running balance of brackets (numerical)"),
        Spec("lib_shuffle_dyck1", lambda: lib.make_shuffle_dyck(["()"]), {"(", ")"}, 5,
             "tracr lib: balanced-bracket check, one bracket type"),
        Spec("lib_shuffle_dyck2", lambda: lib.make_shuffle_dyck2(), {"(", ")", "{", "}"}, 5,
             "tracr lib: shuffle-Dyck with two bracket types"),
        Spec("lib_shift_by_1", lambda: lib.shift_by(1, rasp.tokens), ABCD, 5, "tracr lib: shift tokens right by one"),
        Spec("lib_detect_pattern", lambda: lib.detect_pattern(rasp.tokens, "abc"), ABC, 6,
             "tracr lib: detect the pattern a b c ending here"),
        Spec("lib_count_less_freq", lambda: lib.make_count_less_freq(2), ABCD, 5,
             "tracr lib: count tokens occurring at most twice"),
        Spec("lib_count_a", lambda: lib.make_count(rasp.tokens, "a"), ABC, 5, "tracr lib: count of a"),
    ]


def all_specs() -> list[Spec]:
    return _lib() + _own()
