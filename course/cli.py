"""One spelling for each option of the course's tasks, and the same short flag wherever it appears.

invoke gives each task's options short flags of its own (the first free letter), so ``-l`` was
the label of ``generate`` and the lesson of ``run``. Here short flags come from one table,
:data:`SHORT_FLAGS`, and an option nobody uses often has none. An option once spelled two
ways answers to both (:data:`SPELLINGS`): ``--lessons`` is the spelling, ``--lesson`` still works.
"""

from __future__ import annotations

from typing import Any

from invoke import Task
from invoke import task as invoke_task

#: The short flag of each common option, the same in every task (an option not listed has none).
SHORT_FLAGS = {
    "acceleration": "a",
    "check": "c",
    "edition": "e",
    "force": "f",
    "guest-kernels": "g",
    "hosts": "h",
    "inventory": "i",
    "json": "j",
    "kernel-runner": "k",
    "lessons": "l",
    "number": "n",
    "output": "o",
    "port": "p",
    "set": "s",
    "timeout": "t",
    "user": "u",
}

#: An older spelling -> the one spelling; the older still works.
SPELLINGS = {"lesson": "lessons"}


class CourseTask(Task):
    """A task whose options are spelled by the tables above."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["auto_shortflags"] = False
        super().__init__(*args, **kwargs)

    def arg_opts(self, name: str, default: str, taken_names: set[str]) -> dict[str, Any]:
        opts = super().arg_opts(name, default, taken_names)
        written = opts["names"][0]
        spelling = SPELLINGS.get(written, written)
        names = [spelling] + ([written] if written != spelling else [])
        short = SHORT_FLAGS.get(spelling)
        if short and short not in taken_names:
            names.append(short)
        opts["names"] = names
        if spelling != written or "attr_name" in opts:
            opts["attr_name"] = name  # the task's own parameter receives the value
        return opts


def task(*args: Any, **kwargs: Any) -> Any:
    """invoke's ``@task``, making :class:`CourseTask` tasks."""
    return invoke_task(*args, klass=CourseTask, **kwargs)
