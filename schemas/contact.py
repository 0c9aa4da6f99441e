"""A person's contact details, as found in signatures, cards and CRM notes."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Contact(BaseModel):
    name: str = Field(max_length=80, description="the person's full name")
    title: str | None = Field(None, max_length=80, description="job title")
    company: str | None = Field(None, max_length=100, description="employer or organisation")
    email: str | None = Field(None, max_length=100, pattern=r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$",
                              description="e-mail address")
    phone: str | None = Field(None, max_length=30, description="phone number as written")
    address: str | None = Field(None, max_length=160, description="postal address")
