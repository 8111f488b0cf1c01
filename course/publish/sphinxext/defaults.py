"""Autodoc's defaults as written (``autodoc_preserve_defaults``), each source file parsed once, not a function twice.

For every function, method and class it documents, autodoc (Sphinx 9.0,
``sphinx.ext.autodoc._dynamic._preserve_defaults.update_default_value``) gets the object's source with
``inspect.getsource`` twice, each time cutting the object's block out of its file by tokenizing it, and parses
it: for a class, ``inspect`` parses the whole module to find the class first, and all of it ends with nothing
to do (a class has no defaults of its own). That was a tenth of a clean build's reading, most of it in the API
pages. Here each source file is parsed once a process; a function is found by the line ``inspect`` starts its
block at, which is the line its ``def`` (or first decorator) statement starts at, and its defaults are the
same text, cut from the same lines at the same columns. Anything else (a lambda, an object whose source is
not a file's) goes to Sphinx's own function, as before.
"""

from __future__ import annotations

import ast
import inspect
import linecache
from typing import Any

from sphinx.ext.autodoc._dynamic import _preserve_defaults, _signatures

#: Sphinx's own function: the way for what the fast way does not find.
sphinx_update_default_value = _preserve_defaults.update_default_value

#: Of each source file parsed: the lines parsed (linecache's list) and its functions by their first line.
_FUNCTIONS: dict[str, tuple[list[str], dict[int, ast.FunctionDef | ast.AsyncFunctionDef]]] = {}


def _functions_by_first_line(lines: list[str]) -> dict[int, ast.FunctionDef | ast.AsyncFunctionDef]:
    """Every function of a source file by the line its statement starts at: its first decorator's, else its def's."""
    found = {}
    for node in ast.walk(ast.parse("".join(lines))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
            found.setdefault(first, node)
    return found


def function_node(obj: Any) -> tuple[list[str], ast.FunctionDef | ast.AsyncFunctionDef] | None:
    """The lines of ``obj``'s file and the statement ``inspect.getsource(obj)`` would cut out of it, or None.

    None for whatever is not a function with its source in a file that parses, or whose block would
    not start at a function's statement (a lambda): Sphinx's own way handles those.
    """
    target = inspect.unwrap(obj)  # as inspect.getsourcelines does
    if not (inspect.isfunction(target) or inspect.ismethod(target)):
        return None
    try:
        file = inspect.getsourcefile(target)
        lines, start = inspect.findsource(target)  # start: where inspect's block begins (0-based)
    except (OSError, TypeError):
        return None
    if not file:
        return None
    parsed = _FUNCTIONS.get(file)
    if parsed is None or parsed[0] is not lines:  # linecache read the file again: parse it again
        try:
            parsed = _FUNCTIONS[file] = (lines, _functions_by_first_line(lines))
        except (SyntaxError, ValueError):
            return None
    node = parsed[1].get(start + 1)
    if node is None:
        return None
    # Sphinx splits the block at every line boundary str.splitlines knows (form feeds too), ast and linecache
    # only at line ends: where they would count lines differently, Sphinx's way decides.
    block = lines[start : node.end_lineno]
    if len("".join(block).splitlines()) != len(block):
        return None
    return lines, node


def update_default_value(obj: Any, bound_method: bool) -> None:
    """Give ``obj`` the signature Sphinx's ``update_default_value`` gives it: each default as its source writes it."""
    if inspect.isclass(inspect.unwrap(obj)):
        return  # Sphinx finds a class statement, which has no arguments, and leaves the class alone
    found = function_node(obj)
    if found is None:
        sphinx_update_default_value(obj, bound_method)
        return
    lines, node = found
    args = node.args
    if not args.defaults and not args.kw_defaults:
        return
    # From here on Sphinx's own steps, with the positions in the file's lines rather than the block's.
    try:
        if bound_method and inspect.ismethod(obj) and hasattr(obj, "__func__"):
            sig = inspect.signature(obj.__func__)
        else:
            sig = inspect.signature(obj)
        defaults = list(args.defaults)
        kw_defaults = list(args.kw_defaults)
        parameters = list(sig.parameters.values())
        for i, param in enumerate(parameters):
            if param.default is param.empty:
                if param.kind == param.KEYWORD_ONLY:
                    kw_defaults.pop(0)
                continue
            positional = param.kind in {param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD}
            default = defaults.pop(0) if positional else kw_defaults.pop(0)
            value = _preserve_defaults.get_default_value(lines, default)  # type: ignore[arg-type]
            if value is None:
                value = _preserve_defaults.ast_unparse(default)  # type: ignore[arg-type]
            parameters[i] = param.replace(default=_preserve_defaults.DefaultValue(value))
        sig = sig.replace(parameters=parameters)
        try:
            obj.__signature__ = sig
        except AttributeError:
            obj.__dict__["__signature__"] = sig  # a bound method takes no __signature__ of its own
    except (AttributeError, TypeError):
        return  # as Sphinx: a signature that cannot be set (a built-in, a class with __slots__) stays as it is
    except NotImplementedError as exc:  # as Sphinx: a default ast_unparse cannot write
        _preserve_defaults.LOGGER.warning("Failed to parse a default argument value for %r: %s", obj, exc)


def install() -> None:
    """Make autodoc read defaults this way in this process (again: the same)."""
    _signatures.update_default_value = update_default_value  # the name autodoc calls it by
    linecache.checkcache()  # files changed since an earlier build in this process are read again


def setup(app: Any) -> None:
    install()
