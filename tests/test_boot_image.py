"""The guest kernel boots uncompressed at its PVH entry (course.kernel.boot_image), or as it is when it cannot."""

from __future__ import annotations

import lzma
from pathlib import Path

import pytest

from course.kernel import boot_image, guest_kernels, vm
from course.kernel.kernel_build import GuestKernel, KernelError, find_kernel
from course.results.layout import Layout

PVH_NOTE = boot_image.PVH_NOTES[1] + b"\x50\x08\x00\x01\x00\x00\x00\x00"


def _bzimage(tmp_path: Path, kernel: bytes, name: str = "vmlinuz-test") -> Path:
    """A stand-in bzImage: a header, the xz stream of ``kernel``, a tail (as the real one ends with sizes)."""
    image = tmp_path / name
    image.write_bytes(b"MZ setup code " * 100 + lzma.compress(kernel, format=lzma.FORMAT_XZ) + b"\x00\x10tail")
    return image


def test_the_kernel_inside_is_made_once_and_reused(tmp_path: Path) -> None:
    kernel = b"\x7fELF" + b"\x00" * 60 + PVH_NOTE + b"kernel code" * 1000
    image = _bzimage(tmp_path, kernel)
    made = boot_image.uncompressed(tmp_path / "build", image)
    assert made is not None and made.read_bytes() == kernel and made.is_relative_to(tmp_path / "build")
    made.write_bytes(b"kept")  # the name holds the image's digest: the same image is not decompressed again
    assert boot_image.uncompressed(tmp_path / "build", image) == made and made.read_bytes() == b"kept"
    other = _bzimage(tmp_path, kernel + b"\x01", "vmlinuz-other")
    assert boot_image.uncompressed(tmp_path / "build", other) not in (None, made), "another image, another file"
    assert not [p for p in made.parent.iterdir() if p.name.startswith(".")], "no scratch file is left"


def test_an_image_without_a_pvh_entry_or_readable_payload_boots_as_it_is(tmp_path: Path) -> None:
    no_entry = _bzimage(tmp_path, b"\x7fELF" + b"\x00" * 4000)
    assert boot_image.uncompressed(tmp_path / "build", no_entry) is None, "QEMU could not start it"
    not_elf = _bzimage(tmp_path, b"not a kernel" + PVH_NOTE, "vmlinuz-text")
    assert boot_image.uncompressed(tmp_path / "build", not_elf) is None
    garbage = tmp_path / "vmlinuz-garbage"
    garbage.write_bytes(boot_image.XZ_MAGIC + b"broken stream")
    assert boot_image.uncompressed(tmp_path / "build", garbage) is None
    assert boot_image.uncompressed(tmp_path / "build", tmp_path / "absent") is None
    assert not (tmp_path / "build" / "vm" / "kernels").exists() or not list(
        (tmp_path / "build" / "vm" / "kernels").iterdir()
    )


@pytest.mark.parametrize("name", ["6.1", "6.12"])
def test_debians_kernels_have_a_pvh_entry(tmp_path: Path, name: str) -> None:
    try:
        kernel = guest_kernels.find(name)
    except KernelError as error:  # not installed here: nothing to read
        pytest.skip(f"guest kernel {name} is not installed ({error})")
    made = boot_image.uncompressed(tmp_path, kernel.image)
    assert made is not None, f"{kernel.image} (xz for 6.1, zstd for 6.12) holds an ELF kernel with a PVH entry"
    assert made.read_bytes()[:4] == b"\x7fELF"
    assert find_kernel(kernel.release).image == kernel.image, "the installed image itself is never changed"


def test_a_build_folder_whose_path_vng_would_split_boots_the_image_as_it_is(tmp_path: Path) -> None:
    kernel = b"\x7fELF" + b"\x00" * 60 + PVH_NOTE
    image = _bzimage(tmp_path, kernel)
    guest = GuestKernel("6.1.0-test", image, tmp_path / "h", tmp_path / "m")
    plain = vm.booted_kernel(Layout(tmp_path, build_dir=tmp_path / "build"), guest)
    assert plain.image != image and plain.image.read_bytes() == kernel and plain.release == guest.release
    spaced = vm.booted_kernel(Layout(tmp_path, build_dir=tmp_path / "my build"), guest)
    assert spaced == guest, "vng splits --run's path at spaces"
