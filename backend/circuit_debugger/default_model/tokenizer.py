"""A small byte-level BPE tokenizer: any text tokenizes (no unknown tokens), words keep
GPT-2-style leading spaces, and numbers split into digit pairs (" 1732" -> " 17", "32")."""

from __future__ import annotations

from .corpus import NAMES

BOS = "<|endoftext|>"
SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}{1,2}| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def train_tokenizer(vocab_size: int = 2048, seed: int = 0, corpus: str = "v1"):
    """`corpus` v1 reproduces the first default model's tokenizer; v2 and v3 are trained on their own
    corpus's training stream (held-out families never in it)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[BOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    if corpus == "v1":
        from .corpus import tokenizer_corpus
    elif corpus == "v2":
        from .corpus_v2 import tokenizer_corpus
    else:
        from .corpus_v3 import tokenizer_corpus
    tok.train_from_iterator(tokenizer_corpus(seed=seed), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=BOS)
    check(fast, range(11, 20) if corpus == "v1" else range(10, 21))
    return fast


def check(tok, centuries=range(11, 20)) -> None:
    """The properties the debugger's questions rely on."""
    one = lambda s: len(tok.encode(s, add_special_tokens=False)) == 1
    bad = [n for n in NAMES if not one(" " + n)]
    if bad:
        raise RuntimeError(f"names that are not single tokens: {bad}")
    years = [f" {c}" for c in centuries] + [f"{y:02d}" for y in range(100)]
    bad = [y for y in years if not one(y)]
    if bad:
        raise RuntimeError(f"year pieces that are not single tokens: {bad}")
    if tok.decode(tok.encode("Grüße, 東京! <b>x</b>", add_special_tokens=False)) != "Grüße, 東京! <b>x</b>":
        raise RuntimeError("byte-level round trip failed")
