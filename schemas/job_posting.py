"""A job advertisement."""

from __future__ import annotations

from decimal import Decimal
from enum import Enum
from typing import Literal

from pydantic import BaseModel, Field


class EmploymentType(str, Enum):
    full_time = "full_time"
    part_time = "part_time"
    contract = "contract"
    internship = "internship"


class Salary(BaseModel):
    minimum: Decimal | None = Field(None, max_digits=10, decimal_places=2)
    maximum: Decimal | None = Field(None, max_digits=10, decimal_places=2)
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$")
    period: Literal["hour", "month", "year"] | None = None


class JobPosting(BaseModel):
    title: str = Field(max_length=100, description="the role being hired for")
    company: str = Field(max_length=100, description="hiring company")
    location: str | None = Field(None, max_length=100, description="city or region; 'remote' if remote")
    employment_type: EmploymentType | None = Field(None, description="kind of contract")
    remote: bool = Field(False, description="true when the role can be done remotely")
    salary: Salary | None = Field(None, description="pay range when stated")
    skills: list[str] = Field(default_factory=list, max_length=15, description="required skills")
    contact_email: str | None = Field(None, max_length=100, description="where to apply")
