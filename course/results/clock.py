"""The time stamp every result file and figure carries: when it was measured or written."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> str:
    """The current time, as stored in result files (UTC, ISO 8601, seconds)."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def utc_minute(stamp: str) -> str:
    """``2026-12-05T13:47:10+00:00`` as ``2026-12-05 13:47 UTC``; a stamp that is not one, as it is."""
    try:
        moment = datetime.fromisoformat(stamp).astimezone(UTC)
    except (TypeError, ValueError):
        return stamp or "at an unrecorded time"
    return moment.strftime("%Y-%m-%d %H:%M UTC")
