"""Real-model tier: the bundled fine-tuned model gets the values right, not just the types.

The texts below were written for this test (none is in any training set);
the expected values are what a person reads off the text.
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


def test_invoice_values(real_extractor):
    inv = real_extractor.extract((EXAMPLES / "invoice.txt").read_text(), Invoice)
    assert inv.invoice_number == "INV-2024-0117"
    assert (inv.issue_date, inv.due_date) == (dt.date(2024, 3, 5), dt.date(2024, 4, 4))
    assert inv.seller == "NORTHWIND TRADING LTD"
    assert inv.buyer is not None and inv.buyer.startswith("Contoso Analytics GmbH")
    assert inv.currency == "GBP"
    assert (inv.subtotal, inv.tax, inv.total) == (Decimal("2238.40"), Decimal("447.68"), Decimal("2686.08"))
    assert [item.amount for item in inv.line_items] == [Decimal("1200"), Decimal("900"), Decimal("138.40")]


def test_receipt_values(real_extractor):
    rec = real_extractor.extract(RECEIPT, Receipt)
    assert rec.company == "KEDAI RUNCIT SRI MAWAR"
    assert rec.date == dt.date(2019, 7, 14)
    assert rec.total == Decimal("29.60")
    assert rec.address is not None and "SHAH ALAM" in rec.address


def test_contact_values(real_extractor):
    c = real_extractor.extract((EXAMPLES / "contact.txt").read_text(), Contact)
    assert c.name == "Maria Gonzalez"
    assert c.title == "Head of Procurement"
    assert c.company == "Lumen Robotics S.L."
    assert c.email == "maria.gonzalez@lumenrobotics.es"
    assert c.phone == "+34 912 345 678"
