"""The README's handler table is the code's: every message the provider reacts to, and the
reaction it goes to, in the order of ``COMMANDS`` then ``REPORTS``; and the work queue filter
the command table gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

from touchstone.onprem_provider.handlers import COMMANDS, REPORTS
from touchstone.onprem_provider.service import SERVICE
from touchstone.shared.commands import AnyCommand
from touchstone.shared.reactions import Reactions, type_name
from touchstone.shared.subjects import Subjects

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


def test_the_work_queue_filter_takes_every_command_there_is(subjects: Subjects) -> None:
    """The filter is one subject per command in the table, as the scheduler publishes them
    (``Subjects.command``): every command of the wire has a reaction, so none is left on the
    work queue unconsumed, as with the wildcard ``{ns}.cmd.onprem-provider.>`` before."""
    spec = COMMANDS.command_consumer(SERVICE, subjects, ack_wait_s=30, max_deliver=5)
    wire = [type_name(command) for command in get_args(get_args(AnyCommand)[0])]
    assert spec.name == "onprem-provider" and spec.stream == subjects.commands_stream
    assert sorted(spec.filter_subjects) == sorted(subjects.command(SERVICE, name) for name in wire)
