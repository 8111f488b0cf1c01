"""A guest kernel's result set is never silently replaced by another release's figures.

The shipped icount sets (``qemu-icount-debian-6.1`` and the others) name a kernel series, not a
release: when Debian moves its guest kernel on (6.1.0-56 to 6.1.0-57), a new run would rewrite
the set's files with the new release's figures, and a path length the lessons quote would move
under a name that did not change. So a run that would measure into a set holding another
release of its kernel stops first and says so; ``--force`` accepts the replacement (then
commit the set again: the site shows the release each figure was measured on).
"""

from __future__ import annotations

from pathlib import Path

from course.kernel import guest_kernels, vm
from course.kernel.kernel_build import GuestKernel
from course.results import store


class ReleaseChangeError(RuntimeError):
    """A run would replace a set's figures with another release's; the message says how to accept it."""


def stored_release(set_path: Path) -> str:
    """The guest kernel release a set's figures were measured on ("" for a new or a host's set)."""
    if not (set_path / store.SET_FILE).is_file():
        return ""
    release = (store.read_json(set_path / store.SET_FILE).get("guest") or {}).get("release")
    return release if isinstance(release, str) else ""


def refuse_release_change(
    results: Path, kernels: dict[str, GuestKernel], acceleration: str, host_set: str, force: bool, shown: str = ""
) -> None:
    """Stop before anything runs if a set of ``kernels`` holds another release's figures (unless ``force``).

    ``shown``: the guest hardware's slug (a CPU model, kernel parameters), part of the sets' names.
    """
    if force or acceleration not in vm.ACCELERATIONS:  # auto: the set is named after the probe, a host's own
        return
    changed = []
    for name, kernel in kernels.items():
        set_path = results / guest_kernels.set_name(name, acceleration, host_set, shown)
        stored = stored_release(set_path)
        if stored and stored != kernel.release:
            changed.append(f"{set_path.name} holds {stored}'s figures, and the installed {name} is {kernel.release}")
    if changed:
        raise ReleaseChangeError(
            "measuring would replace a set's figures with another kernel release's: "
            + "; ".join(changed)
            + ". Rerun with --force to replace them (then commit the sets again), or install the release they hold"
        )
