"""A ``function_graph`` trace cut into the call graph of each read that readtrace.c marked."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: The most lines of one read's call graph kept in its capture; the rest are counted, not kept.
GRAPH_LINES = 150


#: The longest line of a call graph kept whole (a kernel symbol is far shorter).
GRAPH_LINE_CHARS = 160


#: A marker the traced program writes into the trace before and after each read (readtrace.c).
MARKER = re.compile(r"/\* course-trace (?P<what>begin|end) (?P<kind>[a-z]+)(?: returned (?P<returned>-?\d+))? \*/")


#: What may stand before the call graph's column: the CPU, an overhead mark, a duration.
_COLUMNS = re.compile(r"\s*(\d+\)\s*)?([+!#*@$]\s*)?([\d.]+\s*us\s*)?")


@dataclass
class CallGraph:
    """The call graph of one traced read, as function_graph printed it, and what the read returned."""

    kind: str
    lines: list[str] = field(default_factory=list)
    returned: int | None = None

    def text(self) -> str:
        """The graph, its common indentation removed, at most ``GRAPH_LINES`` lines of ``GRAPH_LINE_CHARS``."""
        indent = min((len(line) - len(line.lstrip()) for line in self.lines if line.strip()), default=0)
        lines = [line[indent:].rstrip() for line in self.lines]
        kept = [line if len(line) <= GRAPH_LINE_CHARS else line[: GRAPH_LINE_CHARS - 3] + "..." for line in lines]
        if len(kept) > GRAPH_LINES:
            dropped = len(kept) - GRAPH_LINES + 1
            kept = [*kept[: GRAPH_LINES - 1], f"[... {dropped} more lines of this call graph not kept]"]
        return "\n".join(kept)


def _graph_column(line: str) -> str | None:
    """The call-graph part of one line of function_graph output, or None for a header or a note."""
    if not line.strip() or line.lstrip().startswith("#"):
        return None
    head, bar, tail = line.partition("|")
    if bar and _COLUMNS.fullmatch(head):  # the CPU or duration columns were on after all
        line = tail
    stripped = line.strip()
    # A context switch ("---" rulers, "a-12 => b-34") or a note of lost events is no call.
    if re.fullmatch(r"-{8,}", stripped) or " => " in stripped or stripped.startswith(("CPU:", "##")):
        return None
    return line.rstrip()


def call_graphs(trace: str) -> dict[str, list[CallGraph]]:
    """Each kind's call graphs in a function_graph trace marked by readtrace.c: what ran between its markers.

    The trace is cut into top-level calls by their braces; a call that holds a marker is the
    marker's own write, one between a kind's ``begin`` and ``end`` markers is its read. A
    closing brace with no opening one ends a call that began before tracing was on. A kind
    read in several rounds has one graph per round, in order.
    """
    calls: list[list[str]] = []
    depth = 0
    for raw in trace.splitlines():
        line = _graph_column(raw)
        if line is None:
            continue
        stripped = line.strip()
        closes = stripped == "}" or stripped.startswith("} ")
        opens = stripped.endswith("{")
        if depth == 0:
            if not closes:
                calls.append([line])
                depth = 1 if opens else 0
            continue
        calls[-1].append(line)
        depth += 1 if opens else -1 if closes else 0
    graphs: dict[str, list[CallGraph]] = {}
    current: CallGraph | None = None
    for call in calls:
        markers = [found for found in (MARKER.fullmatch(line.strip()) for line in call) if found]
        for marker in markers:
            if marker["what"] == "begin":
                current = CallGraph(marker["kind"])
                graphs.setdefault(marker["kind"], []).append(current)
            elif current is not None and current.kind == marker["kind"]:
                current.returned = int(marker["returned"]) if marker["returned"] else None
                current = None
        if not markers and current is not None:
            current.lines += call
    return graphs
