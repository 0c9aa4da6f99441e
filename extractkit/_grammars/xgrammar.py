"""xgrammar: a pushdown automaton with a precomputed per-state token cache."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import xgrammar as xgr


@dataclass
class _Matcher:
    inner: xgr.GrammarMatcher

    def fill(self, bitmask, row: int) -> None:
        self.inner.fill_next_token_bitmask(bitmask, row)

    def advance(self, token_id: int) -> None:
        if not self.inner.accept_token(token_id):
            raise RuntimeError(f"xgrammar rejected token {token_id}")

    def draft(self) -> list[int]:
        return []  # no fast-forward: the engine still skips the head where one token is allowed



@dataclass
class _Compiled:
    grammar: xgr.CompiledGrammar

    def matcher(self) -> _Matcher:
        return _Matcher(xgr.GrammarMatcher(self.grammar))


class XGrammarEngine:
    name = "xgrammar"

    def __init__(self, hf_tokenizer: Any, vocab_size: int):
        info = xgr.TokenizerInfo.from_huggingface(hf_tokenizer, vocab_size=vocab_size,
                                                  stop_token_ids=[hf_tokenizer.eos_token_id])
        self.compiler = xgr.GrammarCompiler(info)
        self.eos_token_id = hf_tokenizer.eos_token_id

    def compile(self, regex: str) -> _Compiled:
        return _Compiled(self.compiler.compile_regex(regex))


def build(hf_tokenizer: Any, vocab_size: int) -> XGrammarEngine:
    return XGrammarEngine(hf_tokenizer, vocab_size)
