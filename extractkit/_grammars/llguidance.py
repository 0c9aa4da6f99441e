"""llguidance: lazy (derivative-based) regex matching, the fastest to compile."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import llguidance
import llguidance.hf
import llguidance.torch


@dataclass
class _Matcher:
    inner: llguidance.LLMatcher

    def fill(self, bitmask, row: int) -> None:
        llguidance.torch.fill_next_token_bitmask(self.inner, bitmask, row)

    def advance(self, token_id: int) -> None:
        if not self.inner.consume_token(token_id):
            raise RuntimeError(f"llguidance rejected token {token_id}: {self.inner.get_error()}")

    def draft(self) -> list[int]:
        # The tokens of the string the grammar forces next, as the tokenizer would split it.
        return list(self.inner.compute_ff_tokens())


@dataclass
class _Compiled:
    tokenizer: Any
    grammar: str

    def matcher(self) -> _Matcher:
        return _Matcher(llguidance.LLMatcher(self.tokenizer, self.grammar))


class LLGuidanceEngine:
    name = "llguidance"

    def __init__(self, hf_tokenizer: Any, vocab_size: int):
        self.eos_token_id = hf_tokenizer.eos_token_id
        backend = getattr(hf_tokenizer, "backend_tokenizer", None)
        if backend is not None and backend.padding is None and backend.truncation is None:
            # What llguidance.hf.from_tokenizer does, minus its defensive copy of the
            # Rust tokenizer (to clear padding/truncation, which are unset here):
            # the copy costs ~5 s of the ~8 s on Gemma's 262k vocabulary.
            self.tokenizer = llguidance.LLTokenizer(backend.to_str(), n_vocab=vocab_size,
                                                    eos_token=self.eos_token_id)
        else:
            self.tokenizer = llguidance.hf.from_tokenizer(hf_tokenizer, n_vocab=vocab_size)

    def compile(self, regex: str) -> _Compiled:
        grammar = llguidance.LLMatcher.grammar_from_regex(regex)
        is_error, errors = llguidance.LLMatcher.validate_grammar_with_warnings(grammar, self.tokenizer)
        if is_error:
            raise ValueError("; ".join(errors))
        return _Compiled(self.tokenizer, grammar)


def build(hf_tokenizer: Any, vocab_size: int) -> LLGuidanceEngine:
    return LLGuidanceEngine(hf_tokenizer, vocab_size)
