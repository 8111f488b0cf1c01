"""The result sets as the site sees them: which exist, which is this machine's, which are shown."""

from __future__ import annotations

import contextlib
import hashlib
import re
import unicodedata
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sphinx.environment import BuildEnvironment
from sphinx.errors import SphinxError

from course.kernel import guest_kernels
from course.publish import edition
from course.results import code_parts, fingerprint, store
from course.results.store import ResultSet

#: Fields a page may ask of a measurement, and how each is worded.
FIELDS = {
    "min": "minimum",
    "median": "median",
    "p90": "90th percentile",
    "p99": "99th percentile",
    "max": "maximum",
    "mean": "mean",  # what peers such as perf bench report
    "value": "value",  # a benchmark's single figure
}

#: A table or chart shows at most this many sets each in its own column (or bar). Beyond, it shows the
#: reference, this machine and the guest kernels, and sums the other machines up as one: the class.
SETS_IN_FULL = 6

#: The class's place where a set id would go (its colour, its column): no set is called that (ids are slugs).
CLASS = "the class"


@dataclass
class Lookup:
    """A measurement found (or not) in a set, with the file it came from."""

    result_set: ResultSet
    measurement: dict | None
    file: Path | None
    #: The measurement looked up (:meth:`CourseData.find`); empty when the lookup stands for the whole file.
    measurement_id: str = ""


class CourseData:
    """Every result set under the results folder, loaded once per build."""

    def __init__(
        self, results: Path, code_root: Path, current: str = "", shown: list[str] | None = None, processes: int = 1
    ) -> None:
        self.results = results
        self.code_root = code_root
        self._digests: dict[str, str | None] = {}  # source key -> its digest today (None: its file is gone)
        self.sets = store.load_all(results, processes=processes)  # processes: the cores Sphinx was given (-j)
        # Whether the current set is the building machine's own: given (invoke passes this machine's set, or the
        # user's --set), or found under this machine's name. False where the site shows the newest measured set in
        # its place (a fresh clone, a student before measuring): then no page may call that set "this machine".
        self.current_id, self.current_is_this_machine = (current, True) if current else self._guess_current()
        # Chosen sets (course_sets, `invoke site --sets`) are what tables and charts compare; the 2000 reference
        # and this machine are always among them, and every set keeps its page.
        always = [i for i, s in self.sets.items() if s.kind == "reference" or i == self.current_id]
        self.shown_ids = [*always, *(i for i in shown if i not in always)] if shown else list(self.sets)

    def _guess_current(self) -> tuple[str, bool]:
        """This machine's set if it has one, else the most recently measured set; never an imported one, nor a guest's.

        An imported set is another machine's whatever its name or date (an archive may say 9999). With it, whether
        the set is this machine's own (False: the newest measured set stands in for it; none at all: "", False).
        """
        measured = [s for s in self.sets.values() if s.kind != "reference" and not s.info.get("imported")]
        # A kernel matrix's set holds one guest kernel's lessons only (course.matrix): never the site's own.
        measured = [s for s in measured if not guest_kernels.matrix_guest(s)]
        mine = fingerprint.set_name()
        if any(s.id == mine for s in measured):
            return mine, True
        return (max(measured, key=lambda s: s.updated()).id if measured else ""), False

    @property
    def current(self) -> ResultSet | None:
        return self.sets.get(self.current_id)

    @property
    def signature(self) -> str:
        """Changes when a set appears or disappears, or the current set becomes (or stops being) this machine's own,
        so pages that list sets, or mark the current one, are rebuilt."""
        own = "own" if self.current_is_this_machine else "stand-in"
        return hashlib.sha256(" ".join([own, self.current_id, *self.sets]).encode()).hexdigest()

    def shown(self) -> list[ResultSet]:
        """The sets a table shows: reference sets first, then this machine, then the others (those chosen).

        Not the sets of guests shown another CPU model or kernel parameters (``--guest-cpu``,
        ``--guest-append``): lesson 8's mitigations section reads them by name; in every other
        chart they would double each guest kernel. They have their pages (:meth:`with_pages`).
        """
        chosen = [s for s in self.with_pages() if s.id in self.shown_ids]
        return [s for s in chosen if not guest_kernels.other_hardware(s)]

    def with_pages(self) -> list[ResultSet]:
        """Every set, each with its page and downloads (``course_sets`` chooses what the tables compare).

        Not a set whose folder name cannot name a page (``store.page_name_problem``: a set copied by hand as
        ``index``): the site warns of it and shows it nowhere.
        """
        named = [s for s in self.sets.values() if not store.page_name_problem(s.id)]
        return sorted(named, key=lambda s: (s.kind != "reference", s.id != self.current_id, *_kernel_order(s)))

    def compared(self, sets: list[ResultSet]) -> tuple[list[ResultSet], list[ResultSet]]:
        """``sets`` as a table or chart compares them: those shown one by one, and those summed up as the class.

        Up to :data:`SETS_IN_FULL`, every set is shown; beyond, the 2000 reference, this machine and the guest
        kernels (the kernel matrix) still are, and the other machines (a lab's, the students') make the class.
        """
        if len(sets) <= SETS_IN_FULL:
            return sets, []
        own = [s for s in sets if s.kind == "reference" or s.id == self.current_id or guest_kernels.matrix_guest(s)]
        return own, [s for s in sets if s not in own]

    def lesson_sets(self) -> list[ResultSet]:
        """The sets a lesson's tables and charts show: the shown ones, one build of each machine.

        Sets that differ only in the host kernel's build tag (the same CPU and kernel release,
        ``6.18.44-fc-v595`` and ``-v782``) answer a lesson's question once: the newest (this
        machine's, if it is one of them) stands for them. The machine pages keep every set.
        """
        shown = self.shown()
        newest: dict[tuple, ResultSet] = {}
        for result_set in shown:
            key = same_hardware(result_set)
            if key is None:
                continue
            kept = newest.get(key)
            if kept is None or self._newer(result_set, kept):
                newest[key] = result_set
        return [s for s in shown if (key := same_hardware(s)) is None or newest[key] is s]

    def _newer(self, one: ResultSet, other: ResultSet) -> bool:
        if self.current_id in (one.id, other.id):
            return one.id == self.current_id
        return (one.updated(), one.id) > (other.updated(), other.id)

    def colour_of(self, set_id: str) -> int:
        """The set's colour (an index in the charts' palette), the same in every chart of the site.

        The sets a lesson shows come first, so that its charts never repeat a colour; beyond a handful, those
        it shows one by one, then the class (:data:`CLASS`), then the class's sets.
        """
        own, pooled = self.compared(self.lesson_sets())
        lesson_ids = [s.id for s in own] + ([CLASS] if pooled else []) + [s.id for s in pooled]
        order = lesson_ids + [s.id for s in self.shown() if s.id not in lesson_ids]
        return order.index(set_id) if set_id in order else len(order)

    def find(self, measurement_id: str, set_id: str = "") -> Lookup | None:
        """The measurement in ``set_id`` (default: this machine's set); None if there is no such set."""
        result_set = self.sets.get(set_id or self.current_id)
        if result_set is None:
            return None
        found = result_set.measurement(measurement_id)
        lesson = measurement_id.split("/", 1)[0]
        file = result_set.lesson_file(lesson)
        if not file.is_file():
            file = result_set.lesson_file("reference")
        return Lookup(result_set, found, file if file.is_file() else None, measurement_id)

    def stale_sources(self, measurement: dict) -> list[str]:
        """The sources that changed since ``measurement`` was taken (empty when it is current).

        A source is a file of the checkout, or some definitions of one (course.results.code_parts:
        the course's code that shaped a guest); each is read and hashed once per build.

        A student copy has no solutions: a figure the course measured with one (lesson 9's zero-copy
        server is built from its solution) cannot be checked against it there, and is not stale for its lack.
        """
        changed = []
        for source_key, digest in measurement.get("sources", {}).items():
            if source_key not in self._digests:
                self._digests[source_key] = code_parts.current(self.code_root, source_key)
            if self._digests[source_key] is None and self._left_out(source_key):
                continue
            if self._digests[source_key] != digest:
                changed.append(source_key)
        return changed

    def _left_out(self, source_key: str) -> bool:
        """Whether ``source_key`` is a solution this checkout (a student copy) left out on purpose."""
        return edition.is_solution(source_key) and edition.of_checkout(self.code_root) == "student"

    def checks_sources(self, set_id: str) -> bool:
        """Whether a figure of ``set_id`` must match today's code: this machine's, and the kernel matrix's sets.

        This checkout measured both; another build of this machine's (an older kernel) or another
        machine's set (imported) measured the code of its day, and says so with its date.
        """
        result_set = self.sets.get(set_id)
        return set_id == self.current_id or (result_set is not None and bool(guest_kernels.matrix_guest(result_set)))


#: A host kernel's build tag at the end of its release (``6.18.44-fc-v782``): another build of one release.
_BUILD_TAG = re.compile(r"-v\d+$")


def same_hardware(result_set: ResultSet) -> tuple | None:
    """What a set shares with other builds of its machine (CPU, kernel release without its build tag), or None.

    Only a measured host set whose kernel release carries a build tag has other builds; the 2000
    reference and the kernel matrix's guest sets never do, nor an imported set: it is another machine
    (a lab's PCs, a class's VMs), however alike its CPU and kernel are. The CPU is its model name and,
    where the set records them, its vendor, family, model and stepping: a set of another CPU generation
    under the same generic name ("AMD EPYC") is another machine too, and so is one whose CPU is known
    beside one stored before the identity was recorded (nothing says they are the same).
    """
    if result_set.kind == "reference" or result_set.info.get("guest") or result_set.info.get("imported"):
        return None
    machine = result_set.machine
    release = str(machine.get("kernel_release", ""))
    base = _BUILD_TAG.sub("", release)
    if base == release:
        return None
    identity = tuple(machine.get(key) for key in fingerprint.CPU_IDENTITY)
    return (machine.get("cpu_model"), *identity, base, machine.get("virtualization"), machine.get("cpu_count"))


#: The data of each build, kept beside (not inside) its environment so it is never pickled.
_LOADED: weakref.WeakKeyDictionary[BuildEnvironment, CourseData] = weakref.WeakKeyDictionary()


def attach(env: BuildEnvironment, data: CourseData) -> None:
    _LOADED[env] = data


def data_of(env: BuildEnvironment) -> CourseData:
    return _LOADED[env]


class ResultSetError(SphinxError):
    """A set's figures that the site cannot show: Sphinx prints the message, which names the set and the fix."""

    category = "Result set error"


def _kernel_order(result_set: ResultSet) -> tuple[str, int, str]:
    """By id, but the kernel matrix's guests in the kernels' own order (6.1, 6.12, 6.1-rt), as the answers give them."""
    name = guest_kernels.matrix_guest(result_set).get("name")
    if name not in guest_kernels.KERNELS:
        return (result_set.id, 0, result_set.id)
    return (result_set.id.partition(name)[0], list(guest_kernels.KERNELS).index(name), result_set.id)


@contextlib.contextmanager
def shown_from(result_set: ResultSet | None) -> Iterator[None]:
    """Turn a crash on ``result_set``'s figures into one line naming the set and the fix.

    Every file is checked when it is read (:mod:`course.results.validate`), so this is the last guard: a
    check that misses a case must still name the set to delete, not end in a bare ``KeyError``.
    """
    try:
        yield
    except (ArithmeticError, LookupError, TypeError, ValueError) as error:
        if result_set is None:
            raise
        raise ResultSetError(
            f"result set {result_set.id!r} ({result_set.path}) cannot be shown "
            f"({type(error).__name__}: {str(error)[:120]}); remove that folder, or restore it from a good copy"
        ) from error


def shown_text(text: str) -> str:
    """``text`` with its control characters (but line breaks and tabs) shown as escapes (\\x1b, \\x00).

    A capture is what a program printed: a NUL or an escape sequence has no place in a page.
    """
    return _CONTROL.sub(lambda match: repr(match[0])[1:-1], text)


_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def format_value(value: float, unit: str) -> str:
    """A figure as a reader wants it: no false precision, thousands grouped."""
    if unit == "ns":
        return f"{value:,.1f} ns" if value < 100 else f"{value:,.0f} ns"
    if unit == "%":
        # A share of tens of percent from medians is not known to a hundredth; a small spread may be.
        if value and abs(value) < 0.005:  # two places would print it as 0.00 % (or -0.00 %): two digits instead
            return f"{value:.2g} %"
        return f"{value:.1f} %" if abs(value) >= 10 else f"{value:.2f} %"
    if unit == "s":
        return f"{value:,.1f} s"
    if unit == "x":  # a ratio of two times (the lab's two hosts over one): its goal, 1.5, is a fraction too
        return f"{value:.2f} x"
    if unit == "r":  # a rank correlation, between -1 and 1
        return f"r = {value:.2f}"
    if unit.endswith("/byte"):  # a thousandth of a tick or ns; no needless zeros: 4 ns/byte, not 4.000
        return f"{value:.3f}".rstrip("0").rstrip(".") + f" {unit}"
    if round(value) == 1 and unit.endswith("s") and unit != "s":  # 1 call, 1 byte, 1 tick: the noun's singular
        unit = unit[:-1]
    return f"{value:,.0f} {unit}"  # ticks of every kind are whole numbers


def to_ns(ticks: float | None, tsc_hz: float | None) -> float | None:
    return ticks / tsc_hz * 1e9 if tsc_hz and ticks is not None else None


def one_line(text: str) -> str:
    """``text`` on one line, without invisible characters: control and format characters (a bidi
    override, which would show the rest of a note reversed) and line separators become spaces.

    Hover notes and the touch note are plain text built from result sets, which may be anyone's.
    """
    return "".join(" " if unicodedata.category(char)[0] in "CZ" and char != " " else char for char in text)


def describe(lookup: Lookup, field: str, in_ns: bool = False) -> str:
    """The hover text of a value: what it is, how it was taken, where and when (and, in ns, from what)."""
    measurement = lookup.measurement or {}
    s = lookup.result_set
    parts = [
        f"{FIELDS.get(field, field)} of {measurement.get('samples', '?'):,}"
        if isinstance(measurement.get("samples"), int)
        else FIELDS.get(field, field)
    ]
    if isinstance(measurement.get("samples"), int):
        parts[0] += " samples"
    overhead = measurement.get("overhead") or {}
    if overhead.get("ticks"):
        # In the measurement's own unit: a guest's stamp pair costs emulated or icount ticks.
        stamp_pair = format_value(overhead["ticks"], measurement.get("unit", "ticks"))
        parts.append(f"stamp-pair cost of {stamp_pair} subtracted")
    if measurement.get("how"):
        parts.append(f"computed as {measurement['how']}")
    raw, rate = measurement.get(field), measurement.get("tsc_hz")
    if in_ns and isinstance(raw, (int, float)) and rate:
        # The machine page lists ticks: say which ones this nanosecond figure converts.
        parts.append(f"{format_value(raw, measurement.get('unit', 'ticks'))} at the TSC rate of {rate / 1e6:,.0f} MHz")
    parts.append(f"result set {s.label}")
    if measurement.get("measured_at"):
        parts.append(f"measured {measurement['measured_at']}")
    if s.info.get("citation"):
        parts.append(s.info["citation"])
    return one_line("; ".join(parts))
