"""Real-model tier: the bundled fine-tuned model gets the values right, not just the types.

The texts below were written for this test (none is in any training set);
the expected values are what a person reads off the text. They are read in fp32
(`reference_extractor`): the default numerics are the fastest kernel of each CPU,
and on the 2-core AVX2 EPYC qint8 reads the first line's amount "1,200.00" as 1.2
where fp32, bf16 and int8 read 1200 - a near-tie that falls the other way on
other CPUs. Low precision is judged on SROIE dev instead (docs/performance.md).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from extractkit.schemas import Contact, Invoice, Receipt

pytestmark = pytest.mark.real_model
EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"

RECEIPT = """KEDAI RUNCIT SRI MAWAR
LOT 12, JALAN MERANTI 3,
TAMAN SRI MUDA, 40400 SHAH ALAM, SELANGOR
TEL 03-5510 2288
RECEIPT NO: 004512
DATE: 14/07/2019  TIME 18:42
MILO 1KG           1 X 17.90   17.90
GARDENIA BREAD     2 X  3.60    7.20
TELUR GRED A 10S   1 X  4.50    4.50
SUBTOTAL                        29.60
ROUNDING                         0.00
TOTAL RM                        29.60
CASH                            50.00
CHANGE                          20.40
TERIMA KASIH, SILA DATANG LAGI
"""


@pytest.fixture(scope="module")
def invoice(reference_extractor):
    return reference_extractor.extract((EXAMPLES / "invoice.txt").read_text(), Invoice)


@pytest.fixture(scope="module")
def contact(reference_extractor):
    return reference_extractor.extract((EXAMPLES / "contact.txt").read_text(), Contact)


def test_invoice_values(invoice):
    assert invoice.invoice_number == "INV-2024-0117"
    assert (invoice.issue_date, invoice.due_date) == (dt.date(2024, 3, 5), dt.date(2024, 4, 4))
    assert invoice.seller == "NORTHWIND TRADING LTD"
    assert invoice.buyer is not None and invoice.buyer.startswith("Contoso Analytics GmbH")
    assert (invoice.subtotal, invoice.total) == (Decimal("2238.40"), Decimal("2686.08"))
    assert [item.description for item in invoice.line_items] == [
        "Data pipeline audit", "On-site workshop (days)", "Travel expenses"]
    assert [item.quantity for item in invoice.line_items] == [1, 2, 1]
    assert [item.amount for item in invoice.line_items] == [Decimal("1200"), Decimal("900"), Decimal("138.40")]


# Known misses of the shipped adapter on these texts (docs/model-card.md, "Where it fails").
# strict=True: when a retrained adapter gets them right, these tests fail until the marks go.
@pytest.mark.xfail(strict=True, reason="reads 'VAT 20%' as the tax and misses the currency in 'TOTAL DUE (GBP)'")
def test_invoice_currency_and_tax(invoice):
    assert (invoice.currency, invoice.tax) == ("GBP", Decimal("447.68"))


@pytest.mark.xfail(strict=True, reason="reads '1,200.00' as 1.2 (thousands separator taken for a decimal point)")
def test_invoice_unit_price_with_thousands_separator(invoice):
    assert [item.unit_price for item in invoice.line_items] == [Decimal("1200"), Decimal("450"), Decimal("138.40")]


def test_receipt_values(reference_extractor):
    rec = reference_extractor.extract(RECEIPT, Receipt)
    assert rec.company == "KEDAI RUNCIT SRI MAWAR"
    assert rec.date == dt.date(2019, 7, 14)
    assert rec.total == Decimal("29.60")
    assert rec.address is not None and "SHAH ALAM" in rec.address


def test_contact_values(contact):
    assert contact.name == "Maria Gonzalez"
    assert contact.company == "Lumen Robotics S.L."
    assert contact.email == "maria.gonzalez@lumenrobotics.es"
    assert contact.address == "Calle de Alcala 120, 28009 Madrid"


@pytest.mark.xfail(strict=True, reason="writes title 'Procurement' (drops 'Head of') and no phone")
def test_contact_title_and_phone(contact):
    assert (contact.title, contact.phone) == ("Head of Procurement", "+34 912 345 678")
