"""Shared fixtures: Sphinx's own testing fixtures, and a checkout of the course to run against."""

from __future__ import annotations

from pathlib import Path

import pytest

from course.layout import Layout

pytest_plugins = ("sphinx.testing.fixtures",)

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def rootdir() -> Path:
    """Where ``@pytest.mark.sphinx(testroot=...)`` finds its small test projects."""
    return TESTS / "roots"


@pytest.fixture
def course_root() -> Path:
    return ROOT


@pytest.fixture
def scratch_layout(tmp_path: Path) -> Layout:
    """The real checkout, with results and build output in a temporary folder."""
    return Layout(ROOT, results_dir=tmp_path / "results", build_dir=tmp_path / "build")
