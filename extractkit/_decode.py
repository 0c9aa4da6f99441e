"""Stage 4 - decode: greedy generation under the grammar, a batch at a time.

The reference decoder is transformers' own `generate()` with one logits
processor that keeps a grammar matcher per sequence. It is deliberately plain:
it is the behaviour any faster engine must reproduce token for token.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ._constraint import CompiledGrammar, apply_bitmask, new_bitmask


@dataclass(frozen=True)
class Generation:
    """What the model wrote for one prompt."""

    text: str
    finished: bool          # ended with EOS inside the grammar (False: hit max_new_tokens)
    tokens: int
    seconds: float          # wall time of the batch this prompt was decoded in
    mask_seconds: float = 0.0  # time spent computing and applying grammar masks (this batch)


class GrammarLogitsProcessor:
    """Masks every row's logits to the tokens its own grammar state allows."""

    def __init__(self, compiled: CompiledGrammar, batch: int, eos_token_id: int):
        self.matchers = [compiled.matcher() for _ in range(batch)]
        self.done = [False] * batch
        self.failed: list[str | None] = [None] * batch
        self.eos = eos_token_id
        self.bitmask: torch.Tensor | None = None
        self.first = True
        self.seconds = 0.0

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        if self.bitmask is None:
            self.bitmask = new_bitmask(scores.shape[0], scores.shape[-1])
        if not self.first:
            self._advance(input_ids[:, -1].tolist())
        self.first = False
        for row, matcher in enumerate(self.matchers):
            if self.done[row]:
                self.bitmask[row].zero_()  # finished rows may only repeat EOS
                self.bitmask[row, self.eos // 32] = 1 << (self.eos % 32)
            else:
                matcher.fill(self.bitmask, row)
        apply_bitmask(scores, self.bitmask)
        self.seconds += time.perf_counter() - start
        return scores

    def _advance(self, last_tokens: list[int]) -> None:
        for row, token in enumerate(last_tokens):
            if self.done[row]:
                continue
            if token == self.eos:
                self.done[row] = True
                continue
            try:
                self.matchers[row].advance(token)
            except Exception as exc:  # an engine bug must not sink the other rows
                self.done[row], self.failed[row] = True, str(exc)


def generate_batch(model: Any, tokenizer: Any, compiled: CompiledGrammar, prompts: Sequence[str],
                   max_new_tokens: int) -> list[Generation]:
    """Greedy-decode `prompts` together (left-padded) under one compiled grammar."""
    from transformers import GenerationConfig, LogitsProcessorList

    start = time.perf_counter()
    enc = tokenizer(list(prompts), return_tensors="pt", padding=True, padding_side="left")
    enc = {k: v.to(model.device) for k, v in enc.items()}
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    processor = GrammarLogitsProcessor(compiled, len(prompts), eos)
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                              eos_token_id=eos, pad_token_id=pad)
    with torch.inference_mode():
        out = model.generate(**enc, generation_config=config,
                             logits_processor=LogitsProcessorList([processor]))
    seconds = time.perf_counter() - start
    new = out[:, enc["input_ids"].shape[1]:].tolist()
    results = []
    for row, ids in enumerate(new):
        finished = eos in ids and processor.failed[row] is None
        ids = ids[: ids.index(eos)] if eos in ids else ids
        results.append(Generation(tokenizer.decode(ids), finished, len(ids), seconds, processor.seconds))
    return results
