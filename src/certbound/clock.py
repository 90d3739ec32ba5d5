"""The clock every time-dependent decision reads, so tests can pin time."""

from __future__ import annotations

import datetime as dt
from typing import Protocol


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


class FixedClock:
    """A clock that stands still until moved; for tests and `verify --at`."""

    def __init__(self, at: dt.datetime) -> None:
        self._at = as_utc(at)

    def now(self) -> dt.datetime:
        return self._at

    def advance(self, delta: dt.timedelta) -> None:
        self._at += delta


def as_utc(value: dt.datetime) -> dt.datetime:
    """Attach UTC to a naive datetime; convert an aware one to UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def parse_rfc3339(text: str) -> dt.datetime:
    """Parse an RFC 3339 timestamp (``Z`` or an offset); naive input is taken as UTC."""
    return as_utc(dt.datetime.fromisoformat(text.strip().replace("z", "Z")))


def format_rfc3339(value: dt.datetime) -> str:
    return as_utc(value).isoformat().replace("+00:00", "Z")
