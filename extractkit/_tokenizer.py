"""The fast engine's tokenizer: the Rust `tokenizers` object, without transformers around it.

Importing transformers' tokenizer classes takes 1.0-1.7 s of a cold start on 2
cores (bench/bench_cold.py), more than any step but `import torch` and the
parse itself. The fast engine and llguidance need only what the Rust tokenizer
already does: encode a prompt (with <bos>), decode output ids, and the special
ids. `TextTokenizer` is that, with the same call shapes as transformers'
tokenizers, so the engine, the grammar engines and `count_tokens` take either.

It is used only for the cached base checkpoint (`_model.load_tokenizer(light=True)`),
whose tokenizer.json and tokenizer_config.json extractkit wrote itself: there it
gives the ids and text that transformers' `TokenizersBackend` gives on the same
file (tests/test_real_model.py compares them; tests/test_tokenizer.py on a
small vocabulary). Any other checkpoint loads through transformers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

_SPECIALS = ("bos", "eos", "pad", "unk")


class TextTokenizer:
    """The part of transformers' tokenizer interface that extractkit's fast path calls."""

    padding_side = "left"  # as `_model._cached_base_tokenizer` sets it; decoding only ever adds on the right

    def __init__(self, backend: Any, special_tokens: dict[str, str], source: str = ""):
        """`backend`: a `tokenizers.Tokenizer` with no padding or truncation set;
        `special_tokens`: tokenizer_config.json's `bos_token`, `eos_token`, ... entries;
        `source`: the file it was read from (`_machine.file_identity`), or "" - where given,
        tables derived from the tokenizer may be remembered under it (`_grammars/llguidance.py`)."""
        self.source = source
        if backend.padding is not None or backend.truncation is not None:
            # transformers clears truncation and keeps padding for batch calls; here every
            # call is one text, and a padded or truncated prompt would change what is decoded.
            raise ValueError("TextTokenizer needs a tokenizer without padding or truncation")
        self.backend_tokenizer = backend
        for name in _SPECIALS:
            token = special_tokens.get(f"{name}_token")
            token_id = backend.token_to_id(token) if isinstance(token, str) else None
            if isinstance(token, str) and token_id is None:
                raise ValueError(f"{name}_token {token!r} is not in the vocabulary")
            setattr(self, f"{name}_token", token)
            setattr(self, f"{name}_token_id", token_id)

    @classmethod
    def from_folder(cls, folder: Path) -> "TextTokenizer":
        """`folder`'s tokenizer: its SentencePiece form where tokenizer.json has Gemma's layout
        (`_spm.py`: 0.15 s, converted once), else tokenizer.json's Rust parse (~2.5 s for Gemma)."""
        from . import _spm
        from ._machine import file_identity

        config = json.loads((folder / "tokenizer_config.json").read_text())
        file = folder / "tokenizer.json"
        backend = _spm.ensure(folder)
        if backend is None:
            from tokenizers import Tokenizer

            backend = Tokenizer.from_file(str(file))
        return cls(backend, config, source=file_identity(file))

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        """{"input_ids": ids}, like transformers' tokenizer called on one text."""
        if not isinstance(text, str):
            raise TypeError(f"TextTokenizer encodes one str, not {type(text).__name__}")
        return {"input_ids": self.backend_tokenizer.encode(text, add_special_tokens=add_special_tokens).ids}

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        # transformers' decode applies no clean-up to this tokenizer: clean_up_tokenization_spaces
        # is off, and transformers skips that clean-up for BPE vocabularies anyway.
        return self.backend_tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def __len__(self) -> int:
        return self.backend_tokenizer.get_vocab_size(with_added_tokens=True)

    def __repr__(self) -> str:
        return f"TextTokenizer(vocab={len(self)}, eos={self.eos_token!r})"
