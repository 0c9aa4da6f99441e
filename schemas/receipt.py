"""A shop receipt: the four key fields of the SROIE benchmark, plus the items."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from pydantic import BaseModel, Field


class ReceiptItem(BaseModel):
    name: str = Field(max_length=80, description="item as printed")
    quantity: Decimal | None = Field(None, max_digits=8, decimal_places=3)
    price: Decimal | None = Field(None, max_digits=10, decimal_places=2, description="line amount")


class Receipt(BaseModel):
    company: str = Field(max_length=120, description="name of the shop or company that issued the receipt")
    date: dt.date | None = Field(None, description="date of purchase")
    address: str | None = Field(None, max_length=200, description="the shop's address")
    items: list[ReceiptItem] = Field(default_factory=list, max_length=25, description="purchased items")
    total: Decimal = Field(max_digits=10, decimal_places=2, description="final amount paid, after rounding")
