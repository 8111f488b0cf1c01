"""The fields of a ``lesson.toml``: which keys each kind of entry may have, and the check each value must pass."""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from course.results import derive

#: The kinds of standard input a program can be run with.
STDIN_KINDS = ("devnull", "file", "pipe", "tty", "zero", "socket")
#: The only linker flags a lesson.toml may give cc: a library by name (-luring), never -o or @file.
LIB_FLAG = r"-l[A-Za-z0-9_.+-]+"


class BadValue(ValueError):
    """A value that fails its check; the message says what the key must be."""


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _text(key: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadValue(f'{key} must be a non-empty string, like {key} = "name", not {_shown(value)}')
    return value


def _flag(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise BadValue(f"{key} must be true or false, like {key} = true, not {_shown(value)}")
    return value


def _file_name(key: str, value: object) -> str:
    # A module's name is its source's, its make target's and its capture id's: no path, no space.
    text = _text(key, value)
    if not re.fullmatch(r"[A-Za-z0-9_-]+", text):
        raise BadValue(f'{key} must be a plain name (letters, digits, - and _), like {key} = "ksystime", not {text!r}')
    return text


def _texts(key: str, value: object) -> tuple[str, ...]:
    # A bare string would be split into characters: refuse it instead of guessing.
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise BadValue(f'{key} must be a list of strings, like {key} = ["100000"], not {_shown(value)}')
    # An argument (or a module parameter) reaches exec as a C string, which ends at the first NUL.
    if any("\0" in item for item in value):
        raise BadValue(f"{key} must not hold a NUL character (\\u0000), as in {_shown(value)}")
    return tuple(value)


def _libs(key: str, value: object) -> tuple[str, ...]:
    # Handed to cc as they are: "-o /path" would write anywhere and "@file" would read a host
    # file into the build log, so only plain -lNAME flags pass.
    items = _texts(key, value)
    for item in items:
        if not re.fullmatch(LIB_FLAG, item):
            raise BadValue(
                f'{key} entry {item!r} is not a library flag: give only -lNAME items, like {key} = ["-luring"]'
            )
    return items


def _kinds(key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise BadValue(f'{key} must be a list of kinds of file, like {key} = ["devnull"], not {_shown(value)}')
    bad = [kind for kind in value if kind not in STDIN_KINDS]
    if bad:
        raise BadValue(f"unknown {key} kind(s) {bad}; choose from {list(STDIN_KINDS)}")
    if len(set(value)) != len(value):
        raise BadValue(f"{key} names a kind twice ({value}); each kind gives one set of figures")
    return tuple(value)


def _stdin(key: str, value: object) -> tuple[str, ...]:
    kinds = _kinds(key, value)
    if not kinds:
        raise BadValue(f'{key} must name at least one kind (it runs once per kind), like {key} = ["devnull"]')
    return kinds


#: The longest timeout a lesson may give a program (the clocks and sleeps under it overflow far beyond).
MAX_TIMEOUT_SECONDS = 24 * 3600


def _timeout(key: str, value: object) -> float:
    # bool is an int to Python, and nan or inf would never stop a hung program.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise BadValue(f"{key} must be a number of seconds above 0, like {key} = 120, not {_shown(value)}")
    if value > MAX_TIMEOUT_SECONDS:
        raise BadValue(f"{key} must be at most {MAX_TIMEOUT_SECONDS} seconds (24 hours), not {_shown(value)}")
    return float(value)


def _expect(key: str, value: object) -> str:
    if value not in ("load", "build-error"):
        raise BadValue(f'{key} must be "load" or "build-error", not {_shown(value)}')
    return str(value)


def _boot(key: str, value: object) -> str:
    if value not in ("shared", "own"):
        raise BadValue(f'{key} must be "own" (its guest work in a boot of its own) or "shared", not {_shown(value)}')
    return str(value)


def _slope_kind(key: str, value: object) -> str:
    if value != "slope":
        raise BadValue(f'{key} must be "slope" (or left out, with an expression), not {_shown(value)}')
    return "slope"


def _points(key: str, value: object) -> str:
    text = _text(key, value)
    try:
        named = text.format(size=0) != text
    except (KeyError, IndexError, ValueError):
        named = False
    if not named:
        example = '"07-bytes/read-{size}.zero"'
        raise BadValue(f"{key} must put {{size}} where the read size goes, like {example}, not {text!r}")
    return text


def _sizes(key: str, value: object) -> list[int]:
    if (
        not isinstance(value, list)
        or not all(isinstance(size, int) and not isinstance(size, bool) and size >= 0 for size in value)
        or len(set(value)) < 2
    ):
        raise BadValue(
            f"{key} must be a list of at least two different sizes in bytes, like [0, 64], not {_shown(value)}"
        )
    return value


def _expression(key: str, value: object) -> str:
    text = _text(key, value)
    try:
        derive.check_expression(text)
    except derive.DeriveError:
        raise BadValue(
            f"{key} must be arithmetic (+ - * / and parentheses) over figures such as median(03-timing/read.tty), "
            f"not {text!r}"
        ) from None
    return text


def _functions(key: str, value: object) -> tuple[str, ...]:
    # Written into tracefs as they are: a glob ("*") or a module filter would trace far more
    # than one read, so only plain kernel symbol names pass.
    if (
        not isinstance(value, list)
        or not all(isinstance(item, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", item) for item in value)
        or len(value) > 16
    ):
        raise BadValue(
            f'{key} must be a list of kernel function names (letters, digits, _ and .), like {key} = ["ksys_read"], '
            f"not {_shown(value)}"
        )
    return tuple(value)


Check = Callable[[str, object], object]


#: Every key each kind of entry may have, and the check its value must pass.
SECTIONS: dict[str, dict[str, Check]] = {
    "run": {"program": _text, "args": _texts, "stdin": _stdin, "files": _kinds, "timeout": _timeout, "libs": _libs},
    "disassemble": {"id": _text, "symbol": _text, "program": _text, "library": _text},
    "derive": {
        "name": _text,
        "expression": _expression,
        "unit": _text,
        "kind": _slope_kind,
        "points": _points,
        "sizes": _sizes,
        "kinds": _stdin,
        "proportional": _flag,
    },
    "exercise": {"name": _text, "program": _text, "solution": _text, "args": _texts, "stdin": _stdin},
    "module": {
        "name": _file_name,
        "measures": _texts,
        "params": _texts,
        "stdin": _stdin,
        "expect": _expect,
        "client": _text,
        "client_args": _texts,
    },
    "guest_run": {"program": _text, "args": _texts, "stdin": _stdin, "files": _kinds, "timeout": _timeout},
    "trace": {
        "name": _file_name,
        "program": _text,
        "files": _stdin,
        "graph": _functions,
        "notrace": _functions,
        "timeout": _timeout,
    },
}


#: The settings a kernel lesson.toml may hold above its entries (``boot = "own"``), and their checks.
KERNEL_SETTINGS: dict[str, Check] = {"boot": _boot}


#: The keys each kind of entry cannot do without.
REQUIRED = {
    "run": ("program",),
    "disassemble": ("id", "symbol"),
    "derive": ("name",),
    "exercise": ("name", "program"),
    "module": ("name",),
    "guest_run": ("program",),
    "trace": ("name", "program", "files", "graph"),
}
