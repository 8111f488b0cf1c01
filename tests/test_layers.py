"""Imports in course/ run one way: each layer imports only the layers below it, and no import closes a cycle.

The imports are read with ``ast``, at the top of a module and inside its functions alike: an
import moved into a function still runs upward, and still closes a cycle if it does. A lazy
import that points down (kept for start-up speed) passes; one that exists only to dodge a cycle
or an upward import fails with the rest.
"""

from __future__ import annotations

import ast
import itertools
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: The layers of ``course/``, bottom first; packages of one layer never import each other.
#: ``""`` is the package's own modules (``commands``, ``pipeline``, ``bench``, ``matrix``...): the top.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("results",),
    ("measure",),
    ("kernel",),
    ("publish",),
    ("classroom", "lab"),
    ("",),
)


@dataclass(frozen=True)
class Import:
    """One import of a module of the package by another, and where it stands."""

    importer: str
    imported: str
    file: Path
    line: int
    lazy: bool  # inside a function


def module_name(package: Path, file: Path) -> str:
    parts = [package.name, *file.relative_to(package).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(package: Path) -> tuple[set[str], list[Import]]:
    """Every module of ``package`` (a folder) and every import between two of them."""
    files = sorted(package.rglob("*.py"))
    modules = {module_name(package, file) for file in files}
    found: list[Import] = []
    for file in files:
        found += _imports_in(file, module_name(package, file), modules)
    return modules, found


def _imports_in(file: Path, importer: str, modules: set[str]) -> list[Import]:
    found: list[Import] = []
    own_package = importer.split(".") if file.name == "__init__.py" else importer.split(".")[:-1]

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            targets: list[str] = []
            if isinstance(child, ast.Import):
                targets = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: from the importer's own package, or above it
                    above = own_package[: len(own_package) - child.level + 1]
                    base = ".".join(above + ([child.module] if child.module else []))
                # ``from course.measure import lessons`` imports the module course.measure.lessons
                named = [f"{base}.{alias.name}" for alias in child.names if f"{base}.{alias.name}" in modules]
                targets = named or [base]
            for target in targets:
                while target not in modules and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in modules and target != importer:
                    found.append(Import(importer, target, file, child.lineno, inner))
            visit(child, inner)

    visit(ast.parse(file.read_text(encoding="utf-8"), str(file)), False)
    return found


def layer_of(module: str, subpackages: set[str]) -> str | None:
    """The layer a module belongs to: its subpackage's name, ``""`` for the package's own modules, None for the root."""
    parts = module.split(".")
    if len(parts) == 1:
        return None  # the package's __init__ (its version): below every layer
    if len(parts) == 2 and module not in subpackages:
        return ""
    return parts[1]


def rank(layer: str, layers: tuple[tuple[str, ...], ...]) -> int:
    return next(index for index, names in enumerate(layers) if layer in names)


def cycles(modules: set[str], imports: list[Import]) -> list[list[str]]:
    """The import cycles (strongly connected components of more than one module), each sorted."""
    edges: dict[str, set[str]] = {module: set() for module in modules}
    for found in imports:
        edges[found.importer].add(found.imported)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[list[str]] = []

    def connect(module: str) -> None:  # Tarjan's algorithm
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in sorted(edges[module]):
            if other not in index:
                connect(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                popped = stack.pop()
                on_stack.discard(popped)
                component.append(popped)
                if popped == module:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for module in sorted(modules):
        if module not in index:
            connect(module)
    return result


def problems(package: Path, layers: tuple[tuple[str, ...], ...] = LAYERS) -> list[str]:
    """Every import of ``package`` that runs upward or sideways between layers, and every cycle: one line each."""
    subpackages = {f"{package.name}.{path.parent.name}" for path in package.glob("*/__init__.py")}
    modules, imports = imports_of(package)
    known = {name for names in layers for name in names}
    said: list[str] = []
    for subpackage in sorted(subpackages):
        if subpackage.split(".")[1] not in known:
            said.append(f"{subpackage} is in no layer: add it to LAYERS (tests/test_layers.py) and to docs/")
    for found in imports:
        mine, theirs = layer_of(found.importer, subpackages), layer_of(found.imported, subpackages)
        if theirs is None or mine is None or mine == theirs or mine not in known or theirs not in known:
            continue
        said_import = (
            f"{found.file.relative_to(package.parent)}:{found.line}: {found.importer} imports {found.imported}"
        )
        how = " inside a function" if found.lazy else ""
        name = theirs or "the top"
        if rank(mine, layers) < rank(theirs, layers):
            said.append(f"{said_import}{how} upward ({mine} is below {name})")
        elif rank(mine, layers) == rank(theirs, layers):
            said.append(f"{said_import}{how} sideways ({mine} and {name} are one layer)")
    for cycle in cycles(modules, imports):
        lazy = [f"{i.importer} -> {i.imported}" for i in imports if i.lazy and {i.importer, i.imported} <= set(cycle)]
        dodge = f" (dodged by an import inside a function: {', '.join(lazy)})" if lazy else ""
        said.append(f"import cycle: {' <-> '.join(cycle)}{dodge}")
    return said


def test_the_course_imports_run_one_way() -> None:
    found = problems(ROOT / "course")
    assert found == [], "\n".join(found)


def test_every_module_is_read_lazy_imports_too() -> None:
    """The checker sees the course whole: its modules, and the imports its functions make (the lazy ones kept)."""
    modules, imports = imports_of(ROOT / "course")
    assert {"course.pipeline", "course.results.store", "course.publish.sphinxext.figures"} <= modules
    lazy = {(i.importer, i.imported) for i in imports if i.lazy}
    assert ("course.pipeline", "course.kernel.kernel_runs") in lazy  # kept for start-up speed, and downward


def _plant(root: Path, files: dict[str, str]) -> Path:
    package = root / "course"
    for name in ["__init__.py", *(f"{layer}/__init__.py" for names in LAYERS for layer in names if layer)]:
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text('"""A package."""\n')
    for name, text in files.items():
        (package / name).write_text(text)
    return package


def test_an_upward_import_fails(tmp_path: Path) -> None:
    package = _plant(
        tmp_path,
        {
            "results/store.py": "from course.measure import runners\n",
            "measure/runners.py": "from course.results import store\n",
            "commands.py": "from course.measure import runners\n",
        },
    )
    found = problems(package)
    print("\n".join(found))
    assert "course/results/store.py:1: course.results.store imports course.measure.runners upward" in found[0]
    assert "(results is below measure)" in found[0]
    assert any(line.startswith("import cycle: course.measure.runners <-> course.results.store") for line in found)
    assert len(found) == 2, "the top importing downward is no problem"


def test_an_import_inside_a_function_does_not_hide_a_cycle(tmp_path: Path) -> None:
    package = _plant(
        tmp_path,
        {
            "measure/pipeline.py": "from course.measure import kernel_runs\n",
            "measure/kernel_runs.py": "def measure():\n    from course.measure import pipeline\n",
            "publish/site.py": "def build():\n    from course.lab import remote\n",
            "lab/remote.py": "",
        },
    )
    found = problems(package)
    print("\n".join(found))
    assert found == [
        "course/publish/site.py:2: course.publish.site imports course.lab.remote inside a function upward "
        "(publish is below lab)",
        "import cycle: course.measure.kernel_runs <-> course.measure.pipeline "
        "(dodged by an import inside a function: course.measure.kernel_runs -> course.measure.pipeline)",
    ]


def test_packages_of_one_layer_never_import_each_other(tmp_path: Path) -> None:
    package = _plant(tmp_path, {"lab/remote.py": "from course.classroom import grading\n", "classroom/grading.py": ""})
    assert problems(package) == [
        "course/lab/remote.py:1: course.lab.remote imports course.classroom.grading sideways "
        "(lab and classroom are one layer)"
    ]


def test_a_subpackage_outside_the_layers_is_named(tmp_path: Path) -> None:
    package = _plant(tmp_path, {})
    (package / "extras").mkdir()
    (package / "extras" / "__init__.py").write_text("")
    assert problems(package) == ["course.extras is in no layer: add it to LAYERS (tests/test_layers.py) and to docs/"]


def test_the_architecture_page_draws_these_layers() -> None:
    """docs/architecture.md draws this map: an arrow from each layer's package to each package of the layer below."""
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    drawn = set(re.findall(r"^\s*(\w+) -> (\w+);", page, re.M))
    named = [[name or "top" for name in names] for names in LAYERS]
    expected = {(upper, lower) for below, above in itertools.pairwise(named) for upper in above for lower in below}
    assert drawn == expected
