"""The `extractkit` command line (Typer). docs/cli.md is checked against this help text."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from ._errors import ExtractError, UsageError
from ._schema import BUILTIN_SCHEMAS, load_schema

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Turn messy text into typed JSON with a small local model.")
schemas_app = typer.Typer(no_args_is_help=True, help="List and show the built-in schemas.")
app.add_typer(schemas_app, name="schemas")


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def adapter_choice(adapter: Optional[Path], base: bool) -> object:
    """--adapter DIR / --base / neither (the bundled adapter) as `from_pretrained`'s argument."""
    if adapter is not None and base:
        _fail("--adapter and --base exclude each other")
    return None if base else (adapter if adapter is not None else "bundled")


def _read_inputs(files: List[str]) -> list[tuple[str, object]]:
    """(source, text-or-error) pairs; unreadable files become per-input errors."""
    if not files:
        files = ["-"]
    out: list[tuple[str, object]] = []
    for name in files:
        try:
            data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
            out.append((name, data.decode("utf-8")))
        except UnicodeDecodeError:
            out.append((name, UsageError(f"{name} is not UTF-8 text")))
        except OSError as exc:
            out.append((name, UsageError(f"cannot read {name}: {exc.strerror}")))
    return out


@app.command()
def extract(
    files: List[str] = typer.Argument(None, help="Text files to extract from; '-' (default) reads stdin."),
    schema: str = typer.Option(..., "--schema", "-s", help="Built-in name, module:Class, or a .json schema file."),
    model: Optional[Path] = typer.Option(None, help="A transformers checkpoint folder (default: base model)."),
    adapter: Optional[Path] = typer.Option(
        None, help="A LoRA adapter folder (from `extractkit finetune`); default: the bundled fine-tuned one."),
    base: bool = typer.Option(False, "--base", help="Use the bare base model, without the bundled adapter."),
    engine: str = typer.Option("llguidance", help="Grammar engine: llguidance, outlines_core or xgrammar."),
    max_new_tokens: Optional[int] = typer.Option(
        None, help="Output token budget per document (default: the schema's longest output, at most 2048)."),
    batch_size: int = typer.Option(8, help="Documents decoded together."),
    input_table: Optional[Path] = typer.Option(
        None, "--input", help="Job mode: a .jsonl, .csv or .parquet table with one text per row."),
    column: str = typer.Option("text", help="Job mode: the input column holding the text."),
    id_column: Optional[str] = typer.Option(
        None, help="Job mode: the input column holding row ids (default: the row number from 0)."),
    output_path: Optional[Path] = typer.Option(
        None, "--output", help="Job mode: the .parquet or .jsonl table to write."),
    resume: bool = typer.Option(False, "--resume", help="Job mode: continue an interrupted job."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Job mode: replace an existing output."),
    chunk_rows: int = typer.Option(256, help="Job mode: rows per atomically committed chunk."),
) -> None:
    """Extract one JSON object per input file as JSONL on stdout, or a table of rows with --input/--output."""
    from ._extractor import ExtractConfig, Extractor
    from ._surface import build_surface, dump_json

    try:
        output = load_schema(schema)
        build_surface(output.json_schema).require_supported()  # fail before loading a model
    except ExtractError as exc:
        _fail(str(exc))
    choice = adapter_choice(adapter, base)

    def load() -> Extractor:
        ex = Extractor.from_pretrained(model, adapter=choice, engine=engine,
                                       config=ExtractConfig(max_new_tokens=max_new_tokens, batch_size=batch_size))
        ex.plan(output)
        return ex

    if input_table is not None or output_path is not None or resume or overwrite:
        if files or input_table is None:
            _fail("job mode takes --input TABLE and --output TABLE instead of FILES")
        from ._cli_job import run_table_job

        run_table_job(output_schema=output, load_extractor=load, input_path=input_table, column=column,
                      id_column=id_column, output=output_path, resume=resume, overwrite=overwrite,
                      chunk_rows=chunk_rows)
    inputs = _read_inputs(files or [])
    try:
        extractor = load()
    except ExtractError as exc:
        _fail(str(exc))
    texts = [t if isinstance(t, str) else "" for _, t in inputs]
    results = extractor.extract_many(texts, output)
    failed = 0
    for (source, text), result in zip(inputs, results):
        error = text if isinstance(text, ExtractError) else result.error
        if error is None:
            typer.echo(dump_json(result.value, output.json_schema))
        else:
            failed += 1
            typer.echo(f"error: {source}: {type(error).__name__}: {error}", err=True)
            typer.echo(json.dumps({"_source": source, "_error": f"{type(error).__name__}: {error}",
                                   "_raw": getattr(error, "raw", None)}, ensure_ascii=False))
    typer.echo(f"{len(inputs) - failed} ok, {failed} failed", err=True)
    raise typer.Exit(1 if failed else 0)


@schemas_app.command("list")
def schemas_list() -> None:
    """Print the built-in schema names."""
    for name, ref in sorted(BUILTIN_SCHEMAS.items()):
        typer.echo(f"{name}\t{ref}")


@schemas_app.command("show")
def schemas_show(name: str = typer.Argument(..., help="Built-in name, module:Class or .json file.")) -> None:
    """Print a schema's JSON Schema."""
    try:
        typer.echo(json.dumps(load_schema(name).json_schema, indent=2))
    except ExtractError as exc:
        _fail(str(exc))


@app.command()
def check(schema: str = typer.Argument(..., help="Built-in name, module:Class or .json file.")) -> None:
    """Report per field what the grammar enforces, what is validated afterwards, what is unsupported."""
    from ._surface import build_surface

    try:
        surface = build_surface(load_schema(schema).json_schema)
    except ExtractError as exc:
        _fail(str(exc))
    typer.echo(f"{'field':<32} {'type':<18} {'enforced while decoding':<44} validated afterwards")
    for f in surface.fields:
        typer.echo(f"{f.path:<32} {f.type:<18} {'; '.join(f.enforced):<44} {'; '.join(f.validated) or '-'}")
    for err in surface.unsupported:
        typer.echo(f"{err.path:<32} {'UNSUPPORTED':<18} {err.args[0]}")
    if surface.unsupported:
        raise typer.Exit(1)


def main() -> None:  # console-script entry point
    app()


from . import _cli_finetune  # noqa: E402,F401  (registers finetune, eval and export on `app`)
