"""`extractkit finetune`, `extractkit eval` and `extractkit export` (registered on the main app).

The work lives in `extractkit.finetune`; these commands parse options, report
progress on stderr and print results on stdout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ._cli import _fail, adapter_choice, app
from ._errors import ExtractError
from ._schema import load_schema


@app.command()
def finetune(
    schema: str = typer.Option(..., "--schema", "-s", help="Built-in name, module:Class, or a .json schema file."),
    out: Path = typer.Option(..., "--out", help="Folder for the adapter, its manifest and checkpoints."),
    data: Optional[Path] = typer.Option(None, "--data", help="Training JSONL: one {text, output} object per line."),
    synthesize: int = typer.Option(0, "--synthesize", help="Generate this many synthetic training documents."),
    eval_data: Optional[Path] = typer.Option(None, "--eval", help="Gold JSONL to evaluate the adapter on after training."),
    start: str = typer.Option("bundled", "--from", help="Start from: bundled (the shipped adapter), base, or an adapter folder."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after this many optimizer steps."),
    epochs: float = typer.Option(1.0, "--epochs", help="Passes over the training data (unless --max-steps)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Examples per optimizer step."),
    learning_rate: float = typer.Option(2e-4, "--learning-rate", help="Peak learning rate."),
    seed: int = typer.Option(0, "--seed", help="Seed for synthesis, shuffling and initialization."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the checkpoint in --out."),
) -> None:
    """Fine-tune a LoRA adapter for a schema on your data and/or synthetic documents."""
    from .finetune import finetune_schema

    if data is None and synthesize <= 0:
        _fail("give training data: --data FILE and/or --synthesize N")
    if (out / "manifest.json").exists() and not resume:
        _fail(f"{out} already holds a trained adapter; choose another --out")
    try:
        report = finetune_schema(load_schema(schema), out, data=data, synthesize=synthesize, eval_data=eval_data,
                                 start=start, max_steps=max_steps, epochs=epochs, batch_size=batch_size,
                                 learning_rate=learning_rate, seed=seed, resume=resume)
    except (ExtractError, ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    typer.echo(json.dumps(report, indent=2))


@app.command("eval")
def eval_command(
    schema: str = typer.Option(..., "--schema", "-s", help="Built-in name, module:Class, or a .json schema file."),
    data: Path = typer.Option(..., "--data", help="Gold JSONL: one {text, output} object per line."),
    adapter: Optional[Path] = typer.Option(None, "--adapter", help="A LoRA adapter folder; default: the bundled one."),
    base: bool = typer.Option(False, "--base", help="Evaluate the bare base model."),
    report: Optional[Path] = typer.Option(None, "--report", help="Also write the full report (with failures) as JSON."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N documents."),
    batch_size: int = typer.Option(8, "--batch-size", help="Documents decoded together."),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", help="Output token budget per document."),
) -> None:
    """Score a model on gold data: per-field accuracy, micro/macro, null precision/recall, docs/s."""
    from ._extractor import ExtractConfig, Extractor
    from .finetune import evaluate, format_report, read_examples

    try:
        output = load_schema(schema)
        examples = read_examples(data, output)[:limit]
        extractor = Extractor.from_pretrained(adapter=adapter_choice(adapter, base), config=ExtractConfig(
            batch_size=batch_size, max_new_tokens=max_new_tokens))
        result = evaluate(extractor, examples, output)
    except ExtractError as exc:
        _fail(str(exc))
    typer.echo(format_report(result))
    if report is not None:
        report.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")


@app.command()
def export(
    out: Path = typer.Option(..., "--out", help="hf: the folder to write; gguf: the .gguf file to write."),
    format: str = typer.Option("hf", "--format", help="hf: a transformers checkpoint (safetensors + tokenizer); "
                                                      "gguf: one file for llama.cpp."),
    quant: Optional[str] = typer.Option(None, "--quant", help="gguf weights: f16 (default) or q8_0."),
    adapter: Optional[Path] = typer.Option(None, "--adapter", help="A LoRA adapter folder; default: the bundled one."),
    base: bool = typer.Option(False, "--base", help="Export the bare base model."),
) -> None:
    """Write the model with its adapter merged, for other tools (drive it with render_prompt)."""
    from .finetune import export_gguf, export_hf

    if format not in ("hf", "gguf"):
        _fail(f"unknown --format {format!r}: supported: hf, gguf")
    if quant is not None and format != "gguf":
        _fail("--quant applies to --format gguf only")
    if quant not in (None, "f16", "q8_0"):
        _fail(f"unknown --quant {quant!r}: supported: f16, q8_0")
    choice = adapter_choice(adapter, base)
    try:
        if format == "hf":
            path = export_hf(out, adapter=choice)
        else:
            path = export_gguf(out, quant=quant or "f16", adapter=choice)
    except ExtractError as exc:
        _fail(str(exc))
    typer.echo(str(path))
