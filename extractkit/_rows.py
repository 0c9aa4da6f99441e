"""Input tables for ETL jobs: JSONL, CSV and Parquet rows as (line, id, text).

Two kinds of trouble, kept apart on purpose:

* a malformed *file* (a broken JSONL line, a missing column, a ragged CSV row)
  raises `UsageError` naming the file and the line or column. `RowSource.scan`
  reads the whole file before any model work, so a job never dies half-way on it;
* a bad *row* (null, non-UTF-8 text) is yielded with an `InputError` in place of
  its text and becomes an error row; empty and over-long texts are caught by the
  Extractor the same way.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ._errors import InputError, UsageError

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
_BATCH = 1024  # Parquet rows read at a time


@dataclass(frozen=True)
class Row:
    line: int   # 1-based line (JSONL, CSV) or row number (Parquet)
    id: Any     # the id column's value, or the 0-based row index without one
    text: Any   # the text, or an InputError saying why the row has none


def file_format(path: Path, what: str = "input") -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UsageError(f"{path}: unknown {what} format {path.suffix!r} (use .jsonl, .csv or .parquet)")
    return fmt


def as_text(value: Any) -> Any:
    """The row's text, or an InputError the job records for the row."""
    if value is None:
        return InputError("text is missing (null)")
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            return InputError(f"text is not valid UTF-8 (byte {exc.start})")
    if isinstance(value, str):
        try:
            value.encode("utf-8")  # lone surrogates: undecodable bytes, or a bad \u escape
        except UnicodeEncodeError as exc:
            return InputError(f"text is not valid UTF-8 (character {exc.start})")
    return value


class RowSource:
    """One input file: `scan()` checks it whole and counts rows; `rows()` streams them."""

    def __init__(self, path: str | Path, column: str, id_column: str | None = None):
        self.path, self.column, self.id_column = Path(path), column, id_column
        self.format = file_format(self.path)
        if not self.path.is_file():
            raise UsageError(f"input file not found: {self.path}")
        self.id_kind = "int" if id_column is None else ""  # "int" or "str", fixed by scan()

    def scan(self) -> int:
        """Read the whole file once; raise UsageError at the first malformed line. Returns the row count."""
        if self.format == "parquet":
            return self._parquet_scan()
        return sum(1 for _ in self.rows())

    def rows(self, skip: int = 0) -> Iterator[Row]:
        """Rows in file order, after the first `skip`."""
        reader = {"jsonl": self._jsonl, "csv": self._csv, "parquet": self._parquet}[self.format]
        for i, row in enumerate(reader()):
            if i >= skip:
                yield row

    def _where(self, line: int) -> str:
        return f"{self.path}:{line}"

    def _id(self, value: Any, line: int) -> Any:
        if value is None:
            raise UsageError(f"{self._where(line)}: id column {self.id_column!r} is null")
        kind = "int" if isinstance(value, int) and not isinstance(value, bool) else \
            "str" if isinstance(value, str) else None
        if kind is None:
            raise UsageError(f"{self._where(line)}: id column {self.id_column!r} holds "
                             f"{type(value).__name__}; ids must be integers or strings")
        if not self.id_kind:
            self.id_kind = kind
        elif kind != self.id_kind:
            raise UsageError(f"{self._where(line)}: id column {self.id_column!r} holds a {kind}, "
                             f"earlier rows a {self.id_kind}")
        return value

    def _jsonl(self) -> Iterator[Row]:
        index = 0
        with self.path.open("rb") as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue  # blank lines (a trailing newline) are not rows
                try:
                    obj = json.loads(line.decode("utf-8", errors="surrogateescape"))
                except json.JSONDecodeError as exc:
                    raise UsageError(f"{self._where(line_no)}: not valid JSON "
                                     f"({exc.msg} at column {exc.colno})") from None
                if not isinstance(obj, dict):
                    raise UsageError(f"{self._where(line_no)}: expected a JSON object, "
                                     f"found {type(obj).__name__}")
                for col in filter(None, (self.column, self.id_column)):
                    if col not in obj:
                        raise UsageError(f"{self._where(line_no)}: no column {col!r} "
                                         f"(keys: {', '.join(map(str, obj)) or 'none'})")
                key = index if self.id_column is None else self._id(obj[self.id_column], line_no)
                yield Row(line_no, key, as_text(obj[self.column]))
                index += 1

    def _csv(self) -> Iterator[Row]:
        csv.field_size_limit(2**31 - 1)  # documents are longer than csv's 128 KiB default
        with self.path.open(encoding="utf-8", errors="surrogateescape", newline="") as f:
            reader = csv.reader(f)
            try:
                header = next(reader, None) or []
                where = {name: i for i, name in enumerate(header)}
                for col in filter(None, (self.column, self.id_column)):
                    if col not in where:
                        raise UsageError(f"{self.path}: no column {col!r} in the header "
                                         f"(columns: {', '.join(header) or 'none'})")
                self.id_kind = self.id_kind or "str"
                for index, fields in enumerate(reader):
                    if len(fields) != len(header):
                        raise UsageError(f"{self._where(reader.line_num)}: expected {len(header)} fields, "
                                         f"found {len(fields)}")
                    key = index if self.id_column is None else self._id(fields[where[self.id_column]],
                                                                        reader.line_num)
                    yield Row(reader.line_num, key, as_text(fields[where[self.column]]))
            except csv.Error as exc:
                raise UsageError(f"{self._where(reader.line_num)}: malformed CSV ({exc})") from None

    def _parquet_file(self) -> Any:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(self.path)
        except (pa.ArrowException, OSError) as exc:
            raise UsageError(f"{self.path}: not a readable Parquet file ({exc})") from None
        names = pf.schema_arrow.names
        for col in filter(None, (self.column, self.id_column)):
            if col not in names:
                raise UsageError(f"{self.path}: no column {col!r} (columns: {', '.join(names)})")
        return pf

    def _parquet_scan(self) -> int:
        import pyarrow as pa

        pf = self._parquet_file()
        if self.id_column is not None:
            typ = pf.schema_arrow.field(self.id_column).type
            if not (pa.types.is_integer(typ) or pa.types.is_string(typ) or pa.types.is_large_string(typ)):
                raise UsageError(f"{self.path}: id column {self.id_column!r} is {typ}; "
                                 "ids must be integers or strings")
            self.id_kind = "int" if pa.types.is_integer(typ) else "str"
        return pf.metadata.num_rows

    def _parquet(self) -> Iterator[Row]:
        pf = self._parquet_file()
        columns = [self.column] + ([self.id_column] if self.id_column else [])
        index = 0
        for batch in pf.iter_batches(batch_size=_BATCH, columns=list(dict.fromkeys(columns))):
            texts = batch.column(self.column).to_pylist()
            ids = batch.column(self.id_column).to_pylist() if self.id_column else range(index, index + len(texts))
            for text, key in zip(texts, ids):
                key = key if self.id_column is None else self._id(key, index + 1)
                yield Row(index + 1, key, as_text(text))
                index += 1
