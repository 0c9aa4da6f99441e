"""llguidance: lazy (derivative-based) regex matching, the fastest to compile."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import llguidance

from .. import _spm

# llguidance precomputes "slices" of the vocabulary (every token a simple string regex allows)
# so a mask inside a JSON string is a copy, not a walk of the token trie. Its default four cost
# ~0.7 s of a 2-core cold start on Gemma's 262k tokens. Our grammars' strings are compact JSON
# with a length cap ({0,120}-style), where only the 1-30 character slice applies until the last
# 30 characters: on 40 SROIE gold answers (3,232 masks) this one slice builds in 0.9-1.1 s
# against 1.5-1.7 s with the masks as fast (0.11-0.12 ms, none over 1 ms); with no slice at
# all the masks take 3.0-3.6 ms (docs/performance.md). Masks are exact whatever the slices.
SLICES = [r'[^"\\\x00-\x1F\x7F]{1,30}']


@dataclass
class _Matcher:
    inner: llguidance.LLMatcher

    def fill(self, bitmask, row: int) -> None:
        # What llguidance.torch.fill_next_token_bitmask does; importing that module costs
        # ~1.8 s of cold start (it decorates a kernel with torch.compile, pulling in dynamo).
        v = bitmask[row]
        int32 = not bitmask.dtype.is_floating_point and bitmask.dtype.itemsize == 4
        if not (int32 and bitmask.is_cpu and v.is_contiguous()):
            raise ValueError("the bitmask must be a contiguous int32 CPU tensor")
        self.inner.unsafe_compute_mask_ptr(v.data_ptr(), v.numel() * 4)

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
        source = getattr(hf_tokenizer, "source", "")  # a TextTokenizer names its file: spellings are remembered
        if backend is None:
            tokens = None
        elif source:
            tokens = remembered_token_bytes(backend, vocab_size, source)
        else:
            tokens = token_bytes(backend, vocab_size)
        if tokens is not None:
            # llguidance's own route (the tokenizer JSON) builds a second Rust copy of
            # the tokenizer: ~335 MB and ~2.5 s for Gemma's 262k vocabulary. Handing it
            # each token's bytes and our tokenizer as the encoder gives the same tables
            # (tests/test_memory.py compares them, on Gemma too) for ~1 MB.
            wrapper = llguidance.TokenizerWrapper(_Encoder(backend, tokens, hf_tokenizer))
            self.tokenizer = llguidance.LLTokenizer(wrapper, n_vocab=vocab_size, eos_token=self.eos_token_id,
                                                    slices=SLICES)
        elif backend is not None and backend.padding is None and backend.truncation is None:
            # What llguidance.hf.from_tokenizer does, minus its defensive copy of the
            # Rust tokenizer (to clear padding/truncation, which are unset here).
            self.tokenizer = llguidance.LLTokenizer(backend.to_str(), n_vocab=vocab_size,
                                                    eos_token=self.eos_token_id, slices=SLICES)
        else:
            from llguidance.hf import from_tokenizer

            self.tokenizer = from_tokenizer(hf_tokenizer, n_vocab=vocab_size, slices=SLICES)

    def compile(self, regex: str) -> _Compiled:
        grammar = llguidance.LLMatcher.grammar_from_regex(regex)
        is_error, errors = llguidance.LLMatcher.validate_grammar_with_warnings(grammar, self.tokenizer)
        if is_error:
            raise ValueError("; ".join(errors))
        return _Compiled(self.tokenizer, grammar)


class _Encoder:
    """What `llguidance.TokenizerWrapper` reads: token bytes, special ids, and an encoder."""

    def __init__(self, backend: Any, tokens: list[bytes], hf_tokenizer: Any):
        self.backend, self.tokens = backend, tokens
        self.special_token_ids = sorted(_specials(backend))
        self.eos_token_id = hf_tokenizer.eos_token_id
        self.bos_token_id = hf_tokenizer.bos_token_id

    def __call__(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError("text only")  # llguidance then splits bytes into valid text itself
        return self.backend.encode(text, add_special_tokens=False).ids


def token_bytes(backend: Any, vocab_size: int) -> list[bytes] | None:
    """Every token id's bytes, for the two vocabulary layouts read here exactly; else None.

    ByteLevel (GPT-2 style: each byte drawn as a printable character) and
    SentencePiece-style BPE (Gemma, Llama: "\u2581" for a space, "<0xHH>" byte
    fallback). Added tokens are spelled as written. Ids past the tokenizer's
    vocabulary (a padded embedding) get no bytes.
    """
    layout = getattr(backend, "layout", None) or _layout(backend)  # an `_spm.SpmBackend` says it
    if layout == "byte-level":
        table = _byte_level_table()
        spell = lambda piece: bytes(table[c] for c in piece)  # noqa: E731
    elif layout == "sentencepiece":
        spell = _sentencepiece_bytes
    else:
        return None
    added, specials = backend.get_added_tokens_decoder(), _specials(backend)
    out = []
    for i in range(vocab_size):
        piece = backend.id_to_token(i)
        if piece is None:
            out.append(b"")
        elif i in specials:
            out.append(b"\xff" + piece.encode())  # llguidance's mark for a special token
        elif i in added:
            out.append(added[i].content.encode())  # added text ("\n\n", "[multimodal]") is written as is
        else:
            try:
                out.append(spell(piece))
            except KeyError:
                return None  # a character outside the byte alphabet: not the layout we thought
    return out


def _layout(backend: Any) -> str | None:
    """Which of the two spellings a `tokenizers.Tokenizer`'s decoder shows, if either."""
    decoder = json.loads(backend.decoder.__getstate__()) if backend.decoder is not None else {}
    if decoder.get("type") == "ByteLevel":
        return "byte-level"
    if decoder.get("type") == "Sequence" and decoder.get("decoders") == _spm.DECODER["decoders"]:
        return "sentencepiece"
    return None


def remembered_token_bytes(backend: Any, vocab_size: int, source: str) -> list[bytes] | None:
    """`token_bytes`, read back from the cache where the tokenizer file `source` names was
    spelled before (`_machine`): 262k `id_to_token` calls are ~0.5 s of a 2-core cold start."""
    from .. import _machine

    def state(tokens: list[bytes] | None) -> dict:
        import torch

        if tokens is None:  # a layout token_bytes does not read: remembered as such
            return {"offsets": torch.zeros(0, dtype=torch.int64)}
        offsets = torch.tensor([0] + [len(t) for t in tokens], dtype=torch.int64).cumsum(0)
        data = torch.frombuffer(bytearray(b"".join(tokens)) or bytearray(1), dtype=torch.uint8)
        return {"offsets": offsets, "bytes": data}

    def restore(saved: dict) -> list[bytes] | None:
        if saved["offsets"].numel() == 0:
            return None
        data, ends = saved["bytes"].numpy().tobytes(), saved["offsets"].tolist()
        return [data[a:b] for a, b in zip(ends, ends[1:])]

    return _machine.remembered(
        f"llguidance token bytes v1, {vocab_size} ids, of {source}", lambda: token_bytes(backend, vocab_size),
        state, restore, accept=lambda saved: saved["offsets"].numel() in (0, vocab_size + 1))


def _specials(backend: Any) -> set[int]:
    """The ids llguidance's JSON route treats as special (never part of grammar text): added
    tokens marked special, and added tokens spelled like a tag ("<table>") even when not."""
    return {i for i, t in backend.get_added_tokens_decoder().items()
            if t.special or (t.content.startswith("<") and t.content.endswith(">"))}


def _sentencepiece_bytes(piece: str) -> bytes:
    if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
        return bytes([int(piece[3:5], 16)])
    return piece.replace("\u2581", " ").encode()


@lru_cache(maxsize=1)
def _byte_level_table() -> dict[str, int]:
    """GPT-2's printable stand-in for each byte, reversed: character -> byte."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def build(hf_tokenizer: Any, vocab_size: int) -> LLGuidanceEngine:
    return LLGuidanceEngine(hf_tokenizer, vocab_size)
