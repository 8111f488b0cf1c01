"""``{course-output}``: what a program printed when it ran, with the command that ran it."""

from __future__ import annotations

import re
from typing import ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util.docutils import SphinxDirective

from course.publish.sphinxext.base import (
    CourseMixin,
)
from course.publish.sphinxext.data import Lookup, shown_text

#: What a recorded command's standard input was, where the record names a kind of file rather than a path.
STDIN_WORDS = {
    "devnull": "/dev/null",
    "file": "a disk file",
    "pipe": "an empty pipe",
    "socket": "a socket pair",
    "tty": "a pseudo-terminal",
    "zero": "/dev/zero",
    "(empty pipe)": "an empty pipe",
    "(pseudo-terminal)": "a pseudo-terminal",
    "(socket pair)": "a socket pair",
    "stdin.txt": "a disk file the pipeline wrote, stdin.txt",
}


_STDIN = re.compile(
    r"\s<\s(devnull|file|pipe|socket|tty|zero|stdin\.txt|\((?:empty pipe|pseudo-terminal|socket pair)\))(?=\s|$)"
)


def command_parts(command: str) -> tuple[str, str]:
    """A recorded command as what runs if copied, and what is said about it in words.

    The record keeps notes beside the command (the files the pipeline opened, a comment, the
    kernel it built for) and names some standard inputs by kind ("< devnull", "< (empty pipe)"):
    copied, these give a shell error. They become words; the command keeps what a shell runs.
    """
    notes = []
    runnable = command
    if "   # " in runnable:
        runnable, comment = runnable.split("   # ", 1)
        notes.append(comment.strip())
    found = re.search(r"\s+\((files open: [^)]*|kernel [^)]*)\)\s*$", runnable)
    if found:
        runnable = runnable[: found.start()]
        what = found[1]
        opened = what.removeprefix("files open: ")
        notes.insert(0, f"the pipeline also opened {opened} (COURSE_FILES)" if what.startswith("files") else what)
    stdin = _STDIN.search(runnable)
    if stdin:
        runnable = runnable[: stdin.start()] + runnable[stdin.end() :]
        notes.insert(0, f"standard input: {STDIN_WORDS[stdin[1]]}")
    if " M=... " in runnable:
        runnable = runnable.replace(" M=... ", ' M="$PWD" ')
        notes.append("in a copy of the module's folder")
    return runnable.strip(), "; ".join(notes)


class CourseOutput(CourseMixin, SphinxDirective):
    """A captured block of output (a run, a disassembly), with the command that produced it."""

    required_arguments = 1
    option_spec: ClassVar[dict] = {
        "set": directives.unchanged,
        "language": directives.unchanged,
        # Long lines (a compiler's messages) wrap instead of scrolling out of sight, even at 1400 px.
        "wrap": directives.flag,
    }

    def run(self) -> list[nodes.Node]:
        capture_id = self.arguments[0]
        set_id = self.options.get("set", "") or self.data.current_id
        result_set = self.data.sets.get(set_id)
        if result_set is None:
            self.warn(f"no result set {set_id!r} for output {capture_id!r}", "missing")
            return [nodes.paragraph(text=f"[missing output: {capture_id}]")]
        file = result_set.lesson_file(capture_id.split("/", 1)[0])
        self.use(Lookup(result_set, None, file if file.is_file() else None))
        capture = result_set.capture(capture_id)
        if capture is None:
            self.warn(
                f"output {capture_id!r} missing from result set {set_id!r}; run the lesson to capture it", "missing"
            )
            return [nodes.paragraph(text=f"[missing output: {capture_id}]")]
        # What a program printed may hold any character: controls are shown as escapes (\x1b), not written raw.
        text = shown_text(capture["text"])
        block = nodes.literal_block(text, text, language=self.options.get("language", "text"))
        classes = ["literal-block-wrapper", "course-output"] + (["course-wrap"] if "wrap" in self.options else [])
        container = nodes.container(classes=classes, literal_block=True)
        # The command is a literal: smart quotes leave it alone (`--` stays two hyphens) and it can be copied.
        runnable, description = command_parts(shown_text(capture.get("command", "")))
        caption = nodes.caption()
        if runnable.startswith("insmod "):
            # It ran in the disposable VM: never offered as a command to copy into this machine's shell.
            caption += nodes.Text("In the disposable VM: ")
            caption += nodes.literal(runnable, runnable)
        else:
            caption += nodes.Text("$ ")
            caption += nodes.literal(runnable, runnable, classes=["course-command"])
        if description:
            caption += nodes.Text(f"   ({description})")  # words, not part of the command: never copied with it
        caption += nodes.Text(shown_text(f"   [{result_set.label}, {capture.get('measured_at', '')}]"))
        container += caption
        container += block
        return [container]
