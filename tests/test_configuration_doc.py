"""docs/configuration.md is what ``touchstone config docs`` renders from the settings classes:
every ``TOUCHSTONE_*`` setting of every service, with its default. A setting added, removed or
re-described without regenerating the file fails here, with the command that fixes it."""

from __future__ import annotations

import re
from pathlib import Path

import typer
from typer.testing import CliRunner

from touchstone.cli.configdoc import REGENERATE, env_name, render, sections
from touchstone.cli.main import app

TOUCHSTONE = typer.main.get_command(app)
DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_the_committed_reference_is_current() -> None:
    assert DOC.read_text() == render(TOUCHSTONE), f"docs/configuration.md is stale: run `.venv/bin/{REGENERATE}`"


def test_every_setting_of_every_service_is_listed_with_a_default_and_a_meaning() -> None:
    rows = {line.split("|")[1].strip(" `"): line for line in DOC.read_text().splitlines()
            if line.startswith("| `TOUCHSTONE_")}
    for section in sections():
        for name in section.settings.model_fields:
            variable = env_name(section.settings, name)
            assert variable in rows, f"{variable} ({section.settings.__name__}) is missing"
            _, default, meaning = re.split(r"(?<!\\) \| ", rows[variable][2:-2])
            assert default.strip() and meaning.strip(), rows[variable]
    # the settings an operator needs first are there with their real defaults
    assert "| `TOUCHSTONE_NATS_URL` | `nats://127.0.0.1:4222` |" in DOC.read_text()
    assert "| `TOUCHSTONE_METRICS_HOST` | `127.0.0.1` |" in DOC.read_text()
    assert "| `TOUCHSTONE_PORT` | `8080` |" in DOC.read_text()


def test_check_fails_on_a_stale_file_and_write_fixes_it(tmp_path: Path) -> None:
    runner = CliRunner()
    stale = tmp_path / "configuration.md"
    stale.write_text(DOC.read_text().replace("TOUCHSTONE_NATS_URL", "TOUCHSTONE_NATS_ADDRESS"))
    failed = runner.invoke(app, ["config", "docs", "--output", str(stale), "--check"])
    assert failed.exit_code == 1
    assert "stale" in failed.output and "touchstone config docs" in failed.output
    assert runner.invoke(app, ["config", "docs", "--output", str(stale)]).exit_code == 0
    assert runner.invoke(app, ["config", "docs", "--output", str(stale), "--check"]).exit_code == 0
    assert stale.read_text() == render(TOUCHSTONE)
