"""A figure's source that is part of a Python file: the definitions that shape what a guest runs.

Most of a figure's sources are whole files of ``code/`` (a program, a module), hashed as they
are. The guest from memory (:mod:`course.kernel.ram_guest`) also runs what the course's own
Python writes for it: its ``/init``, the files packed into its initramfs, QEMU's options. A
change there changes the counts, so those definitions are among the figures' sources too, as
``path::name,name``: the digest of those top-level definitions' code (:func:`parts_digest`),
read with ``ast``, so that a comment, a docstring or the layout of a line changes nothing,
and neither does any other function of the file.
"""

from __future__ import annotations

import ast
import copy
import hashlib
from pathlib import Path

#: Between a file and the names of its definitions in a source's key.
SEPARATOR = "::"

#: The checkout that holds the course's own Python (``course/...``), where such a source is read.
CODE_ROOT = Path(__file__).resolve().parents[2]


def key(relative: str, names: tuple[str, ...]) -> str:
    """The source key of the definitions ``names`` of the file ``relative`` (a path inside the course)."""
    return f"{relative}{SEPARATOR}{','.join(names)}"


def is_parts(source_key: str) -> bool:
    return SEPARATOR in source_key


def parts_digest(text: str, names: tuple[str, ...]) -> str:
    """The SHA-256 of the code of the top-level definitions ``names`` in the Python ``text``.

    A name the file no longer defines counts as changed code (it is hashed as missing), and text
    that is no Python at all gives a digest of its own that matches no recorded one.
    """
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return hashlib.sha256(b"not python\0" + text.encode("utf-8", "surrogatepass")).hexdigest()
    defined = {name: node for node in tree.body for name in _names(node)}
    parts = [f"{name}={_dump(defined[name]) if name in defined else '(missing)'}" for name in names]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def current(root: Path, source_key: str) -> str | None:
    """The digest a source of ``source_key`` has today under ``root``; None if its file is gone."""
    relative, _, names = source_key.partition(SEPARATOR)
    path = root / relative
    if not path.is_file():
        return None
    data = path.read_bytes()
    if not names:
        return hashlib.sha256(data).hexdigest()
    return parts_digest(data.decode("utf-8", "surrogateescape"), tuple(names.split(",")))


def changed(sources: dict[str, str], root: Path = CODE_ROOT) -> list[str]:
    """The definitions among ``sources`` (recorded with a figure or a lesson) whose code is not what it was."""
    return [
        source_key
        for source_key, digest in sources.items()
        if is_parts(source_key) and current(root, source_key) != digest
    ]


def _names(node: ast.stmt) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, ast.Assign):
        return [target.id for target in node.targets if isinstance(target, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


def _dump(node: ast.stmt) -> str:
    return ast.dump(_without_docstring(node))


def _without_docstring(node: ast.stmt) -> ast.stmt:
    """The definition without the docstrings of it and of what it nests: words, not code."""
    bare = copy.deepcopy(node)
    for inner in ast.walk(bare):
        body = getattr(inner, "body", None)
        if (
            isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            inner.body = body[1:] or [ast.Pass()]
    return bare
