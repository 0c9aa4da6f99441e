"""A scheduled event: meetings, appointments, conferences."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field


class Event(BaseModel):
    title: str = Field(max_length=100, description="name of the event")
    date: dt.date | None = Field(None, description="day the event starts")
    start_time: dt.time | None = Field(None, description="local start time")
    end_time: dt.time | None = Field(None, description="local end time")
    location: str | None = Field(None, max_length=120, description="venue, room or address")
    organizer: str | None = Field(None, max_length=80, description="person or organisation hosting it")
    attendees: list[str] = Field(default_factory=list, max_length=20, description="named participants")
    online: bool = Field(False, description="true when held by video call or online")
