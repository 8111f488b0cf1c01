"""Autodoc's defaults as written, each module parsed once: the very signatures Sphinx's own way gives."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import course
from course.publish.sphinxext import defaults


def _documented(module: Any) -> Iterator[tuple[Any, bool]]:
    """What autodoc hands ``update_default_value`` for a module: its functions, classes and their methods."""
    for value in vars(module).values():
        if getattr(value, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(value):
            yield value, False
        elif inspect.isclass(value):
            yield value, False
            for name, member in vars(value).items():
                if isinstance(member, classmethod):
                    yield getattr(value, name), True
                elif isinstance(member, staticmethod):
                    yield member.__func__, False
                elif inspect.isfunction(member):
                    yield member, False
                elif isinstance(member, property) and member.fget is not None:
                    yield member.fget, False


def _course_modules() -> list[Any]:
    found = pkgutil.walk_packages(course.__path__, course.__name__ + ".")
    names = [course.__name__] + [module.name for module in found if "__main__" not in module.name]
    return [importlib.import_module(name) for name in sorted(names)]


def _signature_after(update: Callable[[Any, bool], None], obj: Any, bound_method: bool) -> str:
    """The signature ``update`` gives ``obj`` ("unchanged" if none), and ``obj`` put back as it was."""
    holder = obj.__func__ if inspect.ismethod(obj) else obj  # a bound method's __dict__ is its function's
    before = vars(holder).get("__signature__")
    update(obj, bound_method)
    after = vars(holder).get("__signature__")
    if after is before:
        return "unchanged"
    if inspect.isclass(holder):
        delattr(holder, "__signature__")
    else:
        del holder.__dict__["__signature__"]
    if before is not None:
        holder.__signature__ = before
    return str(after)


def _both(objects: list[tuple[Any, bool]]) -> tuple[list[str], list[str]]:
    own = [_signature_after(defaults.sphinx_update_default_value, obj, bound) for obj, bound in objects]
    fast = [_signature_after(defaults.update_default_value, obj, bound) for obj, bound in objects]
    return own, fast


def test_every_signature_of_the_course_is_the_one_sphinx_gives() -> None:
    objects = [found for module in _course_modules() for found in _documented(module)]
    own, fast = _both(objects)
    mismatched = [f"{obj!r}: {a} / {b}" for (obj, _), a, b in zip(objects, own, fast, strict=True) if a != b]
    assert mismatched == []
    found_fast = [obj for obj, _ in objects if not inspect.isclass(obj) and defaults.function_node(obj)]
    assert len(found_fast) > 300, "most functions take the fast way: the comparison compares it"
    assert sum(text != "unchanged" for text in own) > 50, "many signatures have defaults: the comparison compares them"


TRICKY = '''
import functools

def plain(a, b=1, *, c="x y", d=None, e=[1,
    2]):
    pass

def decorate(function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        return function(*args, **kwargs)
    return wrapper

@decorate
@decorate
def decorated(a, b=(1 + 2), *args, c=max(1, 2), **kwargs):
    pass

class Shape:
    """A class: no arguments of its own."""

    def __init__(self, size=0x10, name='sq\\u00e9', *, flag=True):
        pass

    @classmethod
    def make(cls, size=2 ** 4):
        return cls(size)

    @staticmethod
    def helper(x, y=-1):
        return x

    area = lambda self, scale=3: scale

def with_feed(a, b=1):  # a form feed follows, which str.splitlines cuts at
    \x0c
    return a

def nested(a=1):
    def inner(b=2, c={"k": (1, 2)}):
        return b
    return inner
'''


@pytest.fixture
def tricky(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    (tmp_path / "course_tricky_defaults.py").write_text(textwrap.dedent(TRICKY), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield importlib.import_module("course_tricky_defaults")
    sys.modules.pop("course_tricky_defaults", None)


def test_decorators_lambdas_methods_form_feeds_and_nested_functions_as_sphinx(tricky: Any) -> None:
    shape = tricky.Shape
    objects = [
        (tricky.plain, False),
        (tricky.decorated, False),
        (shape, False),
        (shape.__init__, False),
        (shape.make, True),
        (shape.helper, False),
        (shape.area, False),
        (shape(1).area, True),
        (tricky.with_feed, False),
        (tricky.nested, False),
        (tricky.nested(), False),
    ]
    own, fast = _both(objects)
    assert fast == own
    assert "e=[1, 2]" in own[0] and "c='x y'" not in own[0] and 'c="x y"' in own[0], "as written, multi-line unparsed"
    assert "b=1 + 2" in own[1] and "c=max(1, 2)" in own[1]
    assert "size=0x10" in own[3] and "size=2 ** 4" in own[4]
    assert defaults.function_node(tricky.plain) is not None, "a plain function takes the fast way"
    assert defaults.function_node(shape.area) is None, "a lambda goes to Sphinx's own way"
    assert defaults.function_node(tricky.with_feed) is None, "a form feed in the block: Sphinx's way counts lines"
