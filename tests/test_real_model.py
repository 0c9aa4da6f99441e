"""Real-model tier: the 270M base model from PyPI, end to end (library and CLI)."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from extractkit import InputError
from extractkit.schemas import Contact, Invoice, Receipt

pytestmark = pytest.mark.real_model
EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"


class Address(BaseModel):
    street: str | None = Field(None, max_length=80)
    city: str | None = Field(None, max_length=40)
    country: str | None = Field(None, max_length=40)


class Person(BaseModel):
    name: str = Field(max_length=60, description="full name")
    role: str | None = Field(None, max_length=60, description="job title")


class Company(BaseModel):
    name: str = Field(max_length=80, description="the company's name")
    address: Address
    people: list[Person] = Field(max_length=4, description="people named in the text")
    founded: int | None = Field(None, ge=1800, le=2100, description="year founded")


def test_invoice_receipt_and_contact_are_valid_instances(real_extractor):
    invoice = real_extractor.extract((EXAMPLES / "invoice.txt").read_text(), Invoice)
    receipt = real_extractor.extract((EXAMPLES / "receipt.txt").read_text(), Receipt)
    assert isinstance(invoice, Invoice) and isinstance(invoice.total, Decimal)
    assert isinstance(receipt, Receipt)
    results = list(real_extractor.extract_many([(EXAMPLES / "contact.txt").read_text(), "   "], Contact))
    assert isinstance(results[0].value, Contact)
    assert isinstance(results[1].error, InputError)


def test_a_user_defined_nested_schema(real_extractor):
    text = ("Lumen Robotics S.L. was founded in 2015 in Madrid, Spain (Calle de Alcala 120). "
            "CEO Maria Gonzalez and CTO Jon Arrieta lead the team.")
    company = real_extractor.extract(text, Company)
    assert isinstance(company, Company) and isinstance(company.address, Address)
    assert all(isinstance(p, Person) for p in company.people)


def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "extractkit", *args], input=stdin,
                          capture_output=True, text=True, timeout=600)


def test_cli_extracts_files_and_stdin_as_jsonl(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    out = _cli("extract", "--schema", "invoice", str(EXAMPLES / "invoice.txt"), str(empty))
    lines = out.stdout.strip().splitlines()
    assert out.returncode == 1, out.stderr  # one input failed
    assert len(lines) == 2
    Invoice.model_validate(json.loads(lines[0]))
    assert "InputError" in json.loads(lines[1])["_error"]
    assert "1 ok, 1 failed" in out.stderr

    out = _cli("extract", "--schema", "receipt", "-", stdin=(EXAMPLES / "receipt.txt").read_text())
    assert out.returncode == 0, out.stderr
    Receipt.model_validate(json.loads(out.stdout))
