"""Gemma's tokenizer as a SentencePiece model: the same ids, loaded in 0.15 s instead of 2.5 s.

The Rust `tokenizers` parse of Gemma's 33 MB tokenizer.json is ~2.5 s of a 2-core cold
start, 1.7 s of it building the table of its 514,906 merges. Gemma's tokenizer began as
a SentencePiece BPE model, and tokenizer.json is its conversion: every pair of pieces
whose concatenation is a piece is a merge, ranked by the merged piece's id. SentencePiece
stores no merges at all - it merges the adjacent pair whose result scores highest - so
with score = -id it makes the same merges, and its model loads in ~0.15 s.

`write(folder)` converts folder/tokenizer.json once (~8 s, at the base model's caching)
after checking that it has exactly that layout (`_convertible`): SentencePiece-style
normalization and decoding, byte fallback, merges that are all the vocabulary's pairs in
ascending merged id, a <bos> template. Every added token becomes a user-defined piece,
which SentencePiece matches in the text as tokenizers matches added tokens. `load(folder)`
reads it back as `SpmBackend`, the calls extractkit makes of a `tokenizers.Tokenizer`,
while tokenizer.json is still the file it was converted from.

Checked against tokenizers on Gemma's vocabulary: 626 SROIE receipts, their answers, 42
edge cases and 30,000 random strings gave identical ids and text (tests/test_real_model.py
keeps part of that). One case can differ in principle: two overlapping pairs that merge
into the same piece ("ab"+"a" and "a"+"ba"), where SentencePiece takes the leftmost and
tokenizers the one of lower rank; none occurred in any of those texts.
"""

from __future__ import annotations

import json
import os
import struct
import uuid
from pathlib import Path
from typing import Any, NamedTuple

MODEL, FACTS = "tokenizer.spm.model", "tokenizer.spm.json"
_FORMAT = 2
_NORMALIZER = {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}
_PRE_TOKENIZERS = (None, {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious",
                          "invert": False})  # splits on " " after " " became "\u2581": never splits
# tokenizers' decoder of this layout (also how `_grammars/llguidance.py` recognizes it)
DECODER = {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
                                            {"type": "ByteFallback"}, {"type": "Fuse"}]}
_NORMAL, _UNKNOWN, _USER_DEFINED, _BYTE = 1, 2, 4, 6  # sentencepiece_model.proto's piece types


class Encoding(NamedTuple):
    ids: list[int]


class Added(NamedTuple):  # what tokenizers' AddedToken answers here
    content: str
    special: bool


class SpmBackend:
    """The `tokenizers.Tokenizer` calls extractkit makes, answered by SentencePiece."""

    layout = "sentencepiece"  # how `_grammars/llguidance.token_bytes` spells its pieces
    padding = truncation = None

    def __init__(self, processor: Any, facts: dict):
        self._sp = processor
        self._size = facts["vocab"]
        self._prefix = list(facts["prefix"])
        self._added = {i: Added(content, special) for i, content, special in facts["added"]}
        self._special = {i for i, t in self._added.items() if t.special}
        self._bytes = {i: byte for byte, i in enumerate(facts["bytes"])}  # id of "<0xHH>" -> 0xHH

    def encode(self, text: str, add_special_tokens: bool = True) -> Encoding:
        ids = self._sp.encode(text)
        return Encoding(self._prefix + ids if add_special_tokens else ids)

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:  # tokenizers' default
        """tokenizers' decoding of this layout: pieces with "\u2581" as " ", and each run of byte
        pieces as UTF-8 - or, where the run is not valid UTF-8, one U+FFFD per byte (SentencePiece's
        own decode keeps a run's valid bytes: another text for a cut-off sequence)."""
        out, run = [], bytearray()
        for i in ids:
            if not 0 <= i < self._size or (skip_special_tokens and i in self._special):
                continue
            byte = self._bytes.get(i)
            if byte is not None:
                run.append(byte)
                continue
            if run:
                out.append(_utf8_or_replaced(run))
                run = bytearray()
            out.append(self._sp.id_to_piece(i).replace("\u2581", " "))
        if run:
            out.append(_utf8_or_replaced(run))
        return "".join(out)

    def token_to_id(self, piece: str) -> int | None:
        i = self._sp.piece_to_id(piece)
        return i if i < self._size and self._sp.id_to_piece(i) == piece else None

    def id_to_token(self, i: int) -> str | None:
        return self._sp.id_to_piece(i) if 0 <= i < self._size else None

    def get_vocab_size(self, with_added_tokens: bool = True) -> int:
        return self._size

    def get_added_tokens_decoder(self) -> dict[int, Added]:
        return dict(self._added)


def _utf8_or_replaced(run: bytearray) -> str:
    try:
        return run.decode("utf-8")
    except UnicodeDecodeError:
        return "\ufffd" * len(run)


def _identity(file: Path) -> list[int]:
    # Size and mtime only, not `_machine.file_identity` (path and inode): the base model's
    # folder is converted under a temporary name and renamed into place afterwards.
    info = file.stat()
    return [info.st_size, info.st_mtime_ns]


def ensure(folder: Path) -> SpmBackend | None:
    """`load(folder)`, converting tokenizer.json first where that was never tried (once, ~8 s).

    A folder this process cannot write (a read-only shared cache) is not converted: every
    process would pay the conversion and then parse tokenizer.json anyway."""
    backend = load(folder)
    if backend is None and _facts(folder) is None and os.access(folder, os.W_OK):
        write(folder)
        backend = load(folder)
    return backend


def _facts(folder: Path) -> dict | None:
    """What `write` recorded, while tokenizer.json is still the file it read; else None."""
    try:
        facts = json.loads((folder / FACTS).read_text())
        current = facts.get("format") == _FORMAT and facts.get("of") == _identity(folder / "tokenizer.json")
        return facts if current else None
    except (OSError, ValueError, AttributeError):
        return None


def load(folder: Path) -> SpmBackend | None:
    """The converted tokenizer of `folder`, or None (none written, refused, or tokenizer.json
    changed since)."""
    facts = _facts(folder)
    if facts is None or facts.get("refused"):
        return None
    try:
        import sentencepiece

        processor = sentencepiece.SentencePieceProcessor(model_proto=(folder / MODEL).read_bytes())
        if processor.get_piece_size() != facts["vocab"] + 1:  # an empty or foreign file parses too
            return None
        return SpmBackend(processor, facts)
    except (OSError, KeyError, ImportError, RuntimeError):
        return None


def write(folder: Path) -> bool:
    """Convert folder/tokenizer.json for `load`. Where its layout is not one this reproduces,
    the refusal is recorded (so it is not tried again) and the answer is False."""
    source = folder / "tokenizer.json"
    try:
        of = _identity(source)
        spec = json.loads(source.read_text(encoding="utf-8"))
        facts = _convertible(spec)
        if facts is not None:
            _write_new(folder / MODEL, _model_proto(spec, facts))
        _write_new(folder / FACTS, json.dumps({"format": _FORMAT, "of": of, **(facts or {"refused": True})}).encode())
    except (OSError, ValueError):
        return False  # no tokenizer.json, or a read-only folder: tokenizer.json stays the way in
    return facts is not None


def _write_new(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # whole or not at all, for a process loading beside us


def _convertible(spec: dict) -> dict | None:
    """The facts `SpmBackend` needs, if `spec` is a tokenizer SentencePiece reproduces; else None."""
    model = spec.get("model") or {}
    if (model.get("type") != "BPE" or not model.get("byte_fallback") or model.get("dropout")
            or model.get("continuing_subword_prefix") or model.get("end_of_word_suffix") or model.get("ignore_merges")
            or spec.get("normalizer") != _NORMALIZER or spec.get("pre_tokenizer") not in _PRE_TOKENIZERS
            or spec.get("decoder") != DECODER):
        return None
    vocab: dict[str, int] = model["vocab"]
    if sorted(vocab.values()) != list(range(len(vocab))) or any(f"<0x{b:02X}>" not in vocab for b in range(256)):
        return None
    added = spec.get("added_tokens") or []
    if any(t.get("lstrip") or t.get("rstrip") or t.get("single_word") or t.get("normalized") or
           vocab.get(t["content"]) != t["id"] for t in added):
        return None
    prefix = _prefix(spec.get("post_processor"))
    if prefix is None or not _merges_are_the_pairs(vocab, model["merges"], {t["content"] for t in added}):
        return None
    return {"vocab": len(vocab), "prefix": prefix, "bytes": [vocab[f"<0x{b:02X}>"] for b in range(256)],
            "added": [[t["id"], t["content"], bool(t["special"])] for t in added]}


def _prefix(post: dict | None) -> list[int] | None:
    """The ids a <bos>-first template puts before the text (none without a template); else None."""
    if post is None:
        return []
    single = post.get("single") or []
    if post.get("type") != "TemplateProcessing" or not single or "Sequence" not in single[-1]:
        return None
    if any("SpecialToken" not in part for part in single[:-1]):
        return None
    return [i for part in single[:-1] for i in post["special_tokens"][part["SpecialToken"]["id"]]["ids"]]


def _merges_are_the_pairs(vocab: dict[str, int], merges: list, added: set[str]) -> bool:
    """Every merge's result is a piece, ranks ascend with its id, and the merges are all of the
    vocabulary's pairs - except ones inside added tokens, which never reach the model."""
    pairs = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in merges]
    merged = [vocab.get(a + b) for a, b in pairs]
    if None in merged or any(x > y for x, y in zip(merged, merged[1:])):
        return False
    single = {t for t in added if len(t) == 1}  # characters the added-token matcher always takes
    listed = {p for p in pairs if not any(c in single for c in p[0] + p[1])}
    added_ids = {vocab[t] for t in added}
    for piece, i in vocab.items():
        if i in added_ids or any(c in single for c in piece):
            continue
        for k in range(1, len(piece)):
            if piece[:k] in vocab and piece[k:] in vocab and (piece[:k], piece[k:]) not in listed:
                return False  # SentencePiece would merge a pair tokenizers never does
    return all(vocab.get(a) is not None and vocab.get(b) is not None for a, b in listed)


def _model_proto(spec: dict, facts: dict) -> bytes:
    """A serialized sentencepiece ModelProto (fields of sentencepiece_model.proto, no protobuf needed)."""
    vocab: dict[str, int] = spec["model"]["vocab"]
    added = {i for i, _, _ in facts["added"]}
    pieces = [b""] * len(vocab)
    for piece, i in vocab.items():
        kind = (_USER_DEFINED if i in added else
                _BYTE if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">") else _NORMAL)
        pieces[i] = _message(1, _text(1, piece) + _float(2, -float(i)) + _varint_field(3, kind))
    # SentencePiece never matches its unknown piece in text, and tokenizers matches "<unk>" as an
    # added token: "<unk>" stays user-defined, and an unknown piece no text produces (every byte
    # has its piece) goes past the vocabulary, where `SpmBackend` never reports it.
    pieces.append(_message(1, _text(1, "<extractkit-unk>") + _float(2, 0.0) + _varint_field(3, _UNKNOWN)))
    trainer = (_varint_field(3, 2) + _varint_field(4, len(vocab) + 1) + _varint_field(35, 1)  # BPE, byte fallback
               + _varint_field(40, len(vocab)) + b"".join(_varint_field(n, -1) for n in (41, 42, 43)))  # no bos/eos/pad
    normalizer = _text(1, "identity") + _message(2, b"") + b"".join(_varint_field(n, v) for n, v in ((3, 0), (4, 0), (5, 1)))
    return b"".join(pieces) + _message(2, trainer) + _message(3, normalizer)


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int32s are ten-byte two's complement varints
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _varint_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _message(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _text(number: int, text: str) -> bytes:
    return _message(number, text.encode("utf-8"))


def _float(number: int, value: float) -> bytes:
    return _varint(number << 3 | 5) + struct.pack("<f", value)

