"""Where the path of one read changed between two kernels: two ``function_graph`` call graphs compared.

The graphs are lesson 2's captures (:func:`course.kernel.guest_records.record_trace`): one call per line,
two spaces of indentation per level, ``name() {`` opening a call with callees, ``name();`` a call
without, ``}`` closing. A function is *added* when only the new graph calls it, *removed* when
only the old one does, and *moved* when both call it but not from the same callers (its parent
lines differ): ``mutex_lock()`` moving from ``__fdget_pos()`` to ``fdget_pos()``, or
``__rcu_read_lock()`` called from ``rt_spin_lock()`` too.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Call:
    """One line of a call graph: the function, who called it (``""`` at the top) and how deep."""

    name: str
    caller: str
    depth: int


@dataclass
class TraceDiff:
    """What changed from one graph to another."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    #: name, the callers only the old graph has, the callers only the new one has (``""``: the top)
    moved: list[tuple[str, list[str], list[str]]] = field(default_factory=list)
    diff: list[str] = field(default_factory=list)  # the two graphs as one unified diff, whole

    @property
    def same(self) -> bool:
        return not (self.added or self.removed or self.moved or any(line[:1] in "+-" for line in self.diff[2:]))


def calls(graph: str) -> list[Call]:
    """The calls of a call graph's text, in order; closing braces, notes and markers are not calls."""
    found: list[Call] = []
    stack: list[str] = []  # the open callers, outermost first
    for line in graph.splitlines():
        text = line.strip()
        if not text or text.startswith(("}", "/*", "[")) or "(" not in text:
            continue
        depth = (len(line) - len(line.lstrip(" "))) // 2
        del stack[depth:]
        name = text.split("(", 1)[0].strip()
        found.append(Call(name, stack[-1] if stack else "", depth))
        if text.endswith("{"):
            stack.append(name)
    return found


def compare(old: str, new: str, old_name: str = "old", new_name: str = "new") -> TraceDiff:
    """Functions added, removed and moved from graph ``old`` to graph ``new``, and the whole unified diff."""
    before, after = calls(old), calls(new)
    names_before = list(dict.fromkeys(call.name for call in before))
    names_after = list(dict.fromkeys(call.name for call in after))
    callers_before = {name: sorted({c.caller for c in before if c.name == name}) for name in names_before}
    callers_after = {name: sorted({c.caller for c in after if c.name == name}) for name in names_after}
    result = TraceDiff(
        added=[name for name in names_after if name not in callers_before],
        removed=[name for name in names_before if name not in callers_after],
        moved=[
            (
                name,
                [caller for caller in callers_before[name] if caller not in callers_after[name]],
                [caller for caller in callers_after[name] if caller not in callers_before[name]],
            )
            for name in names_after
            if name in callers_before and callers_before[name] != callers_after[name]
        ],
    )
    old_lines, new_lines = old.splitlines(), new.splitlines()
    # All the context: a student reads the whole path with its changes marked, not fragments.
    context = max(len(old_lines), len(new_lines))
    result.diff = list(difflib.unified_diff(old_lines, new_lines, old_name, new_name, n=context, lineterm=""))
    return result
