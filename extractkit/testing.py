"""A test double for your own code: `FakeBackend` stands in for the model.

    from extractkit import Extractor
    from extractkit.testing import FakeBackend

    ex = Extractor(FakeBackend(responses=[{"name": "Ada", "email": None}]))
    assert ex.extract("...", Contact).name == "Ada"

Like the real model, the fake can only write what the schema's grammar allows:
a canned response that does not match raises `UsageError` in your test, rather
than producing an object the real model never could. Without canned responses
it writes the shortest output the grammar allows (a schema-valid placeholder).
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable, Sequence

try:  # Python 3.11 exposes the regex parser as re._parser
    from re import _parser as _sre
except ImportError:  # pragma: no cover
    import sre_parse as _sre  # type: ignore[no-redef]

from ._decode import Generation
from ._errors import UsageError
from ._surface import dump_json

Response = str | dict | Any
__all__ = ["FakeBackend", "minimal_match"]


class FakeBackend:
    """A model-free backend: returns canned responses (or minimal ones) in call order."""

    name = "fake"
    context_window = 32768

    def __init__(self, responses: Iterable[Response] | Callable[[str], Response] | None = None):
        self._fn = responses if callable(responses) else None
        self._queue = list(responses) if responses is not None and not callable(responses) else None
        self.prompts: list[str] = []  # every prompt seen, for assertions

    def count_tokens(self, text: str) -> int:
        return max(1, len(text) // 4)  # a rough stand-in; the real tokenizer decides for real

    def compile(self, regex: str) -> re.Pattern:
        return re.compile(regex)

    def generate(self, prompts: Sequence[str], plan: Any, *, max_new_tokens: int,
                 batch_size: int) -> list[Generation]:
        pattern = self.compile(plan.surface.regex)
        out = []
        for prompt in prompts:
            self.prompts.append(prompt)
            text = self._next(prompt, plan)
            if not pattern.fullmatch(text):
                raise UsageError(f"FakeBackend response {text[:80]!r} does not match the schema's grammar")
            tokens = self.count_tokens(text)
            finished = tokens <= max_new_tokens
            out.append(Generation(text if finished else text[: max_new_tokens * 4], finished, tokens, 0.0))
        return out

    def _next(self, prompt: str, plan: Any) -> str:
        if self._fn is not None:
            response = self._fn(prompt)
        elif self._queue:
            response = self._queue.pop(0)
        elif self._queue is not None:
            raise UsageError("FakeBackend ran out of canned responses")
        else:
            return minimal_match(plan.surface.regex)
        return response if isinstance(response, str) else dump_json(response, plan.schema.json_schema)


def minimal_match(regex: str) -> str:
    """The shortest string matching `regex`, preferring 'a' and '1' in classes."""
    return _emit(_sre.parse(regex))


def _emit(items: Any) -> str:
    out = []
    for op, arg in items:
        name = str(op)
        if name == "LITERAL":
            out.append(chr(arg))
        elif name in ("MAX_REPEAT", "MIN_REPEAT"):
            lo, _hi, sub = arg
            out.append(_emit(sub) * lo)
        elif name == "SUBPATTERN":
            out.append(_emit(arg[-1]))
        elif name == "BRANCH":
            out.append(_emit(arg[1][0]))
        elif name == "IN":
            out.append(_pick(arg))
        elif name == "ANY":
            out.append("a")
        elif name in ("AT",):
            continue
        else:
            raise ValueError(f"unsupported regex construct {name}")
    return "".join(out)


def _pick(members: list) -> str:
    negated = any(str(op) == "NEGATE" for op, _ in members)
    for candidate in "a1A":
        hit = any(
            (str(op) == "LITERAL" and chr(val) == candidate)
            or (str(op) == "RANGE" and val[0] <= ord(candidate) <= val[1])
            or (str(op) == "CATEGORY" and str(val) == "CATEGORY_DIGIT" and candidate.isdigit())
            for op, val in members)
        if hit != negated:
            return candidate
    first = members[0]
    return chr(first[1]) if str(first[0]) == "LITERAL" else chr(first[1][0])
