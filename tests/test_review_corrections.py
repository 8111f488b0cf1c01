"""The technical review's corrections stay made: each claim checked against what can check it here.

Where this machine holds the evidence (the guest kernels' configurations in /boot, the article's
text), the test reads it; where the evidence is a kernel source this machine does not hold, the
test keeps the corrected wording from sliding back to the one the review found wrong.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTICLE = ROOT.parent / "shared" / "seed" / "kernel-system-calls.txt"  # shared/ lies beside the clone


def _text(relative: str) -> str:
    return " ".join((ROOT / relative).read_text().split())  # one line: wording survives rewrapping


def _row(table_text: str, first_cell: str) -> str:
    return next(line for line in (ROOT / table_text).read_text().splitlines() if line.startswith(f"| {first_cell}"))


def test_entry_syscall_64_begins_with_endbr_where_ibt_is_built_in_then_swapgs() -> None:
    lesson = _text("lessons/05-get-fs.md")
    assert "first instruction of `entry_SYSCALL_64` (`arch/x86/entry/entry_64.S`) is `swapgs`" not in lesson
    assert "`endbr64` in kernels built with `CONFIG_X86_KERNEL_IBT` (Debian's 6.12 is, its 6.1 is not" in lesson


@pytest.mark.parametrize(("pattern", "built_in"), [("config-6.12*", True), ("config-6.1.*", False)])
def test_the_lessons_claim_about_ibt_holds_for_the_installed_guest_kernels(pattern: str, built_in: bool) -> None:
    configs = [path for path in Path("/boot").glob(pattern) if "-rt-" not in path.name]
    if not configs:
        pytest.skip(f"no /boot/{pattern} installed here")
    for config in configs:
        assert ("CONFIG_X86_KERNEL_IBT=y" in config.read_text().splitlines()) is built_in, config


@pytest.mark.parametrize("page", ["lessons/01-user-kernel.md", "lessons/08-since-2000.md", "docs/measuring.md"])
def test_the_entry_functions_are_placed_in_common_c_for_6_1_and_6_12(page: str) -> None:
    text = _text(page)
    assert "`arch/x86/entry/common.c` in 6.1 and 6.12" in text or "common.c` in 6.1 and 6.12" in text
    assert not re.search(r"syscall_(32|64)\.c`? (in|on) later kernels", text), "later mainline only, not 6.12"


def test_the_glossary_dates_the_tsc_from_the_pentium_as_the_article_does() -> None:
    glossary = _text("docs/glossary.md")
    assert "every x86 processor" not in glossary
    assert '(the article: "all kinds of Pentium processors")' in glossary
    if ARTICLE.is_file():
        assert "all kinds of Pentium processors" in " ".join(ARTICLE.read_text().split())


def test_lesson_5_attributes_to_the_article_only_the_words_it_quotes() -> None:
    lesson = _text("lessons/05-get-fs.md")
    assert "Rubini's article quoted the phrase" not in lesson
    assert 'Rubini\'s article called them "grossly misnamed"' in lesson
    if ARTICLE.is_file():
        article = ARTICLE.read_text()
        assert "grossly misnamed" in article and "For historical reasons" not in article


def test_the_glossary_puts_srsos_cost_on_every_return_instruction() -> None:
    glossary = _text("docs/glossary.md")
    assert "every return from the kernel" not in glossary
    for words in ("every `ret` inside the kernel through a return thunk", "`UNTRAIN_RET`", "srso_select_mitigation()"):
        assert words in glossary


def test_lesson_8s_mitigation_rows_say_what_each_file_does_on_the_way_out() -> None:
    page = "lessons/08-since-2000.md"
    assert '"Clear Register File"' in _row(page, "`reg_file_data_sampling`")
    assert "also affected by MDS or TAA" in _row(page, "`mmio_stale_data`")
    tsa = _row(page, "`tsa`")
    assert "VM-only mode" in tsa and "no `verw` on the way out to user space" in tsa
