"""Each service's README shows its reaction tables (message → reaction → what it does), and
they say what the code does: every ``| message | reaction | ... |`` table of a README, in
order, lists exactly the rows of the service's ``Reactions`` tables, in their order."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import get_args

import pytest
from touchstone.shared.commands import AnyCommand
from touchstone.shared.reactions import Reactions, type_name

REPO = Path(__file__).resolve().parents[1]

# README → its consumers' tables, in the order the README shows them ("module:attribute"; a
# README table may show two code tables one after the other: "a+b")
SERVICES = {
    "services/submission/README.md": ["touchstone.submission.handlers:REACTIONS"],
    "services/results/README.md": [
        "touchstone.results.handlers:REACTIONS",
        "touchstone.results.alarms:EVENT_REACTIONS",
        "touchstone.results.alarms:DEAD_LETTER_REACTIONS",
    ],
    "services/scheduler/README.md": ["touchstone.scheduler.handlers:REACTIONS"],
    "services/onprem-provider/README.md": [
        "touchstone.onprem_provider.handlers:COMMANDS+touchstone.onprem_provider.handlers:REPORTS"],
    "services/runpod-provider/README.md": ["touchstone.runpod_provider.handlers:REACTIONS"],
    "agent/README.md": ["touchstone.agent.handlers:REACTIONS"],
}

Row = tuple[str, str]
_HEADER = re.compile(r"^\|\s*message\s*\|\s*reaction\s*\|", re.I)


def readme_tables(text: str) -> list[list[Row]]:
    """The (message, reaction) rows of every ``| message | reaction | ... |`` table."""
    tables: list[list[Row]] = []
    rows: list[Row] | None = None
    for line in text.splitlines():
        line = line.strip()
        if _HEADER.match(line):
            rows = []
            tables.append(rows)
        elif rows is not None and line.startswith("|"):
            cells = [cell.strip().strip("`").strip() for cell in line.strip("|").split("|")]
            if set(cells[0]) <= set("-: "):  # the separator row
                continue
            rows.append((cells[0], cells[1] if len(cells) > 1 else ""))
        else:
            rows = None
    return tables


def code_rows(table: Reactions[object]) -> list[Row]:
    rows = []
    for name in table:
        reaction = table.get(name)
        rows.append((name, getattr(reaction, "__name__", repr(reaction))))
    return rows


def load(refs: str) -> Reactions[object]:
    tables = []
    for ref in refs.split("+"):
        module, attribute = ref.split(":")
        table = getattr(importlib.import_module(module), attribute)
        assert isinstance(table, Reactions), ref
        tables.append(table)
    whole = tables[0]
    for table in tables[1:]:
        whole = whole.merged(table)
    return whole


def disagreements(text: str, tables: list[Reactions[object]]) -> list[str]:
    """What the README says that the code does not (empty: they agree)."""
    shown = readme_tables(text)
    if len(shown) != len(tables):
        return [f"{len(shown)} reaction tables in the README, {len(tables)} in the code"]
    found = []
    for i, (rows, table) in enumerate(zip(shown, tables, strict=True)):
        code = code_rows(table)
        if rows != code:
            only_readme, only_code = sorted(set(rows) - set(code)), sorted(set(code) - set(rows))
            order = "" if only_readme or only_code else " (same rows, another order)"
            found.append(f"table {i + 1}: README {only_readme} vs code {only_code}{order}")
    return found


@pytest.mark.parametrize("readme", sorted(SERVICES))
def test_the_readme_shows_the_reactions_the_code_binds(readme: str) -> None:
    tables = [load(ref) for ref in SERVICES[readme]]
    assert all(list(table) for table in tables)
    assert disagreements((REPO / readme).read_text(), tables) == []


def test_a_readme_that_drifts_from_the_code_is_caught() -> None:
    readme = (REPO / "services/scheduler/README.md").read_text()
    table = load("touchstone.scheduler.handlers:REACTIONS")
    assert disagreements(readme, [table]) == []
    dropped = readme.replace("| `TaskRetried` | `on_task_queued` | run placement |\n", "")
    assert disagreements(dropped, [table]) == [
        "table 1: README [] vs code [('TaskRetried', 'on_task_queued')]"]
    renamed = readme.replace("`on_container_terminated` |", "`on_gone` |")
    assert "('ContainerTerminated', 'on_gone')" in disagreements(renamed, [table])[0]
    assert disagreements(readme + "\n| message | reaction |\n|---|---|\n| `X` | `on_x` |\n", [table]) == [
        "2 reaction tables in the README, 1 in the code"]


@pytest.mark.parametrize("refs", ["touchstone.onprem_provider.handlers:COMMANDS",
                                  "touchstone.runpod_provider.handlers:REACTIONS",
                                  "touchstone.agent.handlers:REACTIONS"])
def test_every_command_on_the_wire_has_a_reaction(refs: str) -> None:
    """A provider's work queue filter is one subject per command of its table: a command the
    scheduler can send without a row would sit on the work queue unconsumed."""
    wire = sorted(type_name(command) for command in get_args(get_args(AnyCommand)[0]))
    assert sorted(load(refs)) == wire
