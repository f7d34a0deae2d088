"""Text <-> token ids for a model, with the single-token checks the debugger needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

from .errors import UserError


@dataclass
class HFCodec:
    """A HuggingFace tokenizer; prepends BOS when the model expects it."""

    tokenizer: object
    prepend_bos: bool = True
    # id -> its text, decoded once: a tokenizer call costs ~20 us and a node's explanation
    # shows ~300 tokens (it was most of that route's time). At most one entry per vocabulary id.
    _pieces: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def bos_id(self) -> Optional[int]:
        return self.tokenizer.bos_token_id

    def encode_prompt(self, text: str) -> list[int]:
        ids = list(self.tokenizer.encode(text, add_special_tokens=False))
        if self.prepend_bos and self.bos_id is not None:
            ids = [self.bos_id] + ids
        return ids

    def _piece(self, i) -> str:
        i = int(i)
        s = self._pieces.get(i)
        if s is None:
            s = self.tokenizer.decode([i])
            if 0 <= i < len(self.tokenizer) and len(self._pieces) < (1 << 20):
                self._pieces[i] = s
        return s

    def token_strs(self, ids: Sequence[int]) -> list[str]:
        return [self._piece(i) for i in ids]

    def output_str(self, i: int) -> str:
        return self._piece(i)

    def output_token(self, text: str, what: str = "target") -> int:
        """The id of `text`, which must be exactly one token."""
        if not isinstance(text, str) or text == "":
            raise UserError(f"{what} must be a non-empty string")
        ids = list(self.tokenizer.encode(text, add_special_tokens=False))
        if len(ids) != 1:
            pieces = ", ".join(repr(s) for s in self.token_strs(ids))
            raise UserError(
                f"{what} {text!r} must be exactly one token, but it tokenizes into "
                f"{len(ids)}: [{pieces}]"
            )
        return ids[0]


def token_text(token) -> str:
    """A vocabulary entry as text. tracr vocabularies hold any hashable value, so a vocab.json
    may list booleans or numbers (`[false, true]`, `[1, 2, 3]`); they are compared and shown as
    Python writes them (`False`, `1`), the way the program's author typed them."""
    if isinstance(token, str):
        return token
    if isinstance(token, (bool, int, float)):
        return str(token)
    raise ValueError(f"vocabulary entry {token!r} is not a string, number or boolean")


@dataclass
class VocabCodec:
    """A testbed's vocabulary (vocab.json): prompts are input tokens separated by spaces; the
    engine prepends BOS. Numerical outputs have one output 'token', named after the output op.
    Tokens are kept as text (see `token_text`), so a prompt's words and a target match them."""

    input_tokens: list
    bos_id: int
    output_tokens: list

    @classmethod
    def from_vocab(cls, vocab: dict, output_name: str) -> "VocabCodec":
        outputs = vocab["output_tokens"] if vocab["output_kind"] == "categorical" else [output_name]
        inputs = [token_text(t) for t in vocab["input_tokens"]]
        outputs = [token_text(t) for t in outputs]
        for what, tokens in (("input_tokens", inputs), ("output_tokens", outputs)):
            if len(set(tokens)) != len(tokens):
                raise ValueError(f"{what} has entries that read the same as text: {tokens}")
        return cls(inputs, int(vocab["bos_id"]), outputs)

    def _lookup(self, text: str, tokens: list, skip: int = -1) -> Optional[int]:
        """Exact text first; else, for JSON-minded users, `true`/`false` for `True`/`False`."""
        word = text.strip()
        for i, t in enumerate(tokens):
            if i != skip and t == word:
                return i
        hits = [i for i, t in enumerate(tokens) if i != skip and t in ("True", "False") and t.lower() == word]
        return hits[0] if len(hits) == 1 else None

    def encode_prompt(self, text: str) -> list[int]:
        ids = [self.bos_id]
        for word in text.split():
            i = self._lookup(word, self.input_tokens, skip=self.bos_id)
            if i is None:
                known = [t for j, t in enumerate(self.input_tokens) if j != self.bos_id and not t.startswith("compiler_")]
                raise UserError(f"token {word!r} is not in this model's vocabulary ({', '.join(map(repr, known))})")
            ids.append(i)
        return ids

    def token_strs(self, ids: Sequence[int]) -> list[str]:
        return [self.input_tokens[i] for i in ids]

    def output_str(self, i: int) -> str:
        return self.output_tokens[i]

    def output_token(self, text: str, what: str = "target") -> int:
        i = self._lookup(text, self.output_tokens) if isinstance(text, str) else None
        if i is None:
            raise UserError(f"{what} {text!r} is not an output of this model "
                            f"(outputs: {', '.join(repr(t) for t in self.output_tokens)})")
        return i
