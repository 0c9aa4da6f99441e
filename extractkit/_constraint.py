"""Stage 3b - constraint: the surface regex, compiled against one tokenizer.

A grammar *engine* (one file each under `_grammars/`) turns the regex into a
compiled grammar; a *matcher* walks it token by token and writes the allowed
tokens of the next step into a packed bitmask (one bit per vocabulary entry).
This module owns what is common: choosing an engine, caching compiled grammars
per (engine, regex) for the tokenizer it was built for, and applying masks to
logits without torch.compile (the engines' own kernels compile one at first
use, a 15-20 s tax on a CPU).
"""

from __future__ import annotations

import importlib
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Protocol

from ._errors import SchemaError, UsageError

if TYPE_CHECKING:  # torch is imported only once a model is needed
    import torch

ENGINES = ("llguidance", "outlines_core", "xgrammar")
DEFAULT_ENGINE = "llguidance"  # chosen by measurement, see docs/backends.md


class Matcher(Protocol):
    """Per-sequence grammar state. End of sequence is the decoder's business: a
    matcher allows EOS in accepting states, and is never advanced past it."""

    def fill(self, bitmask: torch.Tensor, row: int) -> None: ...
    def advance(self, token_id: int) -> None: ...
    def draft(self) -> list[int]:
        """Tokens the grammar forces next (may be empty); a proposal the decoder verifies."""
        ...


class CompiledGrammar(Protocol):
    def matcher(self) -> Matcher: ...


class Engine(Protocol):
    """A grammar library bound to one tokenizer (see `_grammars/`)."""

    name: str
    eos_token_id: int

    def compile(self, regex: str) -> CompiledGrammar: ...


def check_engine(name: str) -> str:
    if name not in ENGINES:
        raise UsageError(f"unknown grammar engine {name!r}; choose one of {', '.join(ENGINES)}")
    return name


def load_engine(name: str, hf_tokenizer: Any, vocab_size: int) -> Engine:
    """Build the named engine's tokenizer tables (the slow, once-per-process part)."""
    check_engine(name)
    module = importlib.import_module(f"extractkit._grammars.{name}")
    return module.build(hf_tokenizer, vocab_size)


class GrammarCache:
    """Compiled grammars of one engine, least recently used evicted first.

    Thread-safe: compiled grammars are immutable and matchers are created per
    sequence, so one cache serves every thread using the same Extractor.
    """

    def __init__(self, engine: Engine, capacity: int = 64):
        self.engine, self.capacity = engine, capacity
        self._items: OrderedDict[str, CompiledGrammar] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, regex: str) -> CompiledGrammar:
        with self._lock:
            if regex in self._items:
                self._items.move_to_end(regex)
                return self._items[regex]
        try:
            compiled = self.engine.compile(regex)
        except Exception as exc:  # the engines raise their own types for bad regexes
            raise SchemaError(f"the {self.engine.name} engine cannot compile this schema's grammar "
                              f"(often an unsupported `pattern`): {exc}") from None
        with self._lock:
            self._items[regex] = compiled
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return compiled


def new_bitmask(batch: int, vocab_size: int) -> torch.Tensor:
    import torch

    return torch.zeros((batch, (vocab_size + 31) // 32), dtype=torch.int32)


_BITS = None


def unpack_bitmask(bitmask: torch.Tensor, vocab: int) -> torch.Tensor:
    """The packed rows of `bitmask` as booleans, [rows, vocab]: True where a token is allowed."""
    import torch

    global _BITS
    if _BITS is None:
        _BITS = torch.arange(32, dtype=torch.int32)
    return ((bitmask.unsqueeze(-1) >> _BITS) & 1).view(bitmask.shape[0], -1)[:, :vocab] == 1


_OPEN = None  # (vocab, packed words, ids) of the last open-ended `allowed_ids` answer


def allowed_ids(bitmask: torch.Tensor, vocab: int) -> torch.Tensor:
    """Ascending ids of the tokens one packed row allows (the fast engine's per-step question).

    Most steps allow one token or a handful (keys, punctuation, digits): only the
    non-zero 32-bit words are unpacked then, ~50x less work than unpacking all
    8,192 words of Gemma's vocabulary; an open-ended step unpacks them all.
    """
    import numpy as np
    import torch

    global _OPEN
    words = bitmask.numpy().view(np.uint32)
    nonzero = np.flatnonzero(words)
    if len(nonzero) > 256:  # open-ended: unpack every word
        # Most open-ended steps are inside a JSON string and allow the same ~255k tokens: the
        # last such answer is returned again for the same words (comparing 32 KB, not
        # unpacking 262k bits into 2 MB of ids). Callers only read the ids.
        if _OPEN is not None and _OPEN[0] == vocab and np.array_equal(_OPEN[1], words):
            return _OPEN[2]
        ids = torch.from_numpy(np.flatnonzero(np.unpackbits(words.view(np.uint8), bitorder="little")[:vocab]))
        _OPEN = (vocab, words.copy(), ids)
        return ids
    bits = np.unpackbits(words[nonzero].view(np.uint8), bitorder="little").reshape(len(nonzero), 32)
    word, bit = np.nonzero(bits)  # row-major: ascending ids
    ids = nonzero[word] * 32 + bit
    return torch.from_numpy(ids[ids < vocab])


def apply_bitmask(logits: torch.Tensor, bitmask: torch.Tensor) -> None:
    """Set the logits of disallowed tokens to -inf, in place (rows of `bitmask`)."""
    allowed = unpack_bitmask(bitmask, logits.shape[-1])
    logits.masked_fill_(~allowed.to(logits.device), float("-inf"))
