"""Parsing what a measuring program prints.

Programs (and, later, kernel modules through the kernel log) print lines prefixed with
``course:`` between ordinary output; everything else is kept as text. The format is
documented in ``code/user/common/stamp.h``.

A program's output is untrusted (a student's variant prints what it likes): every number is
checked here, so that a line the course cannot use fails that program's parse step, never
the run, and never reaches a result file that would be refused when read.
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass, field

PREFIX = re.compile(r"(?:^|\]\s*|:\s)course: (?P<body>.*)$")

#: A tick count, a sample count or a rate at or beyond this is no measurement (the result
#: files' limit, ``course.results.schema_types.LARGEST``).
LARGEST = 2**63

#: The most measurements and skips one output may announce (a lesson's program prints a few dozen):
#: each becomes an entry of the lesson's result file, which has a size limit.
MAX_MEASUREMENTS = 256

#: The most runs of the code one sample may time (``per=``).
MAX_PER = 2**32

#: The most characters of ``meta`` one output may give: they are copied into each of its measurements.
MAX_META_CHARS = 4096


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
            # Quoted short: a line may be megabytes long, and the message is stored with the failure.
            shown = repr(line[:160]) + (" ..." if len(line) > 160 else "")
            raise ProtocolError(f"line {number}: cannot parse {shown}: {error}") from error
    for name, measurement in result.measurements.items():
        seen = sum(measurement.counts.values())
        if seen != measurement.samples:
            raise ProtocolError(
                f"measurement {name!r} announced {measurement.samples} samples "
                f"but its histogram holds {seen}: the output was cut short"
            )
    if len(result.measurements) + len(result.skipped) > MAX_MEASUREMENTS:
        raise ProtocolError(f"the output announces more than {MAX_MEASUREMENTS} measurements and skips")
    if sum(len(key) + len(value) for key, value in result.meta.items()) > MAX_META_CHARS:
        raise ProtocolError(f"its meta lines hold more than {MAX_META_CHARS} characters")
    return result


def _whole(text: str, what: str, low: int) -> int:
    """``text`` as a whole number from ``low`` up to below :data:`LARGEST`, or why not."""
    number = int(text)
    if not low <= number < LARGEST:
        raise ValueError(f"{what} must be a whole number from {low} up to 2**63, not {text}")
    return number


def _rate(text: str) -> str:
    """A TSC rate in Hz as printed: a finite number from 1 up to 2**63 (it divides every tick count)."""
    try:
        rate = float(text)
    except ValueError:
        rate = math.nan
    if not (math.isfinite(rate) and 1 <= rate < LARGEST):
        raise ValueError(f"tsc_hz must be a rate in Hz (a number from 1 up to 2**63), not {text[:40]!r}")
    return text


def _parse_line(body: str, result: ProgramOutput) -> None:
    kind, _, rest = body.partition(" ")
    if kind == "measure":
        name, *options = rest.split()
        fields = dict(option.split("=", 1) for option in options)
        per = _whole(fields.get("per", "1"), "per", 1)
        if per > MAX_PER:
            raise ValueError(f"per must be at most {MAX_PER} (2**32), not {per}")
        result.measurements[name] = RawMeasurement(
            name=name,
            unit=fields.get("unit", "ticks"),
            samples=_whole(fields["samples"], "samples", 1),
            subtract=fields.get("subtract"),
            per=per,
        )
    elif kind == "hist":
        name, *pairs = rest.split()
        if name not in result.measurements:
            raise ValueError(f"histogram for {name!r} before its 'measure' line")
        counts = result.measurements[name].counts
        for pair in pairs:
            text, count = pair.split("x")
            value = _whole(text, "a value (ticks)", 0)
            counts[value] = counts.get(value, 0) + _whole(count, "a count", 1)
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
            result.meta[key] = _rate(value) if key == "tsc_hz" else value
    else:
        raise ValueError(f"unknown kind {kind!r}")
