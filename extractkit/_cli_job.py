"""`extractkit extract --input T --output O`: the table-in, table-out job mode of `extract`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._errors import ExtractError


def run_table_job(*, output_schema: object, extractor_factory: object, input_path: Path, column: str,
                  id_column: Optional[str], output: Optional[Path], resume: bool, overwrite: bool,
                  chunk_rows: int) -> None:
    """Run one job and exit: 0 when every row extracted, 1 when some rows failed, 2 on usage errors."""
    from ._job import JobConfig, run_job
    from ._rows import RowSource, file_format

    def fail(message: str) -> None:
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(2)

    if output is None:
        fail("--input needs --output (a .parquet or .jsonl file)")
    try:
        # File-level problems (missing input, unknown formats) before seconds of model loading.
        source = RowSource(input_path, column, id_column)
        file_format(output, "output")
        extractor = extractor_factory()  # type: ignore[operator]
        summary = run_job(extractor, output_schema, source, output,  # type: ignore[arg-type]
                          JobConfig(chunk_rows=chunk_rows, resume=resume, overwrite=overwrite))
    except ExtractError as exc:
        fail(str(exc))
    if summary.resumed_from:
        typer.echo(f"resumed after {summary.resumed_from} committed rows", err=True)
    typer.echo(summary.line, err=True)
    raise typer.Exit(1 if summary.failed else 0)
