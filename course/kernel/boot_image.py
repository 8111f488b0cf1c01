"""The guest kernel without its decompressor: the same kernel, started by QEMU at its PVH entry point.

A distribution kernel (``/boot/vmlinuz-*``) is a bzImage: a small program that decompresses the
kernel, then starts it. Under emulation that program is costly: Debian's 6.1 kernels are
compressed with xz, and decompressing one took about 6 s of the host's CPU in every boot (the
guest's first printk came after 7.8 s of QEMU's CPU time, after 1.6 s from the uncompressed
kernel; 6.12's zstd costs less). The uncompressed kernel inside it is an ELF file with a PVH
entry point (``CONFIG_PVH``, Xen's note ``PHYS32_ENTRY``), which QEMU's ``-kernel`` starts
directly, and virtme-ng passes on as it is. It is decompressed once per kernel image into the
build folder; an image whose payload cannot be read here (another compressor, no PVH entry)
boots as it is.

The same kernel started another way is not quite the same boot: without the decompressor the
kernel is not relocated at random (KASLR), and its memory lies elsewhere. The virtme-ng boots'
figures came out the same (every minimum and median of lessons 4 and 6, the call graphs of
lesson 2, on the three kernels); lesson 9's guest from memory, whose every count repeats,
counted some requests otherwise (by up to 7,000 instructions of 48,000 on 6.12). The guest from
memory, where every icount lesson now runs, boots it this way too; its sets were measured so.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

#: Where each compressor's stream starts inside a bzImage, and how to read it.
XZ_MAGIC = b"\xfd7zXZ\x00"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

#: Xen's ELF note XEN_ELFNOTE_PHYS32_ENTRY (type 18, name "Xen"): the PVH entry point, as QEMU looks for it.
PVH_NOTES = tuple(
    (4).to_bytes(4, "little") + descsz.to_bytes(4, "little") + (18).to_bytes(4, "little") + b"Xen\0"
    for descsz in (4, 8)
)


def uncompressed(build: Path, image: Path) -> Path | None:
    """The kernel of the bzImage ``image`` as an ELF with a PVH entry, made once under ``build``; None if not here."""
    try:
        data = image.read_bytes()
    except OSError:
        return None
    target = build / "vm" / "kernels" / f"{image.name}-{hashlib.sha256(data).hexdigest()[:16]}.elf"
    if target.is_file():
        return target
    kernel = _payload(data)
    if kernel is None:
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed: two boots of one kernel (a matrix's two guests) may make it at once.
    handle, scratch = tempfile.mkstemp(prefix=f".{target.name}-", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(kernel)
        os.replace(scratch, target)
    finally:
        Path(scratch).unlink(missing_ok=True)
    return target


def _payload(data: bytes) -> bytes | None:
    """The ELF kernel compressed inside a bzImage, if it is xz or zstd and has a PVH entry point."""
    candidates = [(offset, _xz) for offset in _offsets(data, XZ_MAGIC)]
    if shutil.which("zstd"):
        candidates += [(offset, _zstd) for offset in _offsets(data, ZSTD_MAGIC)]
    for offset, decompress in candidates:
        kernel = decompress(data[offset:])
        if kernel and kernel.startswith(b"\x7fELF") and any(note in kernel for note in PVH_NOTES):
            return kernel
    return None


def _offsets(data: bytes, magic: bytes, most: int = 4) -> list[int]:
    found, start = [], 0
    while len(found) < most and (offset := data.find(magic, start)) >= 0:
        found.append(offset)
        start = offset + 1
    return found


def _xz(stream: bytes) -> bytes | None:
    try:
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(stream)  # what follows the stream is ignored
    except lzma.LZMAError:
        return None


def _zstd(stream: bytes) -> bytes | None:
    try:
        # zstd complains of the bytes after its frame (the bzImage's tail): its status says nothing.
        done = subprocess.run(["zstd", "-dcq"], input=stream, capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout or None
