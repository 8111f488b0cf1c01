"""The kernel the modules run on, and building the modules against exactly that kernel."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from course.measure.build import BuildError, file_hash
from course.measure.lessons import Lesson, ModuleSpec
from course.results.layout import Layout

BOOT = Path("/boot")
HEADERS = Path("/usr/src")
MODULES = Path("/lib/modules")

#: What a Debian machine installs to run the kernel lessons (see course.system).
KERNEL_PACKAGES = "linux-image-amd64 linux-headers-amd64"


class KernelError(RuntimeError):
    """No usable kernel to build against or to boot; the message names the packages to install."""


@dataclass(frozen=True)
class GuestKernel:
    """A kernel image with its headers and modules: what boots in the VM and what modules build against."""

    release: str
    image: Path
    headers: Path
    modules: Path


@dataclass(frozen=True)
class BuiltModule:
    """A compiled module and what it was made from."""

    lesson: str
    name: str
    ko: Path
    sources: dict[str, str]
    rebuilt: bool


def release_key(release: str) -> list:
    """A release's sort key: 6.12.1 after 6.1.99, by numbers and not by letters."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"[.+-]", release)]


def complete_releases(boot: Path = BOOT, headers: Path = HEADERS, modules: Path = MODULES) -> list[str]:
    """The kernel releases installed with image, headers and modules: those a VM can boot and build against."""
    found = [image.name.removeprefix("vmlinuz-") for image in boot.glob("vmlinuz-*")]
    return [
        release for release in found if (headers / f"linux-headers-{release}").is_dir() and (modules / release).is_dir()
    ]


def debian_default_release() -> str:
    """The release Debian's ``linux-image-amd64`` installs ("" where dpkg does not say).

    The course's guest is Debian's own kernel: installing 6.12 or the RT kernel beside it (for
    ``--guest-kernels``) must not change what every other run boots.
    """
    if shutil.which("dpkg-query") is None:
        return ""
    depends = subprocess.run(
        ["dpkg-query", "-W", "-f=${Depends}", DEFAULT_IMAGE_PACKAGE], capture_output=True, text=True
    ).stdout
    found = re.search(r"linux-image-(\S+?)(?:[\s,(]|$)", depends)
    return found[1] if found else ""


#: Debian's meta-package of its default kernel: the course boots what it depends on.
DEFAULT_IMAGE_PACKAGE = "linux-image-amd64"


def find_kernel(
    release: str = "",
    boot: Path = BOOT,
    headers: Path = HEADERS,
    modules: Path = MODULES,
    preferred: str | None = None,
) -> GuestKernel:
    """``release``, or else Debian's default kernel (``preferred``), or else the newest complete kernel.

    A kernel is complete with its image, headers and modules installed. ``preferred`` defaults
    to what ``linux-image-amd64`` installs, looked up only in the system's own folders.
    """
    candidates = [found for found in complete_releases(boot, headers, modules) if not release or found == release]
    if not candidates:
        wanted = f"kernel {release}" if release else "a kernel"
        raise KernelError(
            f"no {wanted} with image, headers and modules installed (looked in {boot}, {headers}, {modules}); "
            f"install them with: apt-get install {KERNEL_PACKAGES} (invoke setup does it)"
        )
    if preferred is None:
        preferred = debian_default_release() if (boot, headers, modules) == (BOOT, HEADERS, MODULES) else ""
    chosen = preferred if preferred in candidates else max(candidates, key=release_key)
    return GuestKernel(chosen, boot / f"vmlinuz-{chosen}", headers / f"linux-headers-{chosen}", modules / chosen)


def module_sources(layout: Layout, lesson: Lesson, module: ModuleSpec) -> dict[str, Path]:
    """The files a module is built from: its source, its Kbuild, the shared kernel headers, and its exercises.

    An exercise a module includes (``exercise-NAME.c`` beside it, lesson 9's) is built from the
    reference solution where the checkout has it (``solutions/exercise-NAME.c``), else from the
    student's file: only the one the compiler reads is a source (``khttpd.c`` chooses the same way).
    """
    assert lesson.kernel_dir is not None
    files = [lesson.kernel_dir / f"{module.name}.c", lesson.kernel_dir / "Kbuild"]
    files += sorted((layout.kernel_code / "common").glob("*.h"))
    for exercise in sorted(lesson.kernel_dir.glob("exercise-*.c")):
        solution = exercise.parent / "solutions" / exercise.name
        files.append(solution if solution.is_file() else exercise)
    return {str(path.relative_to(layout.root)): path for path in files}


#: A path that Kbuild's M= (and vng's command line) take as is: make splits words at spaces and
#: reads $ : # as its own syntax; vng joins its options into one string and splits it again.
PLAIN_PATH = re.compile(r"[A-Za-z0-9_./+-]+")


def plain_temp() -> str:
    """A folder for scratch files whose path is plain (``PLAIN_PATH``): the system's, or /tmp."""
    return tempfile.gettempdir() if PLAIN_PATH.fullmatch(tempfile.gettempdir()) else "/tmp"


@contextlib.contextmanager
def make_safe(folder: Path) -> Iterator[Path]:
    """``folder``, or a symbolic link to it at a path Kbuild can take (a checkout path may have a space)."""
    if PLAIN_PATH.fullmatch(str(folder)):
        yield folder
        return
    holder = Path(tempfile.mkdtemp(prefix="course-kbuild-", dir=plain_temp()))
    link = holder / "tree"
    link.symlink_to(folder, target_is_directory=True)
    try:
        yield link
    finally:
        # Only the link and its folder: never what it points to.
        link.unlink()
        os.rmdir(holder)


@dataclass(frozen=True)
class _ModuleInputs:
    """Where a module is built against a kernel, and the digest of what it is built from."""

    hashes: dict[str, str]
    sources: dict[str, Path]
    tree: Path
    ko: Path
    stamp: Path
    digest: str

    @property
    def current(self) -> bool:
        return self.ko.is_file() and self.stamp.is_file() and self.stamp.read_text() == self.digest


def _inputs(layout: Layout, lesson: Lesson, module: ModuleSpec, kernel: GuestKernel) -> _ModuleInputs:
    sources = module_sources(layout, lesson, module)
    hashes = {name: file_hash(path) for name, path in sources.items()}
    ko = module_ko(layout, lesson, module, kernel)
    digest = hashlib.sha256(repr(sorted(hashes.items())).encode() + kernel.release.encode()).hexdigest()
    return _ModuleInputs(hashes, sources, ko.parent.parent, ko, ko.with_suffix(".inputs"), digest)


def module_ko(layout: Layout, lesson: Lesson, module: ModuleSpec, kernel: GuestKernel) -> Path:
    """Where :func:`build_module` puts the module built against ``kernel`` (known before it is built)."""
    return layout.build / "kernel" / kernel.release / lesson.name / f"{module.name}.ko"


def _copy_sources(inputs: _ModuleInputs) -> None:
    """The sources into the build tree, so that Kbuild's objects never land in ``code/``."""
    for relative, path in inputs.sources.items():
        target = inputs.tree / Path(relative).relative_to(Path(relative).parts[0], Path(relative).parts[1])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        if target.name.startswith("exercise-") and target.parent.name != "solutions":
            # The student's file is built: no solution left in the tree from another build may take its place.
            (target.parent / "solutions" / target.name).unlink(missing_ok=True)


def build_module(layout: Layout, lesson: Lesson, module: ModuleSpec, kernel: GuestKernel) -> BuiltModule:
    """Build one module against ``kernel`` in ``build/kernel/<release>/``, reusing it if nothing changed."""
    if shutil.which("make") is None:
        raise BuildError("make not found; install it with: apt-get install build-essential")
    inputs = _inputs(layout, lesson, module, kernel)
    if inputs.current:
        return BuiltModule(lesson.name, module.name, inputs.ko, inputs.hashes, rebuilt=False)
    _copy_sources(inputs)
    with make_safe(inputs.tree) as seen:
        # One module per make: a lesson may hold a module that is meant not to build.
        command = ["make", "-C", str(kernel.headers), f"M={seen / lesson.name}", f"{module.name}.ko"]
        finished = subprocess.run(command, capture_output=True, text=True)
        log = (" ".join(command) + "\n" + finished.stdout + finished.stderr).replace(str(seen), str(inputs.tree))
    if finished.returncode != 0 or not inputs.ko.is_file():
        raise BuildError(f"module {module.name} of {lesson.name} did not build against {kernel.release}", log=log)
    inputs.stamp.write_text(inputs.digest)
    return BuiltModule(lesson.name, module.name, inputs.ko, inputs.hashes, rebuilt=True)


def build_together(
    layout: Layout, modules: list[tuple[Lesson, ModuleSpec]], kernel: GuestKernel
) -> list[tuple[Lesson, ModuleSpec]]:
    """Build every module of ``modules`` that is not current with one make; those it built.

    Kbuild's own start-up (reading the kernel's makefiles, modpost) is half of a one-module
    build, so several modules cost little more than one when made together. This only saves
    time: if that make fails for any reason (a module this kernel's API rejects), nothing is
    marked built, and :func:`build_module` then builds each alone, with its own errors.
    """
    pending = [(lesson, module) for lesson, module in modules if not _inputs(layout, lesson, module, kernel).current]
    if len(pending) < 2 or shutil.which("make") is None or not kernel.headers.is_dir():
        return []
    every = [_inputs(layout, lesson, module, kernel) for lesson, module in pending]
    for inputs in every:
        _copy_sources(inputs)
    tree = every[0].tree
    folders = sorted({lesson.name for lesson, _ in pending})
    # Kbuild descends from M= into each lesson's folder; the targets name the modules, so a
    # lesson's module meant not to build (listed in the same folder's Kbuild) is left alone.
    (tree / "Kbuild").write_text("".join(f"obj-m += {folder}/\n" for folder in folders))
    targets = [f"{lesson.name}/{module.name}.ko" for lesson, module in pending]
    # Every CPU: the modules compile side by side (in a cold generation this make is between the host's
    # lessons and the guest's boot, which packs what it builds, and nothing else runs meanwhile).
    with make_safe(tree) as seen:
        finished = subprocess.run(
            ["make", f"-j{os.cpu_count() or 1}", "-C", str(kernel.headers), f"M={seen}", *targets],
            capture_output=True,
            text=True,
        )
    for inputs in every:
        if finished.returncode != 0 or not inputs.ko.is_file():
            return []
    for inputs in every:
        inputs.stamp.write_text(inputs.digest)
    return pending
