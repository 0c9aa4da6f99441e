"""Held-out test schemas: never used to synthesize training data, never trained on.

These five models exist only to measure how well the fine-tuned model
generalizes to schemas it has not seen. Their hand-written evaluation texts
live in ``finetune/data/unseen/<snake_name>.jsonl`` (see the README there).
Do not add them to any training recipe or synthesis template: once a schema
(or a close copy of it) is trained on, its scores stop meaning "unseen".

    from extractkit.finetune.recipes.unseen_schemas import UNSEEN_SCHEMAS
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field


class Prescription(BaseModel):
    """A medication prescription for one patient."""

    patient_name: str = Field(max_length=100, description="full name of the patient the medication is for")
    medication: str = Field(max_length=120, description="name of the prescribed drug, as written")
    dose_mg: Decimal = Field(max_digits=8, decimal_places=3, description="amount of one dose, in milligrams")
    frequency: str = Field(max_length=80, description="how often the dose is taken, as written")
    start_date: dt.date = Field(description="date the patient starts taking the medication")
    refills: int = Field(ge=0, le=99, description="number of refills allowed; 0 if none")
    prescriber: str = Field(max_length=100, description="name of the doctor or clinician who prescribed it")


class CarService(BaseModel):
    """A service or repair visit for a car at a workshop."""

    license_plate: str = Field(max_length=20, description="the car's registration number, as written")
    mileage_km: int = Field(ge=0, le=2_000_000, description="odometer reading at the service, in kilometres")
    service_date: dt.date = Field(description="date the service was carried out")
    services: list[str] = Field(max_length=20, description="each job done on the car, as written")
    total_cost: Decimal = Field(max_digits=10, decimal_places=2, description="total amount charged for the visit")
    workshop: str = Field(max_length=120, description="name of the garage or workshop that did the work")


class BookReference(BaseModel):
    """A bibliographic reference to a published book."""

    title: str = Field(max_length=200, description="the book's title, as written")
    authors: list[str] = Field(max_length=10, description="each author's name, in the order given")
    year: int = Field(ge=1450, le=2100, description="year of publication")
    publisher: str | None = Field(None, max_length=120, description="the publishing house")
    isbn: str | None = Field(None, max_length=13, pattern=r"^97[89]\d{10}$",
                             description="ISBN-13, digits only, no hyphens or spaces")


class RentalListing(BaseModel):
    """An advertisement for a flat or house to rent."""

    address: str = Field(max_length=200, description="street address of the property, as written")
    monthly_rent: Decimal = Field(max_digits=10, decimal_places=2, description="rent per month")
    bedrooms: int = Field(ge=0, le=20, description="number of bedrooms; 0 for a studio")
    available_from: dt.date = Field(description="first date a tenant can move in")
    pets_allowed: bool = Field(description="whether pets are allowed")
    deposit: Decimal | None = Field(None, max_digits=10, decimal_places=2, description="security deposit amount")


Carrier = Literal["DHL", "UPS", "FedEx", "USPS", "Royal Mail", "DPD"]


class ParcelTracking(BaseModel):
    """The tracking details of one shipped parcel."""

    tracking_number: str = Field(max_length=40, description="the carrier's tracking number, as written")
    carrier: Carrier = Field(description="the delivery company carrying the parcel")
    shipped_on: dt.date = Field(description="date the parcel was shipped")
    estimated_delivery: dt.date | None = Field(None, description="expected delivery date, if given")
    weight_kg: Decimal = Field(max_digits=7, decimal_places=3, description="parcel weight in kilograms")
    destination_city: str = Field(max_length=80, description="city the parcel is going to")


UNSEEN_SCHEMAS: dict[str, type[BaseModel]] = {
    "prescription": Prescription,
    "car_service": CarService,
    "book_reference": BookReference,
    "rental_listing": RentalListing,
    "parcel_tracking": ParcelTracking,
}
"""Each held-out schema by the stem of its data file in ``finetune/data/unseen/``."""
