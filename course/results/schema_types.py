"""The types a result file's fields must have, each said in words when a value lacks it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

from course.results import code_parts

#: A figure beyond this is no measurement (and would overflow the site's arithmetic).
LARGEST = 2.0**63


#: The smallest normal float: a figure between it and 0 (a subnormal one) is refused.
SMALLEST_FLOAT = sys.float_info.min


#: How (course.kernel.vm.ACCELERATIONS, and the host's own kernel as course.kernel.kernel_runs names it).
ACCELERATIONS = ("kvm", "tcg", "tcg-icount", "host-kernel")


class SchemaError(ValueError):
    """What is wrong with a result file; ``fix``, when given, replaces the caller's usual remedy."""

    def __init__(self, problem: str, fix: str = "") -> None:
        super().__init__(problem)
        self.fix = fix


# --- the types --------------------------------------------------------------------------------
# Each returns the expected type in words when ``value`` does not have it, else "".


def _text(value: Any) -> str:
    return "" if isinstance(value, str) else "text"


def _flag(value: Any) -> str:
    return "" if isinstance(value, bool) else "true or false"


def _is_number(value: Any) -> bool:
    # A subnormal float (5e-324) is no measurement, and an axis of it has no round steps.
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and -LARGEST < value < LARGEST
        and (value == 0 or abs(value) >= SMALLEST_FLOAT)
    )


def _number(value: Any) -> str:
    return "" if _is_number(value) else "a finite number (0, or 2.2e-308 or more in size)"


def _figure(value: Any) -> str:
    return "" if _is_number(value) and value >= 0 else "a finite number >= 0 (0, or 2.2e-308 or more)"


def _rate(value: Any) -> str:
    # A TSC rate divides ticks: one below 1 Hz would make nanoseconds overflow (0: not measured).
    return "" if _is_number(value) and (value == 0 or value >= 1) else "a rate in Hz (0, or from 1 to 2**63)"


def _integer(value: Any) -> str:
    return "" if _is_number(value) and isinstance(value, int) else "a whole number"


def _tally(value: Any) -> str:
    return "" if _is_number(value) and isinstance(value, int) and value >= 0 else "a whole number >= 0"


def _count(value: Any) -> str:
    return "" if _is_number(value) and isinstance(value, int) and value > 0 else "a whole number above 0"


def _acceleration(value: Any) -> str:
    return "" if value in ACCELERATIONS else f"one of {', '.join(ACCELERATIONS)}"


def _mapping(value: Any) -> str:
    return "" if isinstance(value, dict) else "an object"


def _texts(value: Any) -> str:
    return "" if isinstance(value, list) and all(isinstance(v, str) for v in value) else "a list of text"


def _numbers(value: Any) -> str:
    return "" if isinstance(value, list) and all(_is_number(v) for v in value) else "a list of finite numbers"


def _figures(value: Any) -> str:
    # One test an item, inline: a timeline holds thousands (``_figure`` each, as before, for the odd one).
    fine = isinstance(value, list) and all(
        ((type(v) is float or type(v) is int) and (v == 0 or SMALLEST_FLOAT <= v < LARGEST)) or not _figure(v)
        for v in value
    )
    return "" if fine else "a list of finite numbers >= 0 (0, or 2.2e-308 or more)"


def _tallies(value: Any) -> str:
    fine = isinstance(value, list) and all((type(v) is int and 0 <= v < LARGEST) or not _tally(v) for v in value)
    return "" if fine else "a list of whole numbers >= 0"


def _sources(value: Any) -> str:
    # Some definitions of the course's own Python (course.results.code_parts): parsed, so checked closely.
    for path in value if isinstance(value, dict) else ():
        problem = code_parts.key_problem(path) if isinstance(path, str) else ""
        if problem:
            raise SchemaError(f"has the source {_shown(path)}, which {problem}", fix=code_parts.FIX)
    # A page hashes each source to warn when it changed: only files inside the course, never /etc/...
    inside = isinstance(value, dict) and all(
        isinstance(digest, str) and not path.startswith("/") and ".." not in PurePosixPath(path).parts
        for path, digest in value.items()
    )
    return "" if inside else "an object of paths inside the course (code/...) -> SHA-256"


def _text_map(value: Any) -> str:
    is_map = isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    return "" if is_map else "an object of text (name -> text)"


# --- helpers ----------------------------------------------------------------------------------


def _check(ok: bool, field: str, value: Any, expected: str) -> None:
    if not ok:
        raise SchemaError(f"has {field} = {_shown(value)}, not {expected}")


def _optional(container: dict, key: str, field: str, expect: Callable[[Any], str], nullable: bool = False) -> None:
    """Check ``container[key]`` if it is there (``None`` counts as absent when ``nullable``)."""
    if key not in container or (nullable and container[key] is None):
        return
    expected = expect(container[key])
    if expected:
        raise SchemaError(f"has {field} = {_shown(container[key])}, not {expected}")


def _required(container: Any, key: str, where: str, expect: Callable[[Any], str]) -> None:
    _check(isinstance(container, dict), where, container, "an object")
    if key not in container:
        raise SchemaError(f"has {where} without its {key}")
    _optional(container, key, f"{where}.{key}", expect)


def _entries(content: dict, key: str) -> list[tuple[str, Any]]:
    """The entries of an object field (id -> object), refusing anything else."""
    value = content.get(key, {})
    _check(isinstance(value, dict), key, value, "an object (id -> object)")
    for name, entry in value.items():
        _check(isinstance(entry, dict), f"{key}[{_shown(name)}]", entry, "an object")
    return list(value.items())


def _items(content: dict, key: str) -> list[tuple[int, Any]]:
    """The entries of a list field, refusing anything else."""
    value = content.get(key, [])
    _check(isinstance(value, list), key, value, "a list")
    for index, entry in enumerate(value):
        _check(isinstance(entry, dict), f"{key}[{index}]", entry, "an object")
    return list(enumerate(value))


def _shown(value: Any) -> str:
    """``value`` as a short, one-line repr (a file may hold anything, of any length)."""
    if isinstance(value, dict):
        return "{...} (an object)"
    if isinstance(value, list):
        return "[...] (a list)"
    text = repr(value[:61] if isinstance(value, str) else value)
    return text if len(text) <= 60 else text[:57] + "..."
