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
import os
import stat
from pathlib import Path, PurePosixPath

#: Between a file and the names of its definitions in a source's key.
SEPARATOR = "::"

#: The checkout that holds the course's own Python (``course/...``), where such a source is read.
#: (Where this checkout lies: its value is the builder's, so the API pages leave it out.)
#:
#: :meta hide-value:
CODE_ROOT = Path(__file__).resolve().parents[2]

#: The largest Python file a source key may name (the course's own are well under 100 KiB): any
#: larger one is read as missing, never parsed (``ast`` takes ~180 bytes of memory per byte).
MAX_FILE_BYTES = 1024 * 1024

#: The most definitions one source key may name (the guest's code names 15 of one file).
MAX_NAMES = 50

#: How a ``path::names`` key must look, said in the schema's refusal.
FIX = (
    "a `path::names` source names at most 50 top-level definitions of a .py file under course/ "
    "(course/kernel/ram_guest.py::init_script): the file was not written by a course run"
)


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


def key_problem(source_key: str) -> str:
    """What is wrong with the ``path::names`` key ``source_key`` (``""`` when nothing is, or it is no such key).

    Its path is a relative one under ``course/`` without a ``..`` part, of a ``.py`` file, and it
    names 1 to :data:`MAX_NAMES` definitions, each a Python identifier.
    """
    if not is_parts(source_key):
        return ""
    relative, _, names = source_key.partition(SEPARATOR)
    parts = PurePosixPath(relative).parts
    if relative.startswith("/") or ".." in parts or "\\" in relative:
        return "has a path that leads out of the course"
    if len(parts) < 2 or parts[0] != "course" or not relative.endswith(".py"):
        return "names no .py file under course/"
    listed = names.split(",")
    if len(listed) > MAX_NAMES:
        return f"names {len(listed)} definitions, more than {MAX_NAMES}"
    if not all(name.isidentifier() for name in listed):
        return "names something that is no Python identifier"
    return ""


def current(root: Path, source_key: str) -> str | None:
    """The digest a source of ``source_key`` has today under ``root``; None if its file is gone.

    A ``path::names`` key that :func:`key_problem` refuses, or whose file is a symbolic link (or
    lies under one), is no regular file, or is larger than :data:`MAX_FILE_BYTES`, is read as
    missing (so its figure is stale), never parsed.
    """
    relative, _, names = source_key.partition(SEPARATOR)
    path = root / relative
    if not names:
        return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    data = _python_file(root, path) if not key_problem(source_key) else None
    if data is None:
        return None
    return parts_digest(data.decode("utf-8", "surrogateescape"), tuple(names.split(",")))


def _python_file(root: Path, path: Path) -> bytes | None:
    """The bytes of ``path``: a regular file under ``root`` reached through no symbolic link, of at most 1 MiB."""
    try:
        if path.resolve() != root.resolve() / path.relative_to(root):
            return None  # a symbolic link on the way: it may lead anywhere
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except (OSError, ValueError):
        return None
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode) or status.st_size > MAX_FILE_BYTES:
            return None
        data = os.read(descriptor, MAX_FILE_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(descriptor)
    return data if len(data) <= MAX_FILE_BYTES else None


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
