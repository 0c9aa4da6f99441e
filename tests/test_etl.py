"""ETL (fast tier): streaming extract_many, Arrow typing, input files, jobs, frames - real pyarrow/pandas."""

from __future__ import annotations

import datetime as dt
import enum
import itertools
import json
from decimal import Decimal
from typing import Literal, Optional, Union

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import BaseModel, Field

import extractkit
from extractkit import Extractor, InputError, UsageError
from extractkit._arrow import output_schema, results_table
from extractkit._extractor import CHUNK_BATCHES
from extractkit._job import JobConfig, parts_dir, run_job
from extractkit._rows import RowSource
from extractkit._schema import as_output_schema
from extractkit.testing import FakeBackend

QUIET = JobConfig(progress=False)


class Shade(enum.Enum):
    light = "light"
    dark = "dark"


class Part(BaseModel):
    label: str = Field(max_length=5)
    weight: float


class A(BaseModel):
    kind: Literal["a"]
    x: int


class B(BaseModel):
    kind: Literal["b"]
    y: bool


class AllTypes(BaseModel):
    name: str = Field(max_length=6)
    n: int
    ratio: float
    amount: Decimal = Field(max_digits=5, decimal_places=2)
    ok: bool
    shade: Shade
    mode: Literal["on", "off"]
    level: Literal[1, 2]
    day: dt.date
    at: dt.datetime
    clock: dt.time
    maybe: Optional[str] = Field(None, max_length=4)
    tags: list[str] = Field(max_length=2)
    parts: list[Part] = Field(max_length=2)
    part: Part
    either: Union[A, B]
    mixed: Union[int, str]


EXAMPLE = AllTypes(name="Ann", n=-3, ratio=0.5, amount=Decimal("12.50"), ok=True, shade=Shade.dark, mode="on",
                   level=2, day=dt.date(2024, 3, 5), at=dt.datetime(2024, 3, 5, 14, 30,
                                                                  tzinfo=dt.timezone(dt.timedelta(hours=2))),
                   clock=dt.time(9, 5), tags=["x"], parts=[Part(label="ab", weight=1.5)],
                   part=Part(label="c", weight=2.0), either=B(kind="b", y=False), mixed="seven")


def test_arrow_schema_covers_every_supported_type():
    schema = output_schema(as_output_schema(AllTypes), pa.string())
    part = pa.struct([("label", pa.string()), ("weight", pa.float64())])
    assert dict(zip(schema.names, schema.types)) == {
        "_id": pa.string(), "name": pa.string(), "n": pa.int64(), "ratio": pa.float64(),
        "amount": pa.decimal128(5, 2), "ok": pa.bool_(), "shade": pa.string(), "mode": pa.string(),
        "level": pa.int64(), "day": pa.date32(), "at": pa.timestamp("us"), "clock": pa.time64("us"),
        "maybe": pa.string(), "tags": pa.list_(pa.string()), "parts": pa.list_(part), "part": part,
        "either": pa.struct([("kind", pa.string()), ("x", pa.int64()), ("y", pa.bool_())]),
        "mixed": pa.string(), "_error": pa.string(), "_ms": pa.float64()}


def test_a_json_schema_file_gives_the_same_columns_as_its_model():
    from_model = output_schema(as_output_schema(AllTypes))
    from_json = output_schema(as_output_schema(json.loads(json.dumps(as_output_schema(AllTypes).json_schema))))
    assert from_model == from_json


def test_values_become_typed_cells():
    schema = output_schema(as_output_schema(AllTypes), pa.int64())
    table = results_table([extractkit.Result(index=0, value=EXAMPLE, id=7, seconds=0.25),
                           extractkit.Result(index=1, error=InputError("empty"), id=8)], schema)
    good, bad = table.to_pylist()
    assert good["amount"] == Decimal("12.50") and good["day"] == dt.date(2024, 3, 5)
    assert good["at"] == dt.datetime(2024, 3, 5, 12, 30)  # offsets are stored as UTC
    assert good["clock"] == dt.time(9, 5) and good["shade"] == "dark" and good["level"] == 2
    assert good["parts"] == [{"label": "ab", "weight": 1.5}]
    assert good["either"] == {"kind": "b", "x": None, "y": False} and good["mixed"] == "seven"
    assert good["_error"] is None and good["_ms"] == 250.0 and good["_id"] == 7
    assert bad["_error"] == "InputError: empty" and bad["name"] is None


def test_reserved_names_and_schemas_without_fields_are_schema_errors():
    from extractkit import SchemaError

    with pytest.raises(SchemaError, match="reserved"):
        output_schema(as_output_schema({"type": "object", "properties": {"_error": {"type": "string"}}}))
    with pytest.raises(SchemaError, match="object schema with properties"):
        output_schema(as_output_schema({"type": "object"}))


# ------------------------------------------------------------------- streaming
def test_extract_many_is_lazy_bounded_and_carries_ids():
    pulled = itertools.count()

    def rows():
        for i in itertools.count():  # endless: only a lazy consumer can finish
            next(pulled)
            yield f"id{i}", f"text {i}"

    stream = Extractor(FakeBackend()).extract_many(rows(), Part, batch_size=2)
    first = list(itertools.islice(stream, 3))
    assert [r.id for r in first] == ["id0", "id1", "id2"] and [r.index for r in first] == [0, 1, 2]
    assert next(pulled) <= 2 * CHUNK_BATCHES  # read at most one chunk ahead
    assert [r.id for r in Extractor(FakeBackend()).extract_many(["a", "b"], Part)] == [0, 1]


def test_extract_many_checks_the_schema_before_reading_any_input():
    class Bad(BaseModel):
        data: dict[str, int]

    def never():
        raise AssertionError("input was read")
        yield  # pragma: no cover

    with pytest.raises(extractkit.SchemaError):
        Extractor(FakeBackend()).extract_many(never(), Bad)


# ------------------------------------------------------------------ input files
def _jsonl(path, rows):
    path.write_bytes(b"".join(r if isinstance(r, bytes) else (json.dumps(r) + "\n").encode() for r in rows))
    return path


@pytest.mark.parametrize("content, message", [
    ([{"text": "a"}, b'{"text": "b"\n'], ":2: not valid JSON"),
    ([{"text": "a"}, {"body": "b"}], ":2: no column 'text' (keys: body)"),
    ([{"text": "a"}, [1, 2]], ":2: expected a JSON object"),
])
def test_malformed_jsonl_names_file_and_line(tmp_path, content, message):
    path = _jsonl(tmp_path / "in.jsonl", content)
    with pytest.raises(UsageError, match=f"in.jsonl{message}".replace("(", r"\(").replace(")", r"\)")):
        RowSource(path, "text").scan()


def test_id_columns_must_be_present_and_of_one_kind(tmp_path):
    path = _jsonl(tmp_path / "in.jsonl", [{"id": 1, "text": "a"}, {"id": "2", "text": "b"}])
    with pytest.raises(UsageError, match=r"in.jsonl:2: id column 'id' holds a str, earlier rows a int"):
        RowSource(path, "text", "id").scan()
    with pytest.raises(UsageError, match=r":1: no column 'key'"):
        RowSource(path, "text", "key").scan()


def test_csv_and_parquet_name_the_missing_column_or_bad_line(tmp_path):
    (tmp_path / "in.csv").write_text("id,body\n1,hello\n")
    with pytest.raises(UsageError, match=r"in.csv: no column 'text' in the header \(columns: id, body\)"):
        RowSource(tmp_path / "in.csv", "text").scan()
    (tmp_path / "ragged.csv").write_text("id,text\n1,hello\n2,a,b\n")
    with pytest.raises(UsageError, match=r"ragged.csv:3: expected 2 fields, found 3"):
        RowSource(tmp_path / "ragged.csv", "text").scan()
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "in.parquet")
    with pytest.raises(UsageError, match=r"in.parquet: no column 'text' \(columns: body\)"):
        RowSource(tmp_path / "in.parquet", "text").scan()
    with pytest.raises(UsageError, match="unknown input format '.txt'"):
        RowSource(tmp_path / "in.txt", "text")


def test_rows_stream_with_ids_and_flag_undecodable_text(tmp_path):
    (tmp_path / "in.csv").write_bytes(b"key,text\na,hello\nb,caf\xe9\n")
    rows = list(RowSource(tmp_path / "in.csv", "text", "key").rows())
    assert [(r.line, r.id, r.text) for r in rows[:1]] == [(2, "a", "hello")]
    assert isinstance(rows[1].text, InputError) and "not valid UTF-8" in str(rows[1].text)
    pq.write_table(pa.table({"text": [b"ok", b"\xff"], "n": [10, 11]}), tmp_path / "in.parquet")
    rows = list(RowSource(tmp_path / "in.parquet", "text", "n").rows(skip=1))
    assert [r.id for r in rows] == [11] and isinstance(rows[0].text, InputError)


# ------------------------------------------------------------------------- jobs
def _echo_backend():
    """A fake model that copies the text into `label` (so values are checkable), and fails on 'BAD'."""
    def respond(prompt):
        text = prompt.split("Text:\n")[1].split("\nJSON:")[0]
        weight = 1000 if "BAD" in text else len(text)
        return {"label": text[:5], "weight": weight}
    return FakeBackend(respond)


class Checked(BaseModel):
    label: str = Field(max_length=5)
    weight: float = Field(le=100)


def _bad_rows_file(tmp_path):
    return _jsonl(tmp_path / "in.jsonl", [
        {"id": "ok1", "text": "hello"}, {"id": "empty", "text": ""}, {"id": "ws", "text": " \n\t"},
        b'{"id": "latin1", "text": "caf\xe9"}\n', {"id": "null", "text": None}, {"id": "long", "text": "w " * 80_000},
        {"id": "invalid", "text": "BAD row"}, {"id": "ok2", "text": "world"}, b"\n"])


@pytest.mark.parametrize("suffix", ["parquet", "jsonl"])
def test_bad_rows_become_error_rows_and_the_job_finishes(tmp_path, suffix):
    out = tmp_path / f"out.{suffix}"
    summary = run_job(Extractor(_echo_backend()), as_output_schema(Checked),
                      RowSource(_bad_rows_file(tmp_path), "text", "id"), out, QUIET)
    assert (summary.rows, summary.failed) == (8, 6)
    assert summary.line == f"2 ok, 6 failed (8 rows -> {out})"
    rows = pq.read_table(out).to_pylist() if suffix == "parquet" else \
        [json.loads(line) for line in out.read_text().splitlines()]
    errors = {r["_id"]: r["_error"] for r in rows}
    assert [r["_id"] for r in rows] == ["ok1", "empty", "ws", "latin1", "null", "long", "invalid", "ok2"]
    assert errors["ok1"] is None and rows[0]["label"] == "hello" and rows[0]["weight"] == 5.0
    assert "empty or only whitespace" in errors["empty"] and "empty" in errors["ws"]
    assert "not valid UTF-8" in errors["latin1"] and "missing (null)" in errors["null"]
    assert "too long" in errors["long"]
    assert errors["invalid"].startswith("InvalidOutputError: output does not validate as Checked: weight")
    assert not parts_dir(out).exists()


def test_a_job_refuses_to_clobber_and_resume_refuses_another_job(tmp_path):
    src = _jsonl(tmp_path / "in.jsonl", [{"text": f"row {i}"} for i in range(5)])
    out = tmp_path / "out.parquet"
    ex, schema = Extractor(FakeBackend()), as_output_schema(Part)
    run_job(ex, schema, RowSource(src, "text"), out, QUIET)
    with pytest.raises(UsageError, match="already exists: use --overwrite"):
        run_job(ex, schema, RowSource(src, "text"), out, QUIET)
    with pytest.raises(UsageError, match="already complete"):
        run_job(ex, schema, RowSource(src, "text"), out, JobConfig(resume=True, progress=False))
    assert run_job(ex, schema, RowSource(src, "text"), out, JobConfig(overwrite=True, progress=False)).rows == 5
    # an unfinished job (its parts folder) is neither clobbered nor resumed by a different job
    parts_dir(out).mkdir()
    (parts_dir(out) / "manifest.json").write_text(json.dumps({"schema_digest": "other"}))
    with pytest.raises(UsageError, match="holds an unfinished job: --resume"):
        run_job(ex, schema, RowSource(src, "text"), out, QUIET)
    with pytest.raises(UsageError, match="belongs to a different job"):
        run_job(ex, schema, RowSource(src, "text"), out, JobConfig(resume=True, progress=False))


def test_a_malformed_file_stops_the_job_before_any_work(tmp_path):
    src = _jsonl(tmp_path / "in.jsonl", [{"text": "a"}] * 3 + [b"{oops\n"])
    fake = FakeBackend()
    with pytest.raises(UsageError, match=r"in.jsonl:4: not valid JSON"):
        run_job(Extractor(fake), as_output_schema(Part), RowSource(src, "text"), tmp_path / "o.parquet", QUIET)
    assert fake.prompts == [] and not parts_dir(tmp_path / "o.parquet").exists()


def test_resume_skips_committed_chunks_and_matches_an_uninterrupted_run(tmp_path):
    src = _jsonl(tmp_path / "in.jsonl", [{"text": f"row {i}"} for i in range(10)])
    schema, config = as_output_schema(Part), JobConfig(chunk_rows=3, progress=False)
    run_job(Extractor(_echo_backend()), schema, RowSource(src, "text"), tmp_path / "full.parquet", config)

    def dies_at_row_7(prompt):
        if "row 7" in prompt:
            raise RuntimeError("power cut")
        return {"label": "x", "weight": 1}

    out = tmp_path / "out.parquet"
    with pytest.raises(RuntimeError, match="power cut"):
        run_job(Extractor(FakeBackend(dies_at_row_7)), schema, RowSource(src, "text"), out, config)
    assert sorted(p.name for p in parts_dir(out).iterdir()) == \
        ["manifest.json", "part-000000.parquet", "part-000001.parquet"]
    (parts_dir(out) / "part-000002.parquet.tmp").write_bytes(b"half a file")
    again = _echo_backend()
    summary = run_job(Extractor(again), schema, RowSource(src, "text"), out,
                      JobConfig(chunk_rows=3, resume=True, progress=False))
    assert summary.resumed_from == 6 and summary.rows == 10
    assert [p.split("Text:\n")[1].split("\n")[0] for p in again.prompts] == [f"row {i}" for i in range(6, 10)]
    resumed, full = pq.read_table(out), pq.read_table(tmp_path / "full.parquet")
    assert resumed.column("_id").to_pylist() == list(range(10))
    assert resumed.drop_columns(["label"]).slice(6).equals(full.drop_columns(["label"]).slice(6))
    assert resumed.slice(6).equals(full.slice(6)) and not parts_dir(out).exists()


def test_cli_job_mode_runs_a_table_and_reports(tmp_path, tiny_dir):
    from typer.testing import CliRunner

    from extractkit._cli import app

    schema = tmp_path / "n.schema.json"
    schema.write_text(json.dumps({"title": "N", "type": "object", "required": ["n"],
                                  "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 99}}}))
    src = tmp_path / "in.csv"
    src.write_text("key,text\n" + "".join(f"k{i},row {i}\n" for i in range(6)) + "k6,\n")
    out = tmp_path / "out.parquet"
    args = ["extract", "-s", str(schema), "--model", str(tiny_dir), "--base", "--input", str(src),
            "--column", "text", "--id-column", "key", "--output", str(out), "--chunk-rows", "4"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.stderr  # one empty row
    assert "6 ok, 1 failed (7 rows" in result.stderr
    table = pq.read_table(out)
    assert table.column("_id").to_pylist() == [f"k{i}" for i in range(7)]
    assert table.schema.field("n").type == pa.int64()
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "--overwrite" in again.stderr
    both = CliRunner().invoke(app, args + ["somefile.txt"])
    assert both.exit_code == 2 and "instead of FILES" in both.stderr
    stray = CliRunner().invoke(app, ["extract", "-s", str(schema), "--resume", "somefile.txt"])
    assert stray.exit_code == 2 and "job mode takes --input" in stray.stderr
    no_out = CliRunner().invoke(app, ["extract", "-s", str(schema), "--input", str(src)])
    assert no_out.exit_code == 2 and "--input needs --output" in no_out.stderr


# ----------------------------------------------------------------------- frames
def test_extract_frame_returns_typed_columns_on_the_same_index():
    df = pd.DataFrame({"text": ["hello", "", None, "BAD x"]}, index=[10, 11, 12, 13])
    out = extractkit.extract_frame(df, "text", Checked, extractor=Extractor(_echo_backend()))
    assert list(out.columns) == ["label", "weight", "_error", "_ms"] and list(out.index) == [10, 11, 12, 13]
    assert str(out["weight"].dtype) == "double[pyarrow]"
    assert out.loc[10, "label"] == "hello" and pd.isna(out.loc[10, "_error"])
    assert out["_error"].notna().tolist() == [False, True, True, True]
    with pytest.raises(UsageError, match="no column 'body'"):
        extractkit.extract_frame(df, "body", Checked, extractor=Extractor(_echo_backend()))


def test_extract_frame_keeps_nested_types():
    df = pd.DataFrame({"text": ["x"]})
    out = extractkit.extract_frame(df, "text", AllTypes, extractor=Extractor(FakeBackend([EXAMPLE])))
    assert out.loc[0, "day"] == dt.date(2024, 3, 5)
    assert out.loc[0, "parts"] == [{"label": "ab", "weight": 1.5}]
    assert pa.types.is_struct(out["part"].dtype.pyarrow_dtype)


@pytest.mark.parametrize("suffix", ["parquet", "jsonl"])
def test_a_parquet_job_keeps_every_type_through_parts_and_join(tmp_path, suffix):
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"doc": pa.array([10, 11, 12], pa.int32()), "body": ["a", "b", "c"]}), src)
    out = tmp_path / f"out.{suffix}"
    summary = run_job(Extractor(FakeBackend([EXAMPLE] * 3)), as_output_schema(AllTypes),
                      RowSource(src, "body", "doc"), out, JobConfig(chunk_rows=2, progress=False))
    assert (summary.rows, summary.failed) == (3, 0)
    if suffix == "parquet":
        table = pq.read_table(out)
        assert table.schema == output_schema(as_output_schema(AllTypes), pa.int64())
        assert table.column("_id").to_pylist() == [10, 11, 12]
        assert table.slice(2).to_pylist()[0]["amount"] == Decimal("12.50")
    else:
        row = json.loads(out.read_text().splitlines()[2])
        assert row["_id"] == 12 and row["amount"] == 12.5 and row["day"] == "2024-03-05"
        assert row["at"] == "2024-03-05T12:30:00" and row["either"] == {"kind": "b", "x": None, "y": False}


def test_extract_frame_on_polars_returns_polars():
    pl = pytest.importorskip("polars")
    df = pl.DataFrame({"text": ["hello", "", "BAD x"]})
    out = extractkit.extract_frame(df, "text", Checked, extractor=Extractor(_echo_backend()))
    assert isinstance(out, pl.DataFrame) and out.columns == ["label", "weight", "_error", "_ms"]
    assert out["weight"].dtype == pl.Float64 and out["label"].to_list() == ["hello", None, None]
    assert out["_error"].is_null().to_list() == [True, False, False]
