"""What a result file must hold (docs/results.md), checked before any of its figures is used.

Result files come from this machine, from git, or from an archive someone sent: all are
checked the same way when they are read, so a wrong type or an impossible figure is refused
with one line naming the field, never found later as a crash in the site build or as
"nan ticks" on a page. Fields this course does not know are left alone; those it uses
must have the type it uses them with.

Each problem is worded as a predicate of the file ("has ...", "is ..."), so that the caller
writes ``f"{file} {problem}; {fix}"``.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import Any

from course.results.schema_types import (
    ACCELERATIONS,
    SchemaError,
    _acceleration,
    _check,
    _count,
    _entries,
    _figure,
    _figures,
    _flag,
    _integer,
    _items,
    _mapping,
    _number,
    _numbers,
    _optional,
    _rate,
    _required,
    _shown,
    _sources,
    _tallies,
    _tally,
    _text,
    _text_map,
    _texts,
)

#: Version of the JSON layout; a file with a higher number comes from a newer course.
SCHEMA = 1

#: The most one result file may hold; the largest committed one holds well under 1 MiB.
MAX_BYTES = 16 * 1024 * 1024


#: The most bins a stored histogram may hold (a run stores 40: ``course.measure.stats.HISTOGRAM_BINS``);
#: the site draws one rectangle per bin.
MAX_BINS = 1000
#: The most points a timeline, or a list of runs, may hold (a ten-second ``invoke bench`` keeps ~250).
MAX_POINTS = 20_000
#: The smallest value above 0 in a timeline: the site divides each by the timeline's median, and
#: a quotient by a smaller one would overflow (a probe's median is a count of ticks).
SMALLEST_IN_TIMELINE = 1e-6


STATISTICS = ("min", "median", "p90", "p99", "max")
STATUSES = ("ok", "skipped", "failed")


def decode(data: bytes) -> dict:
    """The result file held in ``data``: UTF-8 JSON, an object of a schema this course knows, finite numbers only."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SchemaError(f"is not UTF-8 text (byte {error.start} is {data[error.start]:#04x})") from error
    try:
        content = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except SchemaError:
        raise
    except json.JSONDecodeError as error:
        raise SchemaError(f"is corrupt ({error.msg} at line {error.lineno})") from error
    except RecursionError as error:  # e.g. [[[[... 200,000 deep: no result file nests like that
        raise SchemaError("is corrupt (JSON nested too deeply)") from error
    except ValueError as error:  # e.g. an integer of more than 4,300 digits
        raise SchemaError(f"is corrupt ({error})") from error
    if not isinstance(content, dict):
        raise SchemaError("is not a result file (expected a JSON object)")
    schema = content.get("schema")
    if not isinstance(schema, int) or isinstance(schema, bool):
        raise SchemaError("has no schema number", fix="it is not a result file of this course")
    if schema < 1:
        raise SchemaError(f"has schema {schema}, not a version of the layout (1 or more)")
    # JSON may spell half a character (\ud800): such text cannot be printed or written as UTF-8.
    if _SURROGATE_ESCAPE.search(text):
        lone = _lone_surrogate(content)
        if lone is not None:
            raise SchemaError(f"holds text with a lone surrogate ({_shown(lone)}), which is no character")
    if schema > SCHEMA:
        raise SchemaError(
            f"uses schema {schema}, newer than this course's {SCHEMA}", fix="update the course (git pull)"
        )
    return content


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _lone_surrogate(content: Any) -> str | None:
    """The first text (key or value) holding a lone surrogate; a walk without recursion (any depth)."""
    pending = [content]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return item
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return None


def _refuse_constant(name: str) -> Any:
    raise SchemaError(f"holds {name}, which is no figure (JSON has no NaN or Infinity)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise SchemaError(f"holds the number {text[:40]}, too large to be a figure")
    return value


# --- set.json ---------------------------------------------------------------------------------

SET_TEXT = ("label", "citation", "updated")
MACHINE_TEXT = (
    "cpu_model",
    "cpu_vendor",
    "cpu_family",
    "cpu_model_number",
    "cpu_stepping",
    "microcode",
    "architecture",
    "kernel_release",
    "kernel_version",
    "virtualization",
    "dmi_product",
    "compiler",
    "os",
    "note",
)


def check_set_info(info: dict) -> None:
    """Refuse a ``set.json`` whose fields have types the site and the runs cannot use."""
    kind = info.get("kind", "measured")
    if kind not in ("measured", "reference"):
        raise SchemaError(f"has kind = {_shown(kind)}, not 'measured' or 'reference'")
    for key in SET_TEXT:
        _optional(info, key, key, _text)
    machine = info.get("machine", {})
    _check(isinstance(machine, dict), "machine", machine, "an object (field -> value)")
    for key in MACHINE_TEXT:
        _optional(machine, key, f"machine.{key}", _text)
    _optional(machine, "cpu_count", "machine.cpu_count", _count, nullable=True)
    _optional(machine, "tsc_hz", "machine.tsc_hz", _rate, nullable=True)
    _optional(machine, "hypervisor", "machine.hypervisor", _flag)
    _optional(machine, "tsc_flags", "machine.tsc_flags", _texts)
    _optional(machine, "mitigations", "machine.mitigations", _text_map)
    # Written by an import: such a set is never taken for this machine's, nor measured into.
    _optional(info, "imported", "imported", _text_map)
    # A kernel matrix's set: the one guest kernel it holds (name, release, flavour, preemption, CPU).
    _optional(info, "guest", "guest", _text_map)
    _check_set_text_lengths(info, machine)


#: The most characters of a name, a label or a machine's field (the shipped sets' longest: 104, a label);
#: a note's and a mitigation's (126 shipped) may be longer. A 1,000,000-character label made a 32 MB site.
MOST_IN_NAME = 200
MOST_IN_NOTE = 2000
#: The most entries of a machine's lists and objects (a CPU's flags, its mitigations: about 20).
MOST_ENTRIES = 200


def _check_set_text_lengths(info: dict, machine: dict) -> None:
    for key in SET_TEXT:
        _check_text_length(key, info.get(key), MOST_IN_NAME)
    for key in MACHINE_TEXT:
        _check_text_length(f"machine.{key}", machine.get(key), MOST_IN_NOTE if key == "note" else MOST_IN_NAME)
    for key, most in (("tsc_flags", MOST_IN_NAME), ("mitigations", MOST_IN_NOTE)):
        entries = machine.get(key) or []
        _check_length(f"machine.{key}", list(entries), MOST_ENTRIES)
        for name in entries:
            _check_text_length(f"machine.{key} (a name)", name, MOST_IN_NAME)
        for value in entries.values() if isinstance(entries, dict) else []:
            _check_text_length(f"machine.{key} (a value)", value, most)
    for record in ("imported", "guest"):
        fields = info.get(record) or {}
        _check_length(record, list(fields), MOST_ENTRIES)
        for name, value in fields.items():
            _check_text_length(f"{record} (a name)", name, MOST_IN_NAME)
            _check_text_length(f"{record}[{_shown(name)}]", value, MOST_IN_NAME)


def _check_text_length(field: str, value: Any, most: int) -> None:
    if isinstance(value, str) and len(value) > most:
        raise SchemaError(
            f"has {field} of {len(value):,} characters, more than the {most:,} it may hold",
            fix="shorten it: a set's text names a machine and its run, in a few words",
        )


# --- <lesson>.json ----------------------------------------------------------------------------

#: The longest time stamp a lesson file may hold where the course writes one (``2026-12-05T13:47:10+00:00``
#: is 25 characters; microseconds make 32).
MOST_IN_STAMP = 40


def _check_kept(kept: Any) -> None:
    """A student's rerun's kept programs: a few names, each with the time stamp of its figures, nothing longer."""
    if not isinstance(kept, dict):
        return
    _check_length("kept", list(kept), MOST_ENTRIES)
    for name, when in kept.items():
        _check_text_length("kept (a name)", name, MOST_IN_NAME)
        if len(when) > MOST_IN_STAMP or not _is_stamp(when):
            raise SchemaError(
                f"has kept[{_shown(name)}] = {_shown(when)}, not a time stamp",
                fix="each kept program maps to when its figures were taken, as 2026-12-05T13:47:10+00:00",
            )


def _is_stamp(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


LESSON_TEXT = ("lesson", "measured_at", "runner", "inputs_key", "setting_key", "compiler")
KERNEL_RUN_TEXT = ("runner", "acceleration", "why", "guest_kernel", "unavailable")


#: The most measurements a lesson file may hold (the largest the course writes has under a hundred): an
#: archive of 20,000 extra ids is 95 KB and would make the site's build take minutes and gigabytes.
MAX_MEASUREMENTS = 2000


def check_lesson_file(content: dict, name: str = "") -> None:
    """Refuse a lesson file whose fields have types the site and the runs cannot use, or impossible figures.

    ``name``, given on import, is the file's lesson (its name without ``.json``): each measurement id then
    starts with it (``04-kernel-read/...`` in ``04-kernel-read.json``). Only the reference's one file holds
    every lesson's; a set copied by hand may hold a stray id, which the site never shows as a row.
    """
    for key in LESSON_TEXT:
        _optional(content, key, key, _text)
    _optional(content, "cflags", "cflags", _texts)
    _optional(content, "sources", "sources", _sources)
    _optional(content, "notes", "notes", _text_map)
    _optional(content, "kept", "kept", _text_map)
    _check_kept(content.get("kept"))
    run = content.get("kernel_run")
    if run is not None:
        _check(isinstance(run, dict), "kernel_run", run, "an object")
        for key in KERNEL_RUN_TEXT:
            _optional(run, key, f"kernel_run.{key}", _text, nullable=True)
        _optional(run, "acceleration", "kernel_run.acceleration", _acceleration, nullable=True)
        guest = run.get("guest_machine")
        if guest is not None:
            # The guest's own provenance (its kernel, QEMU's CPU, its mitigations), shown on machine pages.
            _check(isinstance(guest, dict), "kernel_run.guest_machine", guest, "an object (field -> value)")
            for key in MACHINE_TEXT:
                _optional(guest, key, f"kernel_run.guest_machine.{key}", _text)
            _optional(guest, "tsc_flags", "kernel_run.guest_machine.tsc_flags", _texts)
            _optional(guest, "mitigations", "kernel_run.guest_machine.mitigations", _text_map)
    measurements = _entries(content, "measurements")
    if len(measurements) > MAX_MEASUREMENTS:
        raise SchemaError(
            f"holds {len(measurements)} measurements, more than the {MAX_MEASUREMENTS} a lesson file may hold",
            fix="a lesson declares far fewer: the file was not written by a course run",
        )
    for key, measurement in measurements:
        if name and name != "reference" and not key.startswith(f"{name}/"):
            raise SchemaError(
                f"has measurements[{_shown(key)}], not of lesson {name!r}",
                fix=f"a measurement of {name}.json has an id that starts with '{name}/'",
            )
        check_measurement(f"measurements[{_shown(key)}]", measurement)
    for key, capture in _entries(content, "captures"):
        where = f"captures[{_shown(key)}]"
        _required(capture, "text", where, _text)
        _optional(capture, "command", f"{where}.command", _text, nullable=True)
        _optional(capture, "measured_at", f"{where}.measured_at", _text, nullable=True)
    for index, failure in _items(content, "failures"):
        for key in ("step", "what", "message", "at"):
            _required(failure, key, f"failures[{index}]", _text)
        _optional(failure, "log", f"failures[{index}].log", _text)
    for index, step in _items(content, "steps"):
        _required(step, "name", f"steps[{index}]", _text)
        _required(step, "seconds", f"steps[{index}]", _figure)
        _required(step, "cached", f"steps[{index}]", _flag)
        _optional(step, "shared", f"steps[{index}].shared", _flag)
    for name, outcome in _entries(content, "exercises"):
        for role, state in outcome.items():
            where = f"exercises[{_shown(name)}].{role}"
            _check(isinstance(state, dict), where, state, "an object {status, detail}")
            _optional(state, "status", f"{where}.status", _text)
            _optional(state, "detail", f"{where}.detail", _text)


MEASUREMENT_TEXT = (
    "command",
    "measured_at",
    "stdin",
    "how",
    "note",
    "source",
    "call",
    "what",
    "runner",
    "acceleration",
    "guest_kernel",
    "runs_unit",
)


#: Where a figure ran (course.measure.lesson_run, course.kernel.kernel_runs): the host's user space, the host's
#: kernel, a VM, or nowhere (a kernel example not asked for). The class pools by these names: a misspelling must
#: not pass.
RUNNERS = ("host", "host-kernel", "vm", "none")
#: Under emulation a tick is not the machine's time (course.kernel.vm.UNITS): "ticks" there is a mislabelled figure.
EMULATED = ("tcg", "tcg-icount")


def check_measurement(where: str, measurement: Any) -> None:
    """One measurement: a status, figures that are finite, not negative and in order, counts that count."""
    _check(isinstance(measurement, dict), where, measurement, "an object (field -> value)")
    status = measurement.get("status")
    if status not in STATUSES:
        raise SchemaError(f"has {where}.status = {_shown(status)}, not one of {', '.join(STATUSES)}")
    _optional(measurement, "unit", f"{where}.unit", _text)
    _optional(measurement, "reason", f"{where}.reason", _text)
    for key in MEASUREMENT_TEXT:
        _optional(measurement, key, f"{where}.{key}", _text, nullable=True)
    for key in (*STATISTICS, *(f"{name}_ns" for name in STATISTICS), "mean"):
        _optional(measurement, key, f"{where}.{key}", _figure, nullable=True)
    # A correlation lies in [-1, 1], and a derived figure may be a difference: only these may be negative.
    signed = measurement.get("unit") == "r" or measurement.get("derived") is True
    _optional(measurement, "value", f"{where}.value", _number if signed else _figure, nullable=True)
    _optional(measurement, "intercept", f"{where}.intercept", _number, nullable=True)
    _optional(measurement, "goal", f"{where}.goal", _figure, nullable=True)
    _optional(measurement, "tsc_hz", f"{where}.tsc_hz", _rate, nullable=True)
    _optional(measurement, "samples", f"{where}.samples", _count)
    _optional(measurement, "calls_per_sample", f"{where}.calls_per_sample", _count)
    _optional(measurement, "windows", f"{where}.windows", _tally)
    _optional(measurement, "exit_status", f"{where}.exit_status", _integer, nullable=True)
    _optional(measurement, "derived", f"{where}.derived", _flag)
    _optional(measurement, "sources", f"{where}.sources", _sources)
    _optional(measurement, "meta", f"{where}.meta", _mapping)
    _optional(measurement, "from", f"{where}.from", _texts)
    _optional(measurement, "files", f"{where}.files", _texts)
    _optional(measurement, "runs", f"{where}.runs", _numbers)
    _check_length(f"{where}.runs", measurement.get("runs"), MAX_POINTS)
    _check_where(where, measurement)
    _check_overhead(where, measurement.get("overhead"))
    _check_histogram(where, measurement.get("histogram"))
    _check_timeline(where, measurement.get("timeline"))
    # The site prints the spread as "p90 · p99" and a goal with its unit: each needs the other.
    if measurement.get("p90") is not None and measurement.get("p99") is None:
        raise SchemaError(f"has {where} with a p90 but no p99")
    if measurement.get("goal") is not None and "unit" not in measurement:
        raise SchemaError(f"has {where} with a goal but no unit")
    if status != "ok":
        return
    # A goal is met or not by the measurement's value (invoke bench, the site's tables).
    if measurement.get("goal") is not None and measurement.get("value") is None:
        raise SchemaError(f"has {where} with a goal but no value to compare it with")
    present = [measurement[key] for key in STATISTICS if measurement.get(key) is not None]
    if not present and measurement.get("value") is None and measurement.get("mean") is None:
        raise SchemaError(f"has {where} marked ok but with no figure (min, value or mean)")
    if present != sorted(present):
        raise SchemaError(f"has {where} not ordered min <= median <= p90 <= p99 <= max ({present})")


def _check_where(where: str, measurement: dict) -> None:
    """A known runner and acceleration, and ticks of real time only where time is real."""
    for key, known in (("runner", RUNNERS), ("acceleration", ACCELERATIONS)):
        value = measurement.get(key)
        if value is not None and value not in known:
            raise SchemaError(f"has {where}.{key} = {_shown(value)}, not one of {', '.join(known)}")
    if measurement.get("unit") == "ticks" and measurement.get("acceleration") in EMULATED:
        raise SchemaError(
            f"has {where} in unit 'ticks' under acceleration {measurement['acceleration']!r}: "
            "an emulated tick is 'emulated ticks', a counted one 'icount ticks'"
        )


def _check_overhead(where: str, overhead: Any) -> None:
    if overhead is None:
        return
    _check(isinstance(overhead, dict), f"{where}.overhead", overhead, "an object {ticks, from}")
    _optional(overhead, "ticks", f"{where}.overhead.ticks", _figure)
    _optional(overhead, "from", f"{where}.overhead.from", _text, nullable=True)


def _check_histogram(where: str, histogram: Any) -> None:
    if histogram is None:
        return
    where = f"{where}.histogram"
    _check(isinstance(histogram, dict), where, histogram, "an object {start, width, counts, above}")
    _required(histogram, "start", where, _number)
    _required(histogram, "width", where, _figure)
    _check(histogram["width"] > 0, f"{where}.width", histogram["width"], "a width above 0")
    start, width = histogram["start"], histogram["width"]
    _check(start + width != start, f"{where}.width", width, f"a width that moves the start ({start!r}) on")
    _required(histogram, "counts", where, _tallies)
    _check_length(f"{where}.counts", histogram["counts"], MAX_BINS)
    _optional(histogram, "above", f"{where}.above", _tally)


def _check_timeline(where: str, timeline: Any) -> None:
    if timeline is None:
        return
    where = f"{where}.timeline"
    _check(isinstance(timeline, dict), where, timeline, "an object {seconds, values, unit}")
    _required(timeline, "seconds", where, _figures)
    _required(timeline, "values", where, _figures)
    _optional(timeline, "unit", f"{where}.unit", _text)
    if len(timeline["seconds"]) != len(timeline["values"]):
        raise SchemaError(f"has {where} with {len(timeline['seconds'])} times but {len(timeline['values'])} values")
    _check_length(f"{where}.values", timeline["values"], MAX_POINTS)
    tiny = next((value for value in timeline["values"] if 0 < value < SMALLEST_IN_TIMELINE), None)
    if tiny is not None:
        raise SchemaError(f"has {where}.values holding {tiny!r}, not 0 nor at least {SMALLEST_IN_TIMELINE:g}")


def _check_length(field: str, value: Any, most: int) -> None:
    if isinstance(value, list) and len(value) > most:
        raise SchemaError(f"has {field} of {len(value):,} entries, more than the {most:,} a result file may hold")
