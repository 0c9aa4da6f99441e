"""The pipeline: schema -> prompt -> constraint -> decode -> parse -> object.

`Extractor` is the reusable client (a backend plus per-schema plans);
`extract` and `extract_many` at module level are one-shot conveniences over a
process-wide default Extractor, like `httpx.get` over `httpx.Client`.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
from dataclasses import dataclass
from typing import Any, Generic, Iterable, Iterator, Protocol, Sequence, TypeVar

from ._constraint import DEFAULT_ENGINE
from ._errors import ExtractError, InputError
from ._parse import parse_output
from ._prompt import render_prompt_for_schema
from ._schema import OutputSchema, as_output_schema
from ._surface import Bounds, Surface, build_surface

T = TypeVar("T")

# extract_many pulls this many batches' worth of inputs at a time: enough for the
# backend's length bucketing to group similar prompts, few enough that memory stays
# bounded however long the input stream is.
CHUNK_BATCHES = 4


@dataclass(frozen=True)
class ExtractConfig:
    """How extraction runs; every field has a safe default."""

    # Output token budget per document. None: the longest output the schema's
    # grammar allows (every token writes at least one character), capped at
    # `max_new_tokens_cap`. Running out raises TruncatedOutputError.
    max_new_tokens: int | None = None
    max_new_tokens_cap: int = 2048
    batch_size: int = 8         # documents decoded together by extract_many
    bounds: Bounds = Bounds()   # limits for schema fields that set none


class Backend(Protocol):
    """What the pipeline needs from a model. See `extractkit.testing.FakeBackend`."""

    name: str
    context_window: int

    def count_tokens(self, text: str) -> int: ...
    def compile(self, regex: str) -> Any: ...
    def generate(self, prompts: Sequence[str], plan: "Plan", *, max_new_tokens: int,
                 batch_size: int) -> list[Any]: ...


@dataclass(frozen=True)
class Plan:
    """Everything about a schema that does not depend on the document."""

    schema: OutputSchema
    surface: Surface
    max_new_tokens: int  # the budget for this schema (see ExtractConfig.max_new_tokens)


@dataclass(frozen=True)
class Result(Generic[T]):
    """One input's outcome in `extract_many`: a value or an error, never both.

    `index` counts inputs from 0; `id` is the caller's id for an ``(id, text)``
    input, else the index. `seconds` is the wall time of the batch the input was
    decoded in (its latency); 0 for inputs rejected before generation.
    """

    index: int
    value: T | None = None
    error: ExtractError | None = None
    raw: str | None = None
    seconds: float = 0.0
    tokens: int = 0
    id: Any = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def unwrap(self) -> T:
        """The value, or raise the stored error."""
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


class Extractor:
    """A model ready to extract: load once, call many times (thread-safe)."""

    def __init__(self, backend: Backend, config: ExtractConfig = ExtractConfig()):
        self.backend, self.config = backend, config
        self._plans: dict[Any, Plan] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_pretrained(cls, model: str | os.PathLike | None = None, *, adapter: str | os.PathLike | None = "bundled",
                        engine: str = DEFAULT_ENGINE, device: str | None = None, dtype: str = "float32",
                        decoder: str = "fast", numerics: str = "auto",
                        config: ExtractConfig = ExtractConfig()) -> "Extractor":
        """Load a checkpoint and a LoRA adapter.

        Defaults: the cached base Gemma 3 270M with extractkit's bundled
        fine-tuned adapter. `adapter=None` gives the bare base model; a folder
        applies your own adapter (from `extractkit finetune`). `decoder="generate"`
        decodes through transformers' `generate()` instead of extractkit's engine
        (same outputs, slower; the reference the engine is tested against).
        `numerics` is the engine's layer matmuls: "auto" (bf16 or qint8 where
        this machine runs it clearly faster, else fp32), "fp32" (token for
        token what `generate()` gives), "bf16", "qint8" (int8 x int8 through
        fbgemm, x86 CPUs) or "int8" (opt-in weight-only int8);
        docs/performance.md has the speed and the accuracy deltas.
        """
        from ._transformers import TransformersBackend

        backend = TransformersBackend.from_pretrained(model, adapter=adapter, engine=engine,
                                                      device=device, dtype=dtype, decoder=decoder,
                                                      numerics=numerics)
        return cls(backend, config)

    def plan(self, schema: Any) -> Plan:
        """Validate a schema and compile its grammar (cached); raises SchemaError early."""
        key = schema if isinstance(schema, type) else json.dumps(schema, sort_keys=True, default=str)
        with self._lock:
            if key in self._plans:
                return self._plans[key]
        output = as_output_schema(schema)
        surface = build_surface(output.json_schema, self.config.bounds)
        surface.require_supported()
        self.backend.compile(surface.regex)
        budget = self.config.max_new_tokens or min(surface.max_chars, self.config.max_new_tokens_cap)
        plan = Plan(output, surface, budget)
        with self._lock:
            self._plans[key] = plan
        return plan

    def _prompt(self, text: Any, plan: Plan) -> str:
        if isinstance(text, bytes):
            raise InputError("input is bytes, not text: decode it first (e.g. data.decode('utf-8'))")
        if not isinstance(text, str):
            raise InputError(f"input must be a str, got {type(text).__name__}")
        if not text.strip():
            raise InputError("input text is empty or only whitespace")
        prompt = render_prompt_for_schema(text, plan.schema.json_schema)
        limit = self.backend.context_window - plan.max_new_tokens
        # Cheap character bound first: a token is at least one character here.
        if len(prompt) > limit:
            needed = self.backend.count_tokens(prompt)
            if needed > limit:
                raise InputError(f"input is too long: the prompt needs {needed} tokens, the model's "
                                 f"context window leaves {limit} after the output budget")
        return prompt

    def extract(self, text: str, schema: type[T] | dict) -> T:
        """Extract one object of `schema` from `text`; raises on failure."""
        return next(self.extract_many([text], schema)).unwrap()

    def extract_many(self, texts: Iterable[Any], schema: type[T] | dict, *,
                     batch_size: int | None = None) -> Iterator[Result[T]]:
        """Lazily yield one Result per input, in input order; a bad input never sinks the others.

        `texts` may be any iterable (a generator over millions of rows): it is
        pulled a few batches at a time, so memory stays bounded. An input may be
        a text or an ``(id, text)`` pair; the id comes back as `Result.id`. The
        schema is checked and compiled before the first input is read.
        """
        plan = self.plan(schema)
        size = batch_size or self.config.batch_size
        if size < 1:
            raise ValueError(f"batch_size must be at least 1, got {size}")
        return self._stream(iter(texts), plan, size)

    def _stream(self, items: Iterator[Any], plan: Plan, size: int) -> Iterator[Result[T]]:
        start = 0
        while chunk := list(itertools.islice(items, size * CHUNK_BATCHES)):
            yield from self._chunk(chunk, start, plan, size)
            start += len(chunk)

    def _chunk(self, items: list[Any], start: int, plan: Plan, size: int) -> list[Result[T]]:
        results: list[Result[T] | None] = [None] * len(items)
        prompts, where, ids = [], [], []
        for offset, item in enumerate(items):
            i = start + offset
            key, text = item if isinstance(item, tuple) and len(item) == 2 else (i, item)
            ids.append(key)
            try:
                prompts.append(self._prompt(text, plan))
                where.append(offset)
            except InputError as exc:
                results[offset] = Result(index=i, error=exc, id=key)
        generations = self.backend.generate(prompts, plan, max_new_tokens=plan.max_new_tokens,
                                            batch_size=size) if prompts else []
        for offset, gen in zip(where, generations):
            common = dict(index=start + offset, raw=gen.text, seconds=gen.seconds, tokens=gen.tokens,
                          id=ids[offset])
            try:
                results[offset] = Result(value=parse_output(gen.text, gen.finished, plan.schema), **common)
            except ExtractError as exc:
                results[offset] = Result(error=exc, **common)
        return results  # type: ignore[return-value]


_default: Extractor | None = None
_default_lock = threading.Lock()


def default_extractor() -> Extractor:
    """The process-wide Extractor behind `extract()` (loaded on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Extractor.from_pretrained()
        return _default


def extract(text: str, schema: type[T] | dict, *, extractor: Extractor | None = None) -> T:
    """Extract one `schema` object from `text` with the default model."""
    return (extractor or default_extractor()).extract(text, schema)


def extract_many(texts: Iterable[Any], schema: type[T] | dict, *, batch_size: int | None = None,
                 extractor: Extractor | None = None) -> Iterator[Result[T]]:
    """Lazily extract from many texts (or ``(id, text)`` pairs); one Result per input, in order."""
    return (extractor or default_extractor()).extract_many(texts, schema, batch_size=batch_size)
