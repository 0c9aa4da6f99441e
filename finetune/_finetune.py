"""`extractkit finetune` as a function: gather data, train, evaluate, write the manifest."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from extractkit._manifest import add_eval, write_training_manifest
from extractkit._model import resolve_adapter
from extractkit._schema import OutputSchema

from ._data import read_examples
from ._train import TrainConfig, train


def finetune_schema(schema: OutputSchema, out: str | os.PathLike, *, data: str | os.PathLike | None = None,
                    synthesize: int = 0, eval_data: str | os.PathLike | None = None, start: str = "bundled",
                    max_steps: int | None = None, epochs: float = 1.0, batch_size: int = 8,
                    learning_rate: float = 2e-4, seed: int = 0, resume: bool = False,
                    progress: bool = True) -> dict[str, Any]:
    """Train an adapter for one schema; returns the manifest's training and eval sections.

    `start` is `bundled` (continue from the shipped adapter: it already knows
    the task, so a new schema needs few steps), `base`, or an adapter folder.
    """
    out = Path(out)
    examples = read_examples(data, schema) if data is not None else []
    if synthesize > 0:
        from ._synth import synthesize as make

        examples += make(schema, synthesize, seed=seed)
    if not examples:
        raise ValueError("no training examples: give data and/or a synthesis count")
    init = resolve_adapter(None, None if start == "base" else start)
    config = TrainConfig(epochs=epochs, max_steps=max_steps, batch_size=batch_size,
                         learning_rate=learning_rate, seed=seed, warmup_steps=min(10, max(1, (max_steps or 10) // 5)))
    result = train([(schema, ex) for ex in examples], out, config=config, init_adapter=init,
                   resume=resume and (out / "checkpoint").exists(), progress=progress)
    sources = {"data": str(data) if data else None, "synthesized": synthesize, "seed": seed,
               "examples": len(examples), "start": start}
    manifest = write_training_manifest(out, result, config, [schema], sources)
    if eval_data is not None:
        from extractkit._extractor import Extractor

        from ._eval import evaluate, format_report

        gold = read_examples(eval_data, schema)
        report = evaluate(Extractor.from_pretrained(adapter=out), gold, schema)
        add_eval(out, Path(eval_data).name, report)
        manifest["eval"] = {Path(eval_data).name: report}
        if progress:
            import sys

            print(format_report(report), file=sys.stderr)
    return {"adapter": str(out), "training": manifest["training"],
            "eval": {k: {m: v for m, v in r.items() if m != "failures"} for k, r in manifest["eval"].items()}}
