"""The lessons' Graphviz diagrams as Graphviz lays them out: no edge runs through a cluster's label."""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
from html import unescape
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Roughly how wide a character of the diagrams' sans-serif font is, as a share of its size.
CHARACTER_WIDTH = 0.6


def _diagrams(lesson: str) -> list[str]:
    text = (ROOT / "lessons" / lesson).read_text(encoding="utf-8")
    return [block.split("\n\n", 1)[-1] for block in re.findall(r"```\{graphviz\}\n(.*?)\n```", text, re.S)]


def _svg(dot: str) -> str:
    if shutil.which("dot") is None:
        pytest.fail("Graphviz's dot is needed: invoke setup --tests installs it")
    return subprocess.run(["dot", "-Tsvg"], input=dot, capture_output=True, text=True, check=True).stdout


def _cluster_labels(svg: str) -> list[tuple[str, tuple[float, float, float, float]]]:
    """Each cluster's label and the box its text covers (x0, y0, x1, y1, in the SVG's units)."""
    boxes = []
    for group in re.findall(r'<g id="clust\d+" class="cluster">(.*?)</g>', svg, re.S):
        found = re.search(
            r'<text text-anchor="(\w+)" x="([-\d.]+)" y="([-\d.]+)"[^>]*font-size="([\d.]+)"[^>]*>([^<]*)<', group
        )
        assert found, "each cluster of the diagram has its label"
        anchor, x, y, size, label = found[1], float(found[2]), float(found[3]), float(found[4]), found[5]
        width = len(label) * size * CHARACTER_WIDTH
        left = {"start": x, "middle": x - width / 2, "end": x - width}[anchor]
        boxes.append((label, (left, y - size, left + width, y + size * 0.25)))
    return boxes


def _edge_points(svg: str) -> list[tuple[str, float, float]]:
    """Points along each edge: its path (each Bézier segment sampled) and its arrowhead's corners."""
    points = []
    for title, group in re.findall(r'<g id="edge\d+" class="edge">\s*<title>([^<]*)</title>(.*?)</g>', svg, re.S):
        for path in re.findall(r'<path[^>]* d="([^"]+)"', group):
            numbers = [float(n) for n in re.findall(r"-?[\d.]+", path)]
            xy = list(zip(numbers[::2], numbers[1::2], strict=True))
            for start in range(0, len(xy) - 3, 3):
                p0, p1, p2, p3 = xy[start : start + 4]
                for step in range(21):
                    t = step / 20
                    x = (1 - t) ** 3 * p0[0] + 3 * (1 - t) ** 2 * t * p1[0] + 3 * (1 - t) * t**2 * p2[0] + t**3 * p3[0]
                    y = (1 - t) ** 3 * p0[1] + 3 * (1 - t) ** 2 * t * p1[1] + 3 * (1 - t) * t**2 * p2[1] + t**3 * p3[1]
                    points.append((title, x, y))
        for polygon in re.findall(r'<polygon[^>]* points="([^"]+)"', group):
            points += [(title, float(x), float(y)) for x, y in (pair.split(",") for pair in polygon.split())]
    return points


def _crossings(svg: str) -> list[str]:
    labels = _cluster_labels(svg)
    return sorted(
        {
            f"{unescape(edge)} crosses the label {label!r}"
            for edge, x, y in _edge_points(svg)
            for label, (x0, y0, x1, y1) in labels
            if x0 <= x <= x1 and y0 <= y <= y1
        }
    )


def test_lesson_2s_read_path_keeps_its_arrows_off_the_user_and_kernel_space_labels() -> None:
    diagrams = _diagrams("02-read-path.md")
    assert len(diagrams) == 1 and "cluster_kernel" in diagrams[0]
    svg = _svg(diagrams[0])
    assert [label for label, _ in _cluster_labels(svg)] == ["user space", "kernel space"]
    assert _crossings(svg) == []


def test_an_arrow_through_a_centred_cluster_label_is_found() -> None:
    # The figure as it was: labels centred over the syscall arrow, which enters the kernel at the centre.
    centred = _diagrams("02-read-path.md")[0].replace(" labeljust=l;", "")
    assert _crossings(_svg(centred)) == ["libc->entry crosses the label 'kernel space'"]


def _cluster_box(svg: str, name: str) -> tuple[float, float, float, float]:
    """The box (x0, y0, x1, y1) of the cluster called ``name`` (its dashed border)."""
    for group in re.findall(r'<g id="clust\d+" class="cluster">(.*?)</g>', svg, re.S):
        if re.search(r"<title>([^<]*)</title>", group)[1] == name:
            corners = [tuple(map(float, pair.split(","))) for pair in re.search(r'points="([^"]+)"', group)[1].split()]
            xs, ys = [x for x, _ in corners], [y for _, y in corners]
            return min(xs), min(ys), max(xs), max(ys)
    raise AssertionError(f"no cluster {name}")


#: How close to a border an arrow may run before it reads as running along it, in the SVG's units (points).
CLEARANCE = 6


def test_lesson_2s_way_back_runs_clear_of_the_kernel_space_border() -> None:
    svg = _svg(_diagrams("02-read-path.md")[0])
    _, top, right, bottom = _cluster_box(svg, "cluster_kernel")
    back = [(edge, x, y) for edge, x, y in _edge_points(svg) if "libc" in unescape(edge) and "entry" not in edge]
    assert back, "the way back is drawn"
    along = [(round(x), round(y)) for _, x, y in back if top <= y <= bottom and abs(x - right) < CLEARANCE]
    assert not along, f"the way back runs along the kernel-space border at {along}"


def test_a_name_with_an_underscore_keeps_clear_of_the_line_below_it() -> None:
    """An underscore sits on the baseline: lines of a node a font size apart put it on the next line's capitals."""
    svg = _svg(_diagrams("02-read-path.md")[0])
    close = []
    for group in re.findall(r'<g id="node\d+" class="node">(.*?)</g>', svg, re.S):
        lines = re.findall(r'<text[^>]* y="([-\d.]+)"[^>]*font-size="([\d.]+)"[^>]*>([^<]*)<', group)
        for (y, size, text), (below, _, _) in itertools.pairwise(lines):
            if "_" in text and float(below) - float(y) < 1.2 * float(size):
                close.append(unescape(text))
    assert not close, f"these names touch the line below them: {close}"
