"""An invoice with line items."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from pydantic import BaseModel, Field

Money = Field(max_digits=12, decimal_places=2)


class LineItem(BaseModel):
    description: str = Field(max_length=120, description="what was sold, as written on the line")
    quantity: Decimal | None = Field(None, max_digits=10, decimal_places=3, description="number of units")
    unit_price: Decimal | None = Field(None, max_digits=12, decimal_places=2, description="price of one unit")
    amount: Decimal = Field(max_digits=12, decimal_places=2, description="line total")


class Invoice(BaseModel):
    invoice_number: str | None = Field(None, max_length=40, description="the invoice's identifier")
    issue_date: dt.date | None = Field(None, description="date the invoice was issued")
    due_date: dt.date | None = Field(None, description="date payment is due")
    seller: str = Field(max_length=120, description="company or person issuing the invoice")
    buyer: str | None = Field(None, max_length=120, description="company or person billed")
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$", description="ISO 4217 code such as USD or EUR")
    line_items: list[LineItem] = Field(default_factory=list, max_length=30, description="the invoiced lines")
    subtotal: Decimal | None = Field(None, max_digits=12, decimal_places=2, description="total before tax")
    tax: Decimal | None = Field(None, max_digits=12, decimal_places=2, description="tax amount")
    total: Decimal = Field(max_digits=12, decimal_places=2, description="amount due, tax included")
