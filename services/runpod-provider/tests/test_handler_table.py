"""The README's handler table is the reactions table: every command the consumer takes, and the
reaction it runs, in both (a reaction added or renamed without its row fails here)."""

from __future__ import annotations

import re
from pathlib import Path

from touchstone.runpod_provider.handlers import REACTIONS

README = Path(__file__).resolve().parents[1] / "README.md"


def handler_rows(markdown: str) -> list[tuple[str, str]]:
    """``(message, reaction)`` of each row of the table under ``## Handlers``."""
    section = markdown.split("\n## Handlers\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and not set(cells[0]) <= set("-: ") and cells[0] != "message":
            rows.append((cells[0].strip("`"), cells[1].strip("`")))
    return rows


def table() -> list[tuple[str, str]]:
    return [(name, getattr(REACTIONS.get(name), "__name__", "")) for name in REACTIONS]


def test_the_readme_shows_exactly_the_reactions_table() -> None:
    assert handler_rows(README.read_text()) == table()
    assert [name for name, _ in table()] == ["LaunchTask", "TerminateTask"]


def test_a_readme_that_misses_or_misnames_a_reaction_disagrees() -> None:
    text = README.read_text()
    missing = re.sub(r"^\| `TerminateTask` .*\n", "", text, flags=re.M)
    renamed = text.replace("`on_launch_task`", "`on_launch`")
    assert handler_rows(missing) != table() and handler_rows(renamed) != table()
