"""Parsing what a measuring program prints.

Programs (and, later, kernel modules through the kernel log) print lines prefixed with
``course:`` between ordinary output; everything else is kept as text. The format is
documented in ``code/user/common/stamp.h``.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

PREFIX = re.compile(r"(?:^|\]\s*|:\s)course: (?P<body>.*)$")


class ProtocolError(ValueError):
    """A ``course:`` line that cannot be understood; the message quotes it."""


@dataclass
class RawMeasurement:
    """One measurement as printed: every sample, as value -> count."""

    name: str
    unit: str
    samples: int
    subtract: str | None
    counts: dict[int, int] = field(default_factory=dict)
    per: int = 1  # runs of the code timed by each sample


@dataclass
class ProgramOutput:
    """Everything one run of a program printed, sorted out."""

    measurements: dict[str, RawMeasurement] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)
    text: list[str] = field(default_factory=list)
    # exercise name -> (verdict, detail); verdict ok, fail, or na (cannot be checked on this machine)
    checks: dict[str, tuple[str, str]] = field(default_factory=dict)


def parse(output: str) -> ProgramOutput:
    """Sort a program's output into measurements, skips, metadata and plain text."""
    result = ProgramOutput()
    for number, line in enumerate(output.splitlines(), start=1):
        match = PREFIX.search(line)
        if not match:
            result.text.append(line)
            continue
        try:
            _parse_line(match["body"].strip(), result)
        except (ValueError, IndexError) as error:
            raise ProtocolError(f"line {number}: cannot parse {line!r}: {error}") from error
    for name, measurement in result.measurements.items():
        seen = sum(measurement.counts.values())
        if seen != measurement.samples:
            raise ProtocolError(
                f"measurement {name!r} announced {measurement.samples} samples "
                f"but its histogram holds {seen}: the output was cut short"
            )
    return result


def _parse_line(body: str, result: ProgramOutput) -> None:
    kind, _, rest = body.partition(" ")
    if kind == "measure":
        name, *options = rest.split()
        fields = dict(option.split("=", 1) for option in options)
        result.measurements[name] = RawMeasurement(
            name=name,
            unit=fields.get("unit", "ticks"),
            samples=int(fields["samples"]),
            subtract=fields.get("subtract"),
            per=int(fields.get("per", 1)),
        )
    elif kind == "hist":
        name, *pairs = rest.split()
        if name not in result.measurements:
            raise ValueError(f"histogram for {name!r} before its 'measure' line")
        counts = result.measurements[name].counts
        for pair in pairs:
            value, count = pair.split("x")
            counts[int(value)] = counts.get(int(value), 0) + int(count)
    elif kind == "skip":
        name, _, reason = rest.partition(" ")
        result.skipped[name] = reason.strip() or "skipped without a reason"
    elif kind == "check":
        name, verdict, *detail = rest.split(" ", 2)
        if verdict not in ("ok", "fail", "na"):
            raise ValueError(f"a check is ok, fail or na, not {verdict!r}")
        result.checks[name] = (verdict, detail[0] if detail else "")
    elif kind == "meta":
        for item in shlex.split(rest):
            key, _, value = item.partition("=")
            result.meta[key] = value
    else:
        raise ValueError(f"unknown kind {kind!r}")
