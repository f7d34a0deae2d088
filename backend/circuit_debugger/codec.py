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
