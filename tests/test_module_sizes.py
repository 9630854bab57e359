"""Modules stay short, or say why not: every source module over 300 lines has its line in
docs/architecture.md ("Modules over 300 lines"), and every line there names a module that exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIMIT = 300


def source_modules() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split()
    return [p for p in listed if "/tests/" not in p and not p.startswith("tests/") and not p.endswith("conftest.py")]


def explained() -> set[str]:
    text = (REPO / "docs" / "architecture.md").read_text()
    section = text[text.index("### Modules over 300 lines"):]
    return set(re.findall(r"^- `([^`]+\.py)`:", section, flags=re.M))


def test_every_long_module_is_explained() -> None:
    long = {p for p in source_modules() if (REPO / p).exists() and len((REPO / p).read_text().splitlines()) > LIMIT}
    missing = sorted(long - explained())
    assert not missing, f"over {LIMIT} lines without a line in docs/architecture.md: {missing}"


def test_every_explained_module_exists() -> None:
    gone = sorted(p for p in explained() if not (REPO / p).exists())
    assert not gone, f"docs/architecture.md explains modules that are gone: {gone}"
