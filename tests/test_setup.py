"""The README's set-up promise, checked as made: the lock installs on the oldest promised Python."""

from __future__ import annotations

import re
import subprocess
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]

#: The oldest Python the README promises ("Python 3.11 or newer" means 3.11.0 too).
OLDEST_PROMISED = Version("3.11.0")

#: Debian 12's own interpreter, the one a stock machine has.
DEBIAN_PYTHON = Path("/usr/bin/python3")


def locked() -> dict[str, str]:
    """Every package pinned in requirements.lock, name -> version."""
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"{line}: the lock pins exact versions"
        pins[requirement.name] = specifier.version
    return pins


def test_the_readme_promises_the_python_that_pyproject_and_bootstrap_require() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "Python 3.11 or newer" in readme
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert SpecifierSet(requires).contains(OLDEST_PROMISED)
    assert "sys.version_info < (3, 11)" in (ROOT / "bootstrap").read_text()


def test_every_locked_package_installs_on_the_oldest_promised_python() -> None:
    """Each pinned distribution's own Requires-Python admits 3.11.0 (soupsieve 4.x wanted 3.11.5)."""
    refused = []
    for name, version in locked().items():
        try:
            installed = metadata.metadata(name)
        except metadata.PackageNotFoundError:
            pytest.fail(f"{name} is pinned in requirements.lock but not installed: run ./bootstrap")
        assert installed["Version"] == version, f"{name}: installed {installed['Version']}, locked {version}"
        requires = installed.get("Requires-Python")
        if requires and not SpecifierSet(requires).contains(OLDEST_PROMISED):
            refused.append(f"{name}=={version} (Requires-Python {requires})")
    assert not refused, f"locked packages that refuse Python {OLDEST_PROMISED}: {', '.join(refused)}"


@pytest.mark.skipif(not DEBIAN_PYTHON.exists(), reason="no /usr/bin/python3: not a Debian machine")
def test_bootstrap_builds_the_environment_with_debians_own_python() -> None:
    """Whatever is first on PATH here (pyenv's 3.11.7), bootstrap uses /usr/bin/python3, as the README says."""
    config = (ROOT / ".venv" / "pyvenv.cfg").read_text()
    home = re.search(r"^home = (.*)$", config, re.MULTILINE)
    assert home and home.group(1) == str(DEBIAN_PYTHON.parent), config
    debian = subprocess.run(
        [str(DEBIAN_PYTHON), "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert re.search(r"^version = (.*)$", config, re.MULTILINE).group(1) == debian  # type: ignore[union-attr]
    assert "/usr/bin/python3" in (ROOT / "README.md").read_text()
