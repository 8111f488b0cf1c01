"""Where things live in a checkout: one object instead of paths spelled everywhere."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    """The folders of one checkout of the course."""

    root: Path
    results_dir: Path | None = None  # default: <root>/results
    build_dir: Path | None = None  # default: <root>/build

    @property
    def lessons(self) -> Path:
        return self.root / "lessons"

    @property
    def user_code(self) -> Path:
        return self.root / "code" / "user"

    @property
    def kernel_code(self) -> Path:
        return self.root / "code" / "kernel"

    @property
    def results(self) -> Path:
        return self.results_dir or self.root / "results"

    @property
    def build(self) -> Path:
        return self.build_dir or self.root / "build"

    @property
    def html(self) -> Path:
        return self.build / "html"

    @property
    def doctrees(self) -> Path:
        return self.build / "doctrees"


def find_root(start: Path | None = None) -> Path:
    """The checkout holding ``start`` (or this package): the folder with ``conf.py``."""
    here = (start or Path(__file__)).resolve()
    for folder in [here, *here.parents]:
        if (folder / "conf.py").is_file() and (folder / "lessons").is_dir():
            return folder
    raise FileNotFoundError(f"no course checkout around {here}: expected a folder with conf.py and lessons/")
