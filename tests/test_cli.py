"""The CLI without a model: help, schemas, check, and usage errors (fast tier)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from extractkit._cli import app

runner = CliRunner()
DOCS = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def test_help_answers_without_importing_torch():
    code = ("import sys; from extractkit._cli import app; from typer.testing import CliRunner; "
            "r = CliRunner().invoke(app, ['--help']); print(r.exit_code, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "False"]


def test_schemas_list_and_show():
    listed = runner.invoke(app, ["schemas", "list"])
    assert listed.exit_code == 0
    assert [line.split("\t")[0] for line in listed.stdout.splitlines()] == \
        ["contact", "event", "invoice", "job_posting", "receipt"]
    shown = runner.invoke(app, ["schemas", "show", "invoice"])
    assert json.loads(shown.stdout)["title"] == "Invoice"


def test_check_reports_enforced_validated_and_unsupported(tmp_path):
    ok = runner.invoke(app, ["check", "event"])
    assert ok.exit_code == 0 and "ISO time HH:MM:SS" in ok.stdout
    bad = tmp_path / "bad.schema.json"
    bad.write_text(json.dumps({"type": "object", "properties": {
        "tags": {"type": "object", "additionalProperties": {"type": "string"}},
        "n": {"type": "integer", "multipleOf": 3}}}))
    out = runner.invoke(app, ["check", str(bad)])
    assert out.exit_code == 1
    assert re.search(r"tags\s+UNSUPPORTED", out.stdout) and "multipleOf" in out.stdout


def test_unknown_or_unsupported_schema_fails_before_loading_a_model(tmp_path):
    out = runner.invoke(app, ["extract", "--schema", "nope", "x.txt"])
    assert out.exit_code == 2 and "unknown schema 'nope'" in out.stderr
    bad = tmp_path / "bad.schema.json"
    bad.write_text(json.dumps({"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 3}}}))
    out = runner.invoke(app, ["extract", "--schema", str(bad), "x.txt"])
    assert out.exit_code == 2 and "multipleOf" in out.stderr and "(at n)" in out.stderr


def _usage_lines(args: list[str]) -> str:
    return runner.invoke(app, args + ["--help"], terminal_width=100).stdout


def test_docs_cli_reference_is_in_sync_with_help():
    text = DOCS.read_text()
    for args in ([], ["extract"], ["check"], ["schemas"], ["schemas", "show"], ["finetune"], ["eval"], ["export"]):
        for option in re.findall(r"--[a-z][a-z-]+", _usage_lines(args)):
            assert option in text, f"docs/cli.md does not document {option} of {' '.join(args) or 'extractkit'}"
    for command in ("extract", "check", "schemas list", "schemas show", "finetune", "eval", "export"):
        assert f"extractkit {command}" in text


def test_finetune_needs_data_and_refuses_to_overwrite(tmp_path):
    out = runner.invoke(app, ["finetune", "--schema", "contact", "--out", str(tmp_path / "a")])
    assert out.exit_code == 2 and "--data FILE and/or --synthesize N" in out.stderr
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "manifest.json").write_text("{}")
    out = runner.invoke(app, ["finetune", "--schema", "contact", "--synthesize", "4", "--out", str(tmp_path / "a")])
    assert out.exit_code == 2 and "already holds a trained adapter" in out.stderr


def test_adapter_and_base_exclude_each_other(tmp_path):
    out = runner.invoke(app, ["extract", "--schema", "contact", "--base", "--adapter", str(tmp_path), "x.txt"])
    assert out.exit_code == 2 and "exclude each other" in out.stderr


def test_export_checks_format_and_quant_before_loading_a_model(tmp_path):
    out = runner.invoke(app, ["export", "--format", "hf", "--quant", "q8_0", "--out", str(tmp_path / "x")])
    assert out.exit_code == 2 and "--quant applies to --format gguf only" in out.stderr
    out = runner.invoke(app, ["export", "--format", "gguf", "--quant", "q4_k", "--out", str(tmp_path / "x.gguf")])
    assert out.exit_code == 2 and "unknown --quant 'q4_k'" in out.stderr
    out = runner.invoke(app, ["export", "--format", "onnx", "--out", str(tmp_path / "x")])
    assert out.exit_code == 2 and "supported: hf, gguf" in out.stderr
    assert not list(tmp_path.iterdir())
