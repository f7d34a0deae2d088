"""Text <-> token ids for a model, with the single-token checks the debugger needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from .errors import UserError


@dataclass
class HFCodec:
    """A HuggingFace tokenizer; prepends BOS when the model expects it."""

    tokenizer: object
    prepend_bos: bool = True

    @property
    def bos_id(self) -> Optional[int]:
        return self.tokenizer.bos_token_id

    def encode_prompt(self, text: str) -> list[int]:
        ids = list(self.tokenizer.encode(text, add_special_tokens=False))
        if self.prepend_bos and self.bos_id is not None:
            ids = [self.bos_id] + ids
        return ids

    def token_strs(self, ids: Sequence[int]) -> list[str]:
        return [self.tokenizer.decode([i]) for i in ids]

    def output_str(self, i: int) -> str:
        return self.tokenizer.decode([i])

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


@dataclass
class VocabCodec:
    """A testbed's vocabulary (vocab.json): prompts are input tokens separated by spaces; the
    engine prepends BOS. Numerical outputs have one output 'token', named after the output op."""

    input_tokens: list
    bos_id: int
    output_tokens: list

    @classmethod
    def from_vocab(cls, vocab: dict, output_name: str) -> "VocabCodec":
        outputs = vocab["output_tokens"] if vocab["output_kind"] == "categorical" else [output_name]
        return cls(list(vocab["input_tokens"]), int(vocab["bos_id"]), list(outputs))

    def encode_prompt(self, text: str) -> list[int]:
        ids = [self.bos_id]
        index = {t: i for i, t in enumerate(self.input_tokens) if i != self.bos_id}
        for word in text.split():
            if word not in index:
                raise UserError(f"token {word!r} is not in this model's vocabulary "
                                f"({', '.join(repr(t) for t in index if not t.startswith('compiler_'))})")
            ids.append(index[word])
        return ids

    def token_strs(self, ids: Sequence[int]) -> list[str]:
        return [self.input_tokens[i] for i in ids]

    def output_str(self, i: int) -> str:
        return self.output_tokens[i]

    def output_token(self, text: str, what: str = "target") -> int:
        if not isinstance(text, str) or text.strip() not in self.output_tokens:
            raise UserError(f"{what} {text!r} is not an output of this model "
                            f"(outputs: {', '.join(repr(t) for t in self.output_tokens)})")
        return self.output_tokens.index(text.strip())
