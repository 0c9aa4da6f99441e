"""The worked example of docs/finetune.md: a schema that is not built in.

    PYTHONPATH=docs/examples/finetune extractkit finetune --schema warranty:WarrantyClaim ...
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from pydantic import BaseModel, Field


class WarrantyClaim(BaseModel):
    """A customer's warranty claim for a faulty product."""

    claim_number: str = Field(max_length=12, pattern=r"^WC-\d{5}$", description="the claim's reference, WC- and 5 digits")
    customer_name: str = Field(max_length=80, description="the customer who files the claim")
    product: str = Field(max_length=80, description="the product's name or model, as written")
    serial_number: str | None = Field(None, max_length=30, description="the unit's serial number")
    purchase_date: dt.date = Field(description="date the product was bought")
    defect: str = Field(max_length=160, description="the fault the customer reports, in their words")
    amount_claimed: Decimal | None = Field(None, max_digits=10, decimal_places=2,
                                           description="refund or repair amount asked for")
    under_warranty: bool = Field(description="whether the claim says the product is still under warranty")
