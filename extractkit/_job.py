"""ETL jobs: a table of texts in, a typed table out, every row exactly once, resumable.

Layout while a job runs, next to the final output ``out.parquet``::

    out.parquet.parts/
        manifest.json         what this job is (input file, schema, model, chunk size)
        part-000000.parquet   rows 0 .. chunk_rows-1, written tmp + fsync + rename
        part-000001.parquet   ...

A part is either fully there or absent, so after a crash (even ``kill -9``) the
committed parts say exactly which rows are done; `--resume` re-reads the input,
skips them, and carries on. A chunk is always the same rows and decoded in the
same batches, so a resumed job writes the same values as an uninterrupted one.
At the end the parts are joined into the final file (again tmp + fsync + rename)
and the folder is removed.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ._arrow import ERROR, output_schema, results_table
from ._errors import InputError, UsageError
from ._extractor import Extractor, Result
from ._rows import Row, RowSource, file_format
from ._schema import OutputSchema

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class JobConfig:
    chunk_rows: int = 256      # rows per committed part: the most work a crash can lose
    resume: bool = False       # continue an interrupted job in the output's .parts folder
    overwrite: bool = False    # replace an existing output or unfinished job
    progress: bool = True      # a progress bar on stderr


@dataclass(frozen=True)
class JobSummary:
    rows: int
    failed: int
    resumed_from: int          # rows already committed when this run started
    output: Path

    @property
    def line(self) -> str:
        return f"{self.rows - self.failed} ok, {self.failed} failed ({self.rows} rows -> {self.output})"


def parts_dir(output: Path) -> Path:
    return output.with_name(output.name + ".parts")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _commit(tmp: Path, final: Path) -> None:
    """Make a fully written file durable, then give it its name in one step."""
    with tmp.open("rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)
    _fsync_dir(final.parent)


def _manifest(extractor: Extractor, schema: OutputSchema, source: RowSource, total: int,
              config: JobConfig, output_format: str) -> dict[str, Any]:
    stat = source.path.stat()
    return {"version": MANIFEST_VERSION, "input": str(source.path.resolve()), "input_size": stat.st_size,
            "input_mtime_ns": stat.st_mtime_ns, "column": source.column, "id_column": source.id_column,
            "id_kind": source.id_kind, "rows": total, "schema": schema.name, "schema_digest": schema.digest,
            "model": extractor.backend.name, "max_new_tokens": extractor.config.max_new_tokens,
            "batch_size": extractor.config.batch_size, "chunk_rows": config.chunk_rows,
            "output_format": output_format}


def _prepare(output: Path, manifest: dict[str, Any], config: JobConfig) -> int:
    """Check what is on disk against the options; returns the number of committed parts."""
    parts = parts_dir(output)
    if config.overwrite:
        shutil.rmtree(parts, ignore_errors=True)
    elif parts.exists() and not config.resume:
        raise UsageError(f"{parts} holds an unfinished job: --resume to continue it, --overwrite to start over")
    elif output.exists() and not parts.exists():
        if config.resume:
            raise UsageError(f"{output} is already complete: nothing to resume (--overwrite to run it again)")
        raise UsageError(f"{output} already exists: use --overwrite to replace it")
    if not parts.exists():
        parts.mkdir(parents=True)
        tmp = parts / "manifest.json.tmp"
        tmp.write_text(json.dumps(manifest, indent=1))
        _commit(tmp, parts / "manifest.json")
        return 0
    try:
        stored = json.loads((parts / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError):
        raise UsageError(f"{parts} has no readable manifest.json: --overwrite to start over") from None
    differ = [k for k in manifest if stored.get(k) != manifest[k]]
    if differ:
        raise UsageError(f"{parts} belongs to a different job ({', '.join(differ)} differ): "
                         "resume with the same input and options, or --overwrite to start over")
    for leftover in parts.glob("*.tmp"):
        leftover.unlink()  # a part that was being written when the job died
    return sum(1 for _ in itertools.takewhile(lambda k: _part(parts, k).exists(), itertools.count()))


def _part(parts: Path, k: int) -> Path:
    return parts / f"part-{k:06d}.parquet"


def extract_rows(extractor: Extractor, schema: OutputSchema, rows: list[Row],
                 batch_size: int | None = None) -> list[Result]:
    """Results for `rows` in row order; rows the reader flagged never reach the model."""
    good = [(row.id, row.text) for row in rows if not isinstance(row.text, InputError)]
    extracted = iter(extractor.extract_many(good, schema, batch_size=batch_size))
    return [Result(index=i, error=row.text, id=row.id) if isinstance(row.text, InputError) else next(extracted)
            for i, row in enumerate(rows)]


def run_job(extractor: Extractor, schema: OutputSchema, source: RowSource, output: str | Path,
            config: JobConfig = JobConfig()) -> JobSummary:
    """Extract `source`'s rows into `output` (.parquet or .jsonl); see the module docstring."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    output = Path(output)
    out_format = file_format(output, "output")
    if out_format not in ("parquet", "jsonl"):
        raise UsageError(f"{output}: write .parquet or .jsonl output")
    if config.chunk_rows < 1:
        raise UsageError("--chunk-rows must be at least 1")
    extractor.plan(schema)  # schema errors before reading the input
    total = source.scan()   # file errors before any model work
    arrow_schema = output_schema(schema, pa.int64() if source.id_kind == "int" else pa.string(),
                                 extractor.config.bounds)
    manifest = _manifest(extractor, schema, source, total, config, out_format)
    parts = parts_dir(output)
    committed = _prepare(output, manifest, config)
    done = min(committed * config.chunk_rows, total)
    with _progress(total, done, config.progress) as bar:
        rows = source.rows(skip=done)
        for k in itertools.count(committed):
            chunk = list(itertools.islice(rows, config.chunk_rows))
            if not chunk:
                break
            table = results_table(extract_rows(extractor, schema, chunk), arrow_schema)
            tmp = _part(parts, k).with_suffix(".parquet.tmp")
            pq.write_table(table, tmp)
            _commit(tmp, _part(parts, k))
            bar.update(len(chunk))
    failed = _finish(parts, output, out_format, arrow_schema)
    return JobSummary(rows=total, failed=failed, resumed_from=done, output=output)


def _progress(total: int, done: int, show: bool) -> Any:
    from tqdm import tqdm

    quiet = not show or os.environ.get("EXTRACTKIT_QUIET") == "1"
    return tqdm(total=total, initial=done, unit="row", desc="extract", file=sys.stderr,
                disable=quiet, smoothing=0.1)


def _tables(parts: Path) -> Iterator[Any]:
    import pyarrow.parquet as pq

    for k in itertools.count():
        if not _part(parts, k).exists():
            return
        yield pq.read_table(_part(parts, k))


def _finish(parts: Path, output: Path, out_format: str, arrow_schema: Any) -> int:
    """Join the parts into `output` atomically, drop the parts folder; returns the failed-row count."""
    import pyarrow.parquet as pq

    tmp = output.with_name(output.name + ".tmp")
    failed = 0
    if out_format == "parquet":
        with pq.ParquetWriter(tmp, arrow_schema) as writer:
            for table in _tables(parts):
                failed += table.num_rows - table.column(ERROR).null_count
                writer.write_table(table)
    else:
        with tmp.open("w", encoding="utf-8") as f:
            for table in _tables(parts):
                failed += table.num_rows - table.column(ERROR).null_count
                for row in table.to_pylist():
                    f.write(json.dumps(row, ensure_ascii=False, default=_json_default) + "\n")
    _commit(tmp, output)
    shutil.rmtree(parts)
    return failed


def _json_default(value: Any) -> Any:
    """Arrow's Python values that JSON lacks: dates and times as ISO text, decimals as numbers."""
    import decimal

    if isinstance(value, decimal.Decimal):
        return float(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
