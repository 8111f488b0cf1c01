"""Text a page will show, from a result file or an archive: nothing invisible, nothing that fakes a line."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from course.results.schema_types import SchemaError, _shown

# --- text shown on a page, from an archive ------------------------------------------------------

#: Characters no imported text may hold: controls (an escape sequence in a terminal, invalid in the EPUB's
#: XHTML), format characters (a bidi override shows the rest of a label reversed) and line separators.
UNSHOWABLE = ("Cc", "Cf", "Zl", "Zp")
#: Those of them program output may not hold either (its control characters are shown escaped).
_UNSHOWABLE_IN_OUTPUT = ("Cf", "Zl", "Zp")
#: Printable characters that show nothing: Hangul fillers, the braille blank, the combining grapheme joiner,
#: Khmer's inherent vowels, the Mongolian vowel separator. A label of them looks empty, or like another's.
FILLERS = "\u115f\u1160\u3164\uffa0\u2800\u034f\u17b4\u17b5\u180e"
_FILLER = re.compile(f"[{FILLERS}]")
#: A measurement's free text (a reason may quote a compiler's lines) may break lines; nothing else may.
MULTILINE = ("reason", "note", "how", "command", "stdin", "what", "call", "source")


def check_shown_text(file: str, content: dict) -> None:
    """On import, export and load: no key and no text of the file holds a character that does not show.

    Every key and every text, at any depth (a page shows fields this check never named: a machine's
    mitigations, a guest's record). Refused, not cleaned: the field is named so that whoever made the
    set can fix it. Program output (captures), failure logs, an exercise's detail and a measurement's
    free text (:data:`MULTILINE`) are shown as preformatted text and keep their lines and tabs.
    """
    lesson = file != "set.json"
    # (value, its field as a message names it, the keys leading to it)
    pending: list[tuple[Any, str, tuple[str, ...]]] = [(content, "", ())]
    while pending:  # a walk without recursion: a file may nest deeply
        value, field, keys = pending.pop()
        if isinstance(value, str):
            _shown_text(value, field, _lines(keys) if lesson else "")
        elif isinstance(value, dict):
            inside = []
            for key, item in value.items():
                inner = _inner_field(field, keys, key)
                _shown_text(key, f"{inner} (its name)")
                if type(item) in _NESTED:
                    inside.append((item, inner, (*keys, key)))
            pending.extend(reversed(inside))  # popped in the file's order: the first problem is named
        elif isinstance(value, list):
            listed = (*keys, "[]")
            inside = [(item, f"{field}[{i}]", listed) for i, item in enumerate(value) if type(item) in _NESTED]
            pending.extend(reversed(inside))


_NESTED = (str, dict, list)
#: Objects of id -> object: their keys are named as ids (``measurements['03-timing/read.tty']``).
_BY_ID = ("measurements", "captures", "exercises")
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _inner_field(field: str, keys: tuple[str, ...], key: str) -> str:
    if not _FIELD_NAME.fullmatch(key) or (len(keys) == 1 and keys[0] in _BY_ID):
        return f"{field}[{_shown(key)}]"
    return f"{field}.{key}" if field else key


def _lines(keys: tuple[str, ...]) -> str:
    """What a lesson file's text at ``keys`` may hold beside printable text: nothing, line breaks and tabs
    (free text), or any control character (a program's output and logs: a page shows each as an escape).
    """
    if not keys:
        return ""
    if keys[0] in ("captures", "failures"):
        return OUTPUT
    if keys[0] == "measurements":
        return "\n\t" if len(keys) == 3 and keys[2] in MULTILINE else ""
    return "\n\t" if keys[0] == "exercises" and len(keys) == 4 and keys[3] == "detail" else ""


#: What :func:`_lines` allows in program output: its control characters (shown escaped, never bidi nor filler).
OUTPUT = "output"


def shows(char: str) -> bool:
    """Whether ``char`` may be shown in a field of one line (what :func:`check_shown_text` lets through)."""
    return (char.isprintable() or unicodedata.category(char) not in UNSHOWABLE) and char not in FILLERS


#: The most combining marks one character may carry: Unicode's stream-safe text format allows 30 in a row
#: (UAX #15, UAX15-D4); no script needs as many. Hundreds stacked on one letter draw over the lines around it.
MOST_MARKS = 30


def _shown_text(text: str, field: str, allowed: str = "") -> None:
    if not text.isascii():
        _refuse_stacked_marks(text, field)
    if text.isprintable() and not _FILLER.search(text):  # no character of UNSHOWABLE is printable: done in C
        return
    if allowed == OUTPUT:
        bad = next((c for c in text if unicodedata.category(c) in _UNSHOWABLE_IN_OUTPUT or c in FILLERS), None)
    else:
        bad = next((c for c in text if not shows(c) and c not in allowed), None)
    if bad is not None:
        raise SchemaError(
            f"has {field} holding the invisible character U+{ord(bad):04X} ({_shown(text)})",
            fix="remove control, bidi and other format characters (and blank fillers) from the set's text "
            "(then export it again)",
        )


def _refuse_stacked_marks(text: str, field: str) -> None:
    run = 0
    for char in text:
        # A mark by its category (nonspacing, enclosing): combining() is 0 for U+0489, U+20DD and hundreds more.
        run = run + 1 if unicodedata.category(char) in ("Mn", "Me") or unicodedata.combining(char) else 0
        if run > MOST_MARKS:
            raise SchemaError(
                f"has {field} with more than {MOST_MARKS} combining marks on one character ({_shown(text)})",
                fix=f"remove the marks: a character may carry at most {MOST_MARKS} (then export the set again)",
            )


def printable(text: str) -> str:
    """``text`` safe for a terminal: each control or invisible character escaped (ESC as \\x1b, U+202E as \\u202e),
    a space of another width (U+3000) kept.

    Cells come from result files, and an imported set is anyone's: raw, an escape sequence would
    drive the terminal (clear it, retitle it, hide lines), a NUL or a bidi override hide text.
    """
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() or _space(char) else repr(char)[1:-1] for char in text)


def _space(char: str) -> bool:
    """A space other than U+0020 (U+3000, the ideographic space; U+00A0): Python calls it unprintable, yet it shows."""
    return unicodedata.category(char) == "Zs"
