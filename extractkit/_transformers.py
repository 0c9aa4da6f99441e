"""The transformers backend: a Hugging Face causal LM plus a grammar engine.

This is the expensive object - weights, tokenizer tables, compiled grammars -
built once and reused for every call. The core (`_extractor.py`) only sees the
`Backend` protocol, so a test double can stand in for it.
"""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

from ._constraint import DEFAULT_ENGINE, Engine, GrammarCache, check_engine, load_engine
from ._decode import Generation, generate_batch
from ._errors import UsageError

DECODERS = ("fast", "generate")  # extractkit's engine (`_engine.py`) / transformers' generate() (`_decode.py`)


def _check_options(decoder: str, numerics: str) -> None:
    from ._numerics import NUMERICS

    if decoder not in DECODERS:
        raise UsageError(f"unknown decoder {decoder!r}; choose one of {', '.join(DECODERS)}")
    if numerics not in NUMERICS:
        raise UsageError(f"unknown numerics {numerics!r}; choose one of {', '.join(NUMERICS)}")


class TransformersBackend:
    """Runs constrained greedy decoding on a loaded transformers model."""

    def __init__(self, model: Any, tokenizer: Any, *, engine: str | Engine = DEFAULT_ENGINE,
                 name: str = "transformers", decoder: str = "fast", numerics: str = "auto",
                 owns_model: bool = False):
        """`owns_model`: the model is this backend's alone (from_pretrained), so the fast
        engine may convert its weights in place (numerics="bf16"/"int8" keeps only low-precision layer
        weights); a model handed in stays usable elsewhere."""
        from ._gemma import supports
        from ._numerics import steady_math
        from ._pages import map_large_allocations

        _check_options(decoder, numerics)
        steady_math()  # a model handed in (not through `load_weights`): before its first forward
        map_large_allocations()  # before the decoder's caches and screens are allocated
        self.numerics = numerics  # the fast engine's layer matmuls, auto/fp32/bf16 (generate() runs the model as loaded)
        self.model, self.tokenizer, self.name = model, tokenizer, name
        # The fast engine implements Gemma 3; any other architecture decodes through generate().
        self.decoder = decoder if supports(model) else "generate"
        self._fast = None
        self._owns_model = owns_model
        self.vocab_size = model.get_output_embeddings().weight.shape[0]
        self.engine = load_engine(engine, tokenizer, self.vocab_size) if isinstance(engine, str) else engine
        self.grammars = GrammarCache(self.engine)
        self.context_window = int(getattr(model.config, "max_position_embeddings", 8192))
        self._lock = threading.Lock()  # one forward pass at a time on a shared model

    @classmethod
    def from_pretrained(cls, model: str | os.PathLike | None = None, *, adapter: str | os.PathLike | None = "bundled",
                        engine: str = DEFAULT_ENGINE, device: str | None = None,
                        dtype: str = "float32", decoder: str = "fast",
                        numerics: str = "auto") -> "TransformersBackend":
        from ._model import checkpoint_path, load_tokenizer, load_weights, resolve_adapter

        check_engine(engine)  # fail before seconds of loading
        _check_options(decoder, numerics)
        adapter = resolve_adapter(model, adapter)
        path = checkpoint_path(model)
        # The fast engine with llguidance needs no transformers tokenizer (1.0-1.7 s to import).
        tokenizer = load_tokenizer(path, light=decoder == "fast" and engine == "llguidance")
        vocab_size = json.loads((path / "config.json").read_text())["vocab_size"]
        # The engine's tokenizer tables (~2 s for llguidance on 262k tokens) are
        # built while the weights load: cold start pays the longer of the two.
        with ThreadPoolExecutor(max_workers=1) as pool:
            tables = pool.submit(load_engine, engine, tokenizer, vocab_size)
            # Only the fast engine's runner will run this model: it adds the LoRA itself, or skips
            # it where remembered qint8 forms of the merged weights replace them (`_lora.py`).
            hf_model = load_weights(path, adapter=adapter, device=device, dtype=dtype, light=decoder == "fast",
                                    defer_adapter=decoder == "fast")
            built = tables.result()
        from ._pages import trim

        trim()  # what building the tables and merging the adapter freed, back to the OS
        name = f"transformers:{path.name}" + (f"+{Path(adapter).name}" if adapter else "")
        return cls(hf_model, tokenizer, engine=built, name=name, decoder=decoder, numerics=numerics,
                   owns_model=True)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text)["input_ids"])

    def compile(self, regex: str) -> Any:
        return self.grammars.get(regex)

    def generate(self, prompts: Sequence[str], plan: Any, *, max_new_tokens: int,
                 batch_size: int) -> list[Generation]:
        """Greedy-decode all prompts under `plan`'s grammar, `batch_size` sequences at a time."""
        compiled = self.compile(plan.surface.regex)
        if self.decoder == "fast":
            from ._engine import FastDecoder
            from ._prompt import prompt_prefix

            with self._lock:
                self._fast = self._fast or FastDecoder(self.model, self.tokenizer, numerics=self.numerics,
                                                       own_weights=self._owns_model)
                return self._fast.generate(prompts, prompt_prefix(plan.schema.json_schema), compiled,
                                           max_new_tokens, batch_size)
        # The reference path: batches group prompts of similar length.
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: list[Generation | None] = [None] * len(prompts)
        for lo in range(0, len(order), batch_size):
            chunk = order[lo: lo + batch_size]
            with self._lock:
                outs = generate_batch(self.model, self.tokenizer, compiled,
                                      [prompts[i] for i in chunk], max_new_tokens)
            for i, out in zip(chunk, outs):
                results[i] = out
        return results  # type: ignore[return-value]
