"""extractkit.finetune: synthesize data, LoRA-train Gemma 3 270M, evaluate, export.

    from extractkit.finetune import read_examples, synthesize, train, evaluate

Training needs `peft` (a core dependency) and synthesis needs `faker`
(`pip install "extractkit[finetune]"`). Importing this package stays light:
torch loads only when training, evaluation or export starts.
"""

from ._data import DataError, Example, canonical_output, read_examples, target_json, write_examples
from ._eval import evaluate, format_report, values_match
from ._export import export_hf
from ._finetune import finetune_schema
from ._gguf import export_gguf
from ._train import Encoded, TrainConfig, TrainResult, encode, train


def __getattr__(name: str):
    # Synthesis imports faker (an extra): only when asked for.
    if name in ("synthesize", "random_schemas"):
        from . import _synth

        return getattr(_synth, name)
    raise AttributeError(name)


__all__ = [
    "DataError",
    "Encoded",
    "Example",
    "TrainConfig",
    "TrainResult",
    "canonical_output",
    "encode",
    "evaluate",
    "export_gguf",
    "export_hf",
    "finetune_schema",
    "format_report",
    "random_schemas",
    "read_examples",
    "synthesize",
    "target_json",
    "train",
    "values_match",
    "write_examples",
]
