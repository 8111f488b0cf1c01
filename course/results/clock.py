"""The time stamp every result file and figure carries: when it was measured or written."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> str:
    """The current time, as stored in result files (UTC, ISO 8601, seconds)."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()
