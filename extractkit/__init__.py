"""extractkit: messy text in, validated Pydantic objects out, on a small local model.

    import extractkit
    invoice = extractkit.extract(text, Invoice)

Importing extractkit is cheap: torch and transformers load only when a model
is first needed.
"""

from ._errors import (
    ExtractError,
    InputError,
    InvalidOutputError,
    ModelLoadError,
    OutputError,
    SchemaError,
    TruncatedOutputError,
    UnknownSchemaError,
    UsageError,
)
from ._extractor import ExtractConfig, Extractor, Result, extract, extract_many
from ._frame import extract_frame
from ._prompt import PROMPT_VERSION, render_prompt
from ._surface import Bounds, dump_json

__version__ = "0.1.0"

__all__ = [
    "Bounds",
    "ExtractConfig",
    "ExtractError",
    "Extractor",
    "InputError",
    "InvalidOutputError",
    "ModelLoadError",
    "OutputError",
    "PROMPT_VERSION",
    "Result",
    "SchemaError",
    "TruncatedOutputError",
    "UnknownSchemaError",
    "UsageError",
    "__version__",
    "dump_json",
    "extract",
    "extract_frame",
    "extract_many",
    "render_prompt",
]
