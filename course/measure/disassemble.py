"""Capturing the disassembly of one function, as the article shows its own call site."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path


class DisassemblyError(RuntimeError):
    """objdump is missing, or the symbol is not where the lesson says."""


def _objdump() -> str:
    tool = shutil.which("objdump")
    if tool is None:
        raise DisassemblyError("objdump not found; install it with: apt-get install binutils")
    return tool


def _run(command: list[str]) -> str:
    finished = subprocess.run(command, capture_output=True, text=True)
    if finished.returncode != 0:
        raise DisassemblyError(f"{shlex.join(command)} failed: {finished.stderr.strip()}")
    return finished.stdout


def function_listing(objdump_output: str, symbol: str) -> str:
    """The lines of ``symbol``'s block in objdump's output, from its header to the blank line."""
    lines = objdump_output.splitlines()
    header = re.compile(rf"^[0-9a-f]+ <{re.escape(symbol)}(@@[^>]*)?>:$")
    for start, line in enumerate(lines):
        if header.match(line):
            end = start + 1
            while end < len(lines) and lines[end].strip():
                end += 1
            return "\n".join(lines[start:end])
    raise DisassemblyError(f"symbol {symbol!r} not found in the disassembly")


def of_program(binary: Path, symbol: str) -> tuple[str, str]:
    """Disassemble ``symbol`` of a program built by the course: (listing, command)."""
    command = [_objdump(), "-d", "--no-show-raw-insn", f"--disassemble={symbol}", str(binary)]
    return function_listing(_run(command), symbol), shlex.join(["objdump", *command[1:-1], binary.name])


def library_path(soname: str) -> Path:
    """Where the dynamic loader finds ``soname`` (for example ``libc.so.6``) on this machine."""
    for line in _run(["ldconfig", "-p"]).splitlines():
        name, _, rest = line.strip().partition(" ")
        if name == soname and "x86-64" in rest and "=>" in rest:
            return Path(rest.split("=>", 1)[1].strip())
    raise DisassemblyError(f"library {soname} not found by ldconfig -p")


def of_library(soname: str, symbol: str) -> tuple[str, str]:
    """Disassemble an exported function of a shared library, located by its dynamic symbol."""
    path = library_path(soname)
    table = _run(["readelf", "-W", "--dyn-syms", str(path)])
    for line in table.splitlines():
        fields = line.split()
        if len(fields) >= 8 and fields[3] == "FUNC" and fields[7].split("@")[0] == symbol:
            start, size = int(fields[1], 16), int(fields[2])
            command = [
                _objdump(),
                "-d",
                "--no-show-raw-insn",
                f"--start-address={start:#x}",
                f"--stop-address={start + size:#x}",
                str(path),
            ]
            body = [line for line in _run(command).splitlines() if re.match(r"^\s+[0-9a-f]+:\t", line)]
            listing = f"{start:016x} <{symbol}> ({path.name}):\n" + "\n".join(body)
            return listing, shlex.join(["objdump", *command[1:]])
    raise DisassemblyError(f"{path} exports no function {symbol!r}")
