"""Figures derived from measured ones, computed when the lesson runs and stored like them.

A lesson's ``[[derive]]`` entries (see ``docs/measuring.md``) either fit a slope (ticks per
byte over read sizes) or evaluate an arithmetic expression over stored figures, such as
``median(07-bytes/read-0.zero) / value(07-bytes/slope.zero)``. A derived figure records
what it was computed from; one that would mix incomparable units (emulated ticks with real
ticks), figures of two clocks (this machine's counter with a guest's, real time with
instruction counts) or of two kernels is recorded as skipped, with that reason, never computed.
"""

from __future__ import annotations

import ast
import json
import operator
import re
from collections.abc import Callable

from course.results.clock import now

Lookup = Callable[[str], dict | None]

REFERENCE = re.compile(r"\b(min|median|p90|p99|max|value|mean)\(([^()\s]+)\)")

_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


class DeriveError(ValueError):
    """A derived figure cannot be computed; the message says why (it becomes the skip reason)."""


def least_squares(points: list[tuple[float, float]]) -> tuple[float, float]:
    """(slope, intercept) of the straight line closest to ``points``."""
    if len(points) < 2:
        raise DeriveError("a slope needs at least two measured points")
    count = len(points)
    mean_x = sum(x for x, _ in points) / count
    mean_y = sum(y for _, y in points) / count
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        raise DeriveError("a slope needs at least two different sizes")
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread
    return slope, mean_y - slope * mean_x


def slope(template: str, sizes: list[int], lookup: Lookup) -> dict:
    """Ticks per byte: the least-squares slope of the medians of ``template`` over ``sizes``."""
    points, units, used, found_all = [], set(), [], []
    for size in sizes:
        key = template.format(size=size)
        found = lookup(key)
        if found is None or found.get("status") != "ok":
            continue
        points.append((float(size), float(found["median"])))
        units.add(found.get("unit", "ticks"))
        used.append(key)
        found_all.append(found)
    if len(units) > 1:
        raise DeriveError(f"the points mix units {sorted(units)}")
    _one_clock(found_all)
    kernels = {where_measured(found) for found in found_all}
    if len(kernels) > 1:
        raise DeriveError(f"the points mix figures of {' and '.join(sorted(kernels))}")
    per_byte, intercept = least_squares(points)
    if per_byte <= 0:
        # Copying more bytes cannot cost less: a slope at or below zero is this run's noise, not a cost.
        raise DeriveError(f"the fitted cost of a byte is {per_byte:.3g}: below this run's noise, so not a cost")
    unit = units.pop() if units else "ticks"
    rates = {found.get("tsc_hz") for found in found_all}
    # Real ticks of one clock (one run's calibration): the slope converts to ns a byte like its points.
    rate = rates.pop() if unit == "ticks" and len(rates) == 1 else None
    return {
        "status": "ok",
        "unit": f"{unit}/byte",
        "value": per_byte,
        "intercept": intercept,
        "from": used,
        "how": f"least-squares slope of the median over {len(points)} read sizes",
        **({"tsc_hz": rate} if rate else {}),
        **_carried(found_all),
    }


#: What each kind of acceleration makes of a guest's ticks: the clock its figures are read on.
CLOCKS = {
    "kvm": "the guest's own time stamp counter (KVM, real time)",
    "tcg": "the emulator's ticks (TCG: host time spent emulating)",
    "tcg-icount": "instructions executed (TCG -icount)",
}


def clock_of(measurement: dict) -> str:
    """The clock a figure was read on: this machine's TSC for the host, the guest's acceleration's otherwise."""
    if measurement.get("runner", "host") in ("host", "host-kernel"):
        return "this machine's time stamp counter"
    return CLOCKS.get(measurement.get("acceleration", ""), f"an unknown clock ({measurement.get('acceleration')})")


#: Plain emulation's ticks keep no proportions between kinds of work: measured here, copying a
#: byte cost about 230 times the host's and a whole call about 4 times. A figure that sets one
#: kind of work against another (``proportional = true``: a call's cost in bytes copied) is
#: refused on that clock.
DISTORTING = {CLOCKS["tcg"]}


def where_measured(measurement: dict) -> str:
    """The kernel and clock a figure was taken on: figures of different ones are never combined.

    A user-space program run on the host and a module loaded into the host's kernel
    (``host-kernel``) share one kernel and one clock; a guest's figures belong to its kernel
    and its acceleration (emulated ticks of one boot mean nothing beside another kernel's).
    """
    runner = measurement.get("runner", "host")
    if runner in ("host", "host-kernel"):
        return "this machine's kernel"
    return f"guest kernel {measurement.get('guest_kernel', '?')} ({measurement.get('acceleration', '?')})"


#: What a figure says about where it was measured, carried over to a figure derived from it.
WHERE = ("runner", "guest_kernel", "acceleration")


def _carried(measurements: list[dict]) -> dict:
    """The place of measurement the inputs share (see :func:`where_measured`), for the derived figure."""
    places = {json.dumps({k: m.get(k) for k in WHERE if m.get(k) is not None}, sort_keys=True) for m in measurements}
    return json.loads(places.pop()) if len(places) == 1 else {}


def _one_clock(measurements: list[dict], proportional: bool = False) -> None:
    """Refuse figures read on two clocks, or (``proportional``) on a clock that distorts proportions."""
    clocks = {clock_of(found) for found in measurements}
    if len(clocks) > 1:
        raise DeriveError(f"it would mix clocks: {' and '.join(sorted(clocks))}; derive from figures of one clock")
    if proportional and clocks & DISTORTING:
        raise DeriveError(
            f"it sets two kinds of work against each other, and {clocks.pop()} keep no proportions between them "
            "(emulated copying is slowed far more than the rest of a call): it needs a real clock or "
            "instruction counts (kvm or tcg-icount)"
        )


def evaluate(expression: str, unit: str, lookup: Lookup, proportional: bool = False) -> dict:
    """The value of ``expression``, its figures looked up; refused if it mixes kinds of ticks or kernels.

    Without a ``unit``, the figure is in its inputs' own unit (a difference of emulated ticks
    is in emulated ticks). ``proportional``: the expression sets two kinds of work against each
    other, which emulated ticks cannot do (see :data:`DISTORTING`).
    """
    used: list[str] = []
    tick_units: set[str] = set()
    kernels: set[str] = set()
    ticked: list[dict] = []

    def replace(match: re.Match) -> str:
        field, key = match[1], match[2]
        found = lookup(key)
        if found is None:
            raise DeriveError(f"{key} is not measured")
        if found.get("status") != "ok":
            raise DeriveError(f"{key} was not measured: {found.get('reason', found.get('status'))}")
        if found.get(field) is None:
            raise DeriveError(f"{key} has no {field}")
        kind = found.get("unit", "ticks").removesuffix("/byte")
        if "ticks" in kind:
            tick_units.add(kind)
            kernels.add(where_measured(found))
            ticked.append(found)
        used.append(key)
        return repr(float(found[field]))

    arithmetic = REFERENCE.sub(replace, expression)
    if len(tick_units) > 1:
        raise DeriveError(f"it would mix {' and '.join(sorted(tick_units))}, which are not comparable")
    _one_clock(ticked, proportional)
    if len(kernels) > 1:
        raise DeriveError(f"it would mix figures of {' and '.join(sorted(kernels))}, which are not comparable")
    if not unit:
        unit = tick_units.pop() if tick_units else ""
    value = _arithmetic(arithmetic)
    return {"status": "ok", "unit": unit, "value": value, "from": used, "how": expression, **_carried(ticked)}


def _arithmetic(text: str) -> float:
    """+ - * / and parentheses over numbers; anything else is refused (no eval)."""

    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            right = walk(node.right)
            if isinstance(node.op, ast.Div) and right == 0:
                raise DeriveError("division by zero")
            return _OPERATORS[type(node.op)](walk(node.left), right)
        raise DeriveError(f"not plain arithmetic: {ast.dump(node)[:80]}")

    try:
        return walk(ast.parse(text, mode="eval"))
    except SyntaxError as error:
        raise DeriveError(f"not plain arithmetic: {text!r}") from error


def check_expression(expression: str) -> None:
    """Refuse (DeriveError) an expression that is not arithmetic over figures, before anything runs."""
    try:
        _arithmetic(REFERENCE.sub("1", expression))
    except DeriveError as error:
        # 1 stands for every figure, so (a - b) is 0 here; only the grammar is checked.
        if "division by zero" not in str(error):
            raise


def derive(spec: dict, lookup: Lookup) -> dict:
    """One ``[[derive]]`` entry's figure, or a skipped record saying why it could not be computed."""
    try:
        if spec.get("kind") == "slope":
            result = slope(spec["points"], list(spec["sizes"]), lookup)
        else:
            result = evaluate(spec["expression"], spec.get("unit", ""), lookup, bool(spec.get("proportional")))
    except DeriveError as error:
        return {"status": "skipped", "reason": f"not derived: {error}", "measured_at": now()}
    return {**result, "derived": True, "measured_at": _newest_input(result["from"], lookup)}


def _newest_input(used: list[str], lookup: Lookup) -> str:
    """When a derived figure's inputs were measured: the newest of their dates (now, when none has one).

    A student's rerun keeps the figures of the programs it does not rerun, each with its date: a
    figure derived from kept ones alone is then the same figure, with the same date, as before.
    """
    dates = [str(found["measured_at"]) for key in used if (found := lookup(key)) and found.get("measured_at")]
    return max(dates, default="") or now()
