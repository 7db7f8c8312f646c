"""docs/reliability.md names the test holding each promise: every name it gives must exist."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def named_tests() -> list[tuple[str, str]]:
    """``(file, test)`` for every ``test_x.py::name`` and every ``::name`` (same file as the one before)."""
    text = (ROOT / "docs" / "reliability.md").read_text(encoding="utf-8")
    found, current = [], None
    for match in re.finditer(r"`(?:tests/)?(test_\w+\.py)?(?:::(\w+))?", text):
        file, test = match.groups()
        if file:
            current = file
        if test:
            assert current is not None, f"::{test} before any file name"
            found.append((current, test))
    return found


def test_every_test_named_in_reliability_md_exists() -> None:
    names = named_tests()
    assert len(names) > 40
    missing = [f"{file}::{test}" for file, test in names
               if not (ROOT / "tests" / file).is_file()
               or not re.search(rf"def {re.escape(test)}\(", (ROOT / "tests" / file).read_text(encoding="utf-8"))]
    assert not missing, missing
