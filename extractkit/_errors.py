"""The error tree: whose fault it is, and what the model actually wrote.

Every error extractkit raises derives from `ExtractError`. The two branches answer
the first question a user asks when something breaks:

* `UsageError`  - the caller asked for something we cannot do (bad schema, bad
  input, unknown name). Raised *before* any generation, so it is cheap.
* `OutputError` - the model produced something unusable. These carry `raw`, the
  exact text the model wrote, so the failure can be inspected or logged.
"""

from __future__ import annotations


class ExtractError(Exception):
    """Base class of every error raised by extractkit."""


# ----------------------------------------------------------------- usage errors
class UsageError(ExtractError):
    """The caller's fault: a bad schema, bad input or bad option."""


class SchemaError(UsageError):
    """The output schema cannot be turned into a grammar.

    `path` names the offending field (e.g. ``items[].price``) and `keyword` the
    JSON Schema keyword or Python type that is not supported, when known.
    """

    def __init__(self, message: str, *, path: str = "", keyword: str | None = None):
        where = f" (at {path})" if path else ""
        super().__init__(f"{message}{where}")
        self.path = path
        self.keyword = keyword


class UnknownSchemaError(UsageError):
    """A schema name that is neither built in, an import path nor a file."""


class InputError(UsageError):
    """The input text cannot be extracted from (empty, not text, too long)."""


class ModelLoadError(UsageError):
    """The model, its cache or an adapter could not be loaded."""


# ---------------------------------------------------------------- output errors
class OutputError(ExtractError):
    """The model's fault: its output could not become the requested object."""

    def __init__(self, message: str, *, raw: str):
        super().__init__(f"{message}; raw output: {raw[:200]!r}{'...' if len(raw) > 200 else ''}")
        self.raw = raw


class TruncatedOutputError(OutputError):
    """Generation hit `max_new_tokens` before the JSON object was complete."""


class InvalidOutputError(OutputError):
    """The JSON was complete but failed Pydantic validation (or JSON parsing)."""

    def __init__(self, message: str, *, raw: str, errors: list | None = None):
        super().__init__(message, raw=raw)
        self.errors = errors or []
