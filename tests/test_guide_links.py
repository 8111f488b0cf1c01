"""The README and the instructor guide lead to the API reference (a page no other page links to from the guide)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _links(text: str) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", text)


def test_the_readme_and_the_guide_link_the_api_reference() -> None:
    readme = _links((ROOT / "README.md").read_text())
    assert "docs/api.md" in readme, "the README links the API reference's source (GitHub shows it)"
    guide = _links((ROOT / "docs" / "instructors.md").read_text())
    assert "api.md" in guide, "the guide links the API reference (the site's page)"
    for target in ("docs/api.md",):
        assert (ROOT / target).is_file()
