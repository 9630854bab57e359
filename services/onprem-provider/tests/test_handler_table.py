"""The README's handler table is the code's: every message the provider reacts to, and the
reaction it goes to, in the order of ``COMMANDS`` then ``REPORTS``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from touchstone.onprem_provider.handlers import COMMANDS, REPORTS
from touchstone.shared.reactions import Reactions

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_rows(text: str) -> list[tuple[str, str]]:
    """(message, reaction) of each row of the table under "## Reactions"."""
    section = text.split("\n## Reactions", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 3:
            rows.append((cells[0], cells[1]))
    return rows


def code_rows(*tables: Reactions[Any]) -> list[tuple[str, str]]:
    return [(name, getattr(table.get(name), "__name__", "?")) for table in tables for name in table]


def test_the_readme_table_is_the_reaction_tables() -> None:
    assert readme_rows(README.read_text()) == code_rows(COMMANDS, REPORTS)


def test_a_readme_out_of_step_is_caught() -> None:
    text = README.read_text()
    renamed = text.replace("| `on_terminate_task` |", "| `on_stop_task` |")
    dropped = "\n".join(line for line in text.splitlines() if not line.startswith("| `AgentHeartbeat`"))
    for wrong in (renamed, dropped):
        assert readme_rows(wrong) != code_rows(COMMANDS, REPORTS)
