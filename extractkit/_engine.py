"""Stage 4, fast path: continuous batching, a shared-prefix cache, fast-forward, a mask-aware head.

It returns what `_decode.generate_batch` (transformers' `generate()`) returns
for the same prompts - greedy decoding under the same grammar - and gets there
with less work:

- **Continuous batching**: up to `batch_size` sequences decode together, each
  with its own grammar matcher; a finished sequence leaves its row and a
  waiting prompt is prefilled into it, so no row idles on another's tail.
- **Shared-prefix cache**: every prompt of a schema starts with the same
  instruction + schema text (`_prompt.prompt_prefix`). Its keys/values are
  computed once and copied into each new row; only the document is prefilled.
  Reuse stops at the first token where the prompt's tokenization departs from
  the prefix's, so the result is the same as prefilling the whole prompt.
- **Fast-forward, verified**: where the grammar forces a string (keys, quotes,
  punctuation) the matcher proposes its tokens (`Matcher.draft`); they are fed
  in the same forward pass as the sampled token and kept only while they are
  what greedy decoding would have picked at each position - speculative
  decoding with the grammar as the draft model, so outputs cannot change.
- **Copy drafts, verified the same way** (`_copy.py`): inside a value the
  grammar forces nothing, but the answer usually copies the document, so the
  tokens that follow the answer's last few tokens in the document are drafted
  too (prompt lookup), at most `copy` of them, fewer when many rows share a
  pass (a batch-16 pass is compute-bound: an unconfirmed position costs FLOPs).
- **Mask-aware head** (`_head.py`): one allowed token costs no logits, a few
  cost only their rows of the 262k x 640 head, open-ended positions are
  screened in low precision (int8, bf16; qint8 for batches) and rescored exactly in fp32.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from ._constraint import CompiledGrammar, Matcher, allowed_ids, new_bitmask
from ._copy import COPY, CopyDraft
from ._decode import Generation
from ._gemma import GemmaRunner
from ._kvcache import KVCache
from ._head import SMALL, Head
from ._pages import trim
from ._prompt import calibration_prompt

PREFIXES = 8        # prefix caches kept (one per schema in use)
COPY_POSITIONS = 32  # copy-drafted positions per pass, shared by its rows (see `_draft`)


@dataclass
class _Seq:
    index: int                 # position in the caller's prompt list
    matcher: Matcher
    copy: CopyDraft | None
    started: float
    out: list[int] = field(default_factory=list)
    feed: list[int] = field(default_factory=list)   # tokens to feed next: [chosen] + draft
    forced: int = 0            # how many of the draft the grammar forced (the rest are copy guesses)
    length: int = 0            # positions of this sequence already in the cache
    finished: bool = False     # ended with EOS
    failed: str | None = None


class FastDecoder:
    """Greedy constrained decoding of many prompts on one `GemmaRunner`."""

    def __init__(self, hf_model: Any, tokenizer: Any, *, numerics: str = "auto", screen: str = "auto",
                 small: int = SMALL, own_weights: bool = False, copy: int = COPY):
        self.copy = copy  # copy-drafted tokens per row at most (0: grammar drafts only)
        self._rows = 1    # rows in the current pass: copy drafts shrink as the batch grows
        self.runner = GemmaRunner(hf_model, numerics, own_weights)
        self.tokenizer = tokenizer
        # qint8 takes its fp32 dims from the first prompt it sees: always the same one.
        self.runner.calibrate(tokenizer(calibration_prompt())["input_ids"])
        self.eos = tokenizer.eos_token_id
        self.head = Head(self.runner.head, self.eos, screen, small)
        self.vocab = self.runner.head.shape[0]
        self._prefixes: dict[str, tuple[list[int], KVCache]] = {}
        self.mask_seconds = 0.0   # this call's grammar time (Generation.mask_seconds)
        # Since construction, for bench/: copy-drafted tokens fed and confirmed.
        self.stats = {"grammar_s": 0.0, "decode_s": 0.0, "steps": 0, "copied": 0, "copy_kept": 0}

    # ------------------------------------------------------------ prefix cache
    def _prefix(self, text: str) -> tuple[list[int], KVCache]:
        if text not in self._prefixes:
            ids = self.tokenizer(text)["input_ids"]
            cache = self.runner.prefilled(ids)
            if len(self._prefixes) >= PREFIXES:
                self._prefixes.pop(next(iter(self._prefixes)))
            self._prefixes[text] = (ids, cache)
        return self._prefixes[text]

    # ------------------------------------------------------------ grammar + head
    def _allowed(self, matcher: Matcher) -> torch.Tensor:
        """Ids of the tokens the matcher allows next (EOS included in accepting states)."""
        start = time.perf_counter()
        bitmask = new_bitmask(1, self.vocab)
        matcher.fill(bitmask, 0)
        ids = allowed_ids(bitmask[0], self.vocab)
        self._grammar(start)
        return ids

    def _grammar(self, start: float) -> None:
        spent = time.perf_counter() - start
        self.mask_seconds += spent
        self.stats["grammar_s"] += spent

    # ------------------------------------------------------------ one sequence's step
    def _accept(self, seqs: list[_Seq], hidden: list[torch.Tensor], firsts: list[int], max_new: int) -> None:
        """Walk the fed tokens' outputs: keep draft tokens greedy agrees with, pick each next token.

        hidden[r][j] is row r's output after feed[j]; feed[0] was chosen (and
        given to the matcher) earlier, feed[1:] is the draft; firsts[r] is the
        greedy pick for hidden[r][0]. Rows advance level by level, so the picks
        at draft position j of every row still verifying share one pass over
        the head instead of one pass per row.
        """
        for seq in seqs:
            seq.length += 1
        live, picks, j = list(range(len(seqs))), firsts, 0
        while True:
            going = [r for r, token in zip(live, picks) if self._advance(seqs[r], token, j, max_new)]
            if not going:
                return
            j += 1
            picks = self.head.pick(torch.stack([hidden[r][j] for r in going]),
                                   [self._allowed(seqs[r].matcher) for r in going])
            live = going

    def _advance(self, seq: _Seq, token: int, j: int, max_new: int) -> bool:
        """Take the greedy pick at fed position j; True while it confirms the draft (verify j + 1)."""
        if not self._take(seq, token, max_new):
            return False
        draft = seq.feed[1:]
        if j < len(draft) and token == draft[j]:
            seq.length += 1          # its keys/values were computed in this pass
            self.stats["copy_kept"] += j >= seq.forced
            return True
        seq.feed = [token] + self._draft(seq, max_new)
        return False

    def _take(self, seq: _Seq, token: int, max_new: int) -> bool:
        """Append a chosen token; False when the sequence is over."""
        if token == self.eos:
            seq.finished = True
            return False
        start = time.perf_counter()
        try:
            seq.matcher.advance(token)
        except Exception as exc:  # an engine bug must not sink the other rows
            seq.failed = str(exc)
            return False
        finally:
            self._grammar(start)
        seq.out.append(token)
        # generate() counts EOS against max_new_tokens: room for the token after this one.
        return len(seq.out) < max_new

    def _draft(self, seq: _Seq, max_new: int) -> list[int]:
        """The grammar's forced tokens, then what the document has next (`_copy.py`).

        Copy drafts are guesses, and a pass of many rows is bound by compute, so
        the rows of a pass share `COPY_POSITIONS` guessed positions: a row alone
        gets `copy` of them, a row of 16 two.
        """
        room = max_new - len(seq.out) - 1
        if room <= 0:
            return []
        start = time.perf_counter()
        draft = seq.matcher.draft()[:room]
        self._grammar(start)
        seq.forced = len(draft)
        width = min(self.copy, room - len(draft), COPY_POSITIONS // self._rows)
        if seq.copy is not None and width > 0:
            copied = seq.copy.propose(seq.out + draft, width)
            self.stats["copied"] += len(copied)
            draft += copied
        return draft

    def _over(self, seq: _Seq, max_new: int) -> bool:
        return seq.finished or seq.failed is not None or len(seq.out) >= max_new

    # ------------------------------------------------------------ the loop
    @torch.inference_mode()
    def generate(self, prompts: Sequence[str], prefix: str, compiled: CompiledGrammar, max_new_tokens: int,
                 batch_size: int) -> list[Generation]:
        self.mask_seconds, began = 0.0, time.perf_counter()
        prefix_ids, prefix_cache = self._prefix(prefix)
        # Longest prompts first: the short ones then fill the rows the long ones free at the end.
        queue = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        encoded = {i: self.tokenizer(prompts[i])["input_ids"] for i in queue}
        results: list[Generation | None] = [None] * len(prompts)
        # Room for the longest prompt and a typical answer; it grows by doubling, never past
        # prompt + budget (budgets are often far above what a row writes: memory is per row).
        longest = max(len(v) for v in encoded.values())
        cache = self.runner.new_cache(min(batch_size, len(prompts)), longest + min(max_new_tokens, 128) + 1,
                                      limit=longest + max_new_tokens + 1)
        rows: list[_Seq | None] = [None] * cache.rows
        self._rows = cache.rows
        while queue or any(rows):
            for r in range(len(rows)):  # waiting prompts take the free rows
                if rows[r] is None and queue:
                    i = queue.pop(0)
                    rows[r] = self._join(cache, r, i, encoded[i], compiled, prefix_ids, prefix_cache, max_new_tokens)
            self._finish(rows, results, max_new_tokens)
            if None in rows:
                if queue:
                    continue  # a prompt ended at once: fill its row before the next step
                live = [r for r, s in enumerate(rows) if s is not None]
                if not live:
                    break
                cache.keep(live)  # nothing waits: shrink the batch to the live rows
                rows = [rows[r] for r in live]
                self._rows = len(rows)
            self._step(cache, rows, max_new_tokens)  # type: ignore[arg-type]
            self.stats["steps"] += 1
            self._finish(rows, results, max_new_tokens)
        del cache
        trim()  # the batch's KV cache is heap memory now free: give it back between calls
        self.stats["decode_s"] += time.perf_counter() - began
        return results  # type: ignore[return-value]

    def _join(self, cache: KVCache, row: int, i: int, ids: list[int], compiled: CompiledGrammar,
              prefix_ids: list[int], prefix_cache: KVCache, max_new: int) -> _Seq:
        """Prefill prompt `i` into `row`, reusing the prefix cache, and pick its first token."""
        shared = 0
        limit = min(len(prefix_ids), len(ids) - 1)  # keep one token to prefill: its output picks token 1
        while shared < limit and ids[shared] == prefix_ids[shared]:
            shared += 1
        # Copy drafts come from the document: the prompt past the shared instruction + schema.
        seq = _Seq(i, compiled.matcher(), CopyDraft(ids[shared:]) if self.copy else None, time.perf_counter())
        cache.copy_prefix(prefix_cache, row, shared)
        device = self.runner.device
        hidden = self.runner.forward(cache, slice(row, row + 1), torch.tensor([ids[shared:]], device=device),
                                     torch.tensor([shared], device=device))
        seq.length = len(ids) - 1  # _accept counts the last prompt token as fed
        seq.feed = [ids[-1]]
        first = self.head.pick(hidden[0, -1:], [self._allowed(seq.matcher)])[0]
        self._accept([seq], [hidden[0, -1:]], [first], max_new)
        return seq

    def _step(self, cache: KVCache, rows: list[_Seq], max_new: int) -> None:
        """One forward pass for every row: its chosen token plus its draft."""
        width = max(len(s.feed) for s in rows)
        device = self.runner.device
        # Short rows are padded with EOS: those positions land past the row's length and are never read.
        tokens = torch.tensor([s.feed + [self.eos] * (width - len(s.feed)) for s in rows], device=device)
        start = torch.tensor([s.length for s in rows], device=device)
        hidden = self.runner.forward(cache, slice(0, len(rows)), tokens, start, [len(s.feed) for s in rows])
        # Every row's first position in one call: open-ended rows share one pass over the head.
        firsts = self.head.pick(hidden[:, 0], [self._allowed(s.matcher) for s in rows])
        self._accept(rows, [hidden[r, : len(s.feed)] for r, s in enumerate(rows)], firsts, max_new)

    def _finish(self, rows: list[_Seq | None], results: list[Generation | None], max_new: int) -> None:
        for r, s in enumerate(rows):
            if s is not None and self._over(s, max_new):
                text = self.tokenizer.decode(s.out)
                results[s.index] = Generation(text, s.finished and s.failed is None, len(s.out),
                                              time.perf_counter() - s.started, self.mask_seconds)
                rows[r] = None
