"""`extractkit extract --input T --output O`: the table-in, table-out job mode of `extract`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import typer

from ._errors import ExtractError

if TYPE_CHECKING:
    from ._extractor import Extractor
    from ._schema import OutputSchema


def run_table_job(*, output_schema: "OutputSchema", load_extractor: Callable[[], "Extractor"], input_path: Path,
                  column: str, id_column: Optional[str], output: Optional[Path], resume: bool, overwrite: bool,
                  chunk_rows: int) -> None:
    """Run one job and exit: 0 when every row extracted, 1 when some rows failed, 2 on usage errors."""
    from ._job import JobConfig, parts_dir, run_job
    from ._rows import RowSource, file_format

    def fail(message: str, code: int = 2) -> None:
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(code)

    if output is None:
        fail("--input needs --output (a .parquet or .jsonl file)")
        return
    try:
        # File-level problems (missing input, unknown formats) before seconds of model loading.
        source = RowSource(input_path, column, id_column)
        file_format(output, "output")
        summary = run_job(load_extractor(), output_schema, source, output,
                          JobConfig(chunk_rows=chunk_rows, resume=resume, overwrite=overwrite))
    except ExtractError as exc:
        fail(str(exc))
        return
    except KeyboardInterrupt:
        fail(f"interrupted; the committed chunks are kept in {parts_dir(output)}: "
             "run the same command with --resume to continue", 130)
        return
    if summary.resumed_from:
        typer.echo(f"resumed after {summary.resumed_from} committed rows", err=True)
    typer.echo(summary.line, err=True)
    raise typer.Exit(1 if summary.failed else 0)
