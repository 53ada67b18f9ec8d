"""Times on screen: stored in UTC, shown in India Standard Time."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

IST = ZoneInfo("Asia/Kolkata")


def ist(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """Format an aware datetime in IST; naive values are refused, not guessed."""
    if value is None:
        return ""
    if value.tzinfo is None:
        raise ValueError("naive datetime: times must carry tzinfo")
    return value.astimezone(IST).strftime(fmt)
