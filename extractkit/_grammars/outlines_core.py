"""outlines_core: an eager token-level DFA index (outlines' own engine).

The vocabulary is built the way outlines builds it for a transformers model, so
token strings (byte fallback, SentencePiece spaces) are decoded identically.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from outlines.backends.outlines_core import OutlinesCoreBackend
from outlines_core import Guide, Index


@dataclass
class _Matcher:
    guide: Guide

    def fill(self, bitmask, row: int) -> None:
        target = bitmask[row]
        self.guide.write_mask_into(target.data_ptr(), target.numel(), target.element_size())

    def advance(self, token_id: int) -> None:
        self.guide.advance(token_id=token_id, return_tokens=False)

    def draft(self) -> list[int]:
        return []  # no fast-forward: the engine still skips the head where one token is allowed



@dataclass
class _Compiled:
    index: Index

    def matcher(self) -> _Matcher:
        return _Matcher(Guide(self.index))


class OutlinesCoreEngine:
    name = "outlines_core"

    def __init__(self, hf_tokenizer: Any, vocab_size: int):
        from outlines.models.transformers import TransformerTokenizer

        tokenizer = TransformerTokenizer(hf_tokenizer)
        self.eos_token_id = hf_tokenizer.eos_token_id
        # outlines keeps special tokens (<pad>, <bos>, ...) in the vocabulary under
        # their literal text, so "<pad>" could be written inside a JSON string. They
        # never decode to that text: leave them out (EOS is added back by outlines_core).
        special = set(hf_tokenizer.all_special_ids) | {
            i for i, added in hf_tokenizer.added_tokens_decoder.items() if added.special}
        vocab = {tok: i for tok, i in tokenizer.get_vocab().items() if i not in special}
        self.vocabulary = OutlinesCoreBackend.create_outlines_core_vocabulary(
            vocab, self.eos_token_id, hf_tokenizer.eos_token, tokenizer.convert_token_to_string)

    def compile(self, regex: str) -> _Compiled:
        return _Compiled(Index(regex, self.vocabulary))


def build(hf_tokenizer: Any, vocab_size: int) -> OutlinesCoreEngine:
    return OutlinesCoreEngine(hf_tokenizer, vocab_size)
