"""The ``touchstone`` CLI's API verbs against the real API (the CLI runs in a worker thread,
the API in the test's event loop)."""

from __future__ import annotations

import asyncio
import json

import pytest
import typer
from touchstone.shared import events as ev
from touchstone.shared.testing import sample_report
from typer.testing import CliRunner

from touchstone.cli.api import register

ADMIN_SECRET = "tst_bootstrap-admin-for-tests"  # as the api fixture has it


@pytest.fixture
def cli(api, tmp_path, monkeypatch):
    app = typer.Typer()
    register(app)
    monkeypatch.setenv("TOUCHSTONE_URL", api.url)
    monkeypatch.setenv("TOUCHSTONE_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.delenv("TOUCHSTONE_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    async def run(*args: str, token: str = ADMIN_SECRET, code: int = 0):
        result = await asyncio.to_thread(runner.invoke, app, [*args], env={"TOUCHSTONE_TOKEN": token})
        assert result.exit_code == code, (args, result.exit_code, result.output, result.exception)
        return result

    return run


async def test_a_user_and_an_admin_drive_a_submission_from_the_cli(api, cli) -> None:
    created = json.loads((await cli("token", "create", "erin", "--json")).stdout)
    erin = created["secret"]
    assert "erin" in (await cli("token", "list")).stdout

    submitting = asyncio.create_task(cli("submit", "https://github.com/org/fs.git", "--wait", "--json", token=erin))

    async def created_one() -> bool:
        await api.caught_up()
        return bool((await api.deps.store.list_submissions(owner="erin")).items)

    await api.until(created_one)
    sid = (await api.deps.store.list_submissions(owner="erin")).items[0].id
    await api.validated(sid)  # the scheduler's verdict
    accepted = json.loads((await asyncio.wait_for(submitting, 10)).stdout)
    assert accepted["id"] == sid and accepted["status"] == "ACCEPTED"

    listed = json.loads((await cli("list", "--json", token=erin)).stdout)
    assert [s["id"] for s in listed["items"]] == [sid]
    assert sid in (await cli("list", token=erin)).stdout
    assert "ACCEPTED" in (await cli("show", sid, token=erin)).stdout

    await cli("schedule", sid, "-i", "60", token=erin, code=3)  # admins only
    scheduled = json.loads((await cli("schedule", sid, "-i", "60", "-i", "15", "--args", "--x 'a b'", "--json")).stdout)
    assert [t["task_id"] for t in scheduled["tasks"]] == ["pi-60", "pi-15"]
    assert scheduled["submission"]["schedule"]["passthrough_args"] == ["--x", "a b"]
    refused = await cli("delete", sid, "--yes", token=erin, code=5)
    assert "409" in refused.output and "must be cancelled" in refused.output
    assert "cancelling" in (await cli("cancel", sid, "-y")).stdout
    await api.record(ev.SubmissionCancelled(aggregate_id=sid, correlation_id=sid))
    assert f"deleted {sid}" in (await cli("delete", sid, "--yes", token=erin)).stdout


async def test_tasks_logs_system_and_tokens_from_the_cli(api, cli) -> None:
    sid = await api.accepted(api.alice)
    base = {"aggregate_id": f"{sid}-pi-60", "correlation_id": sid, "submission_id": sid, "task_id": "pi-60"}
    await api.record(ev.TaskQueued(**base, spec=ev.TaskSpec(git_url="https://github.com/org/fs.git")))
    await api.deps.js.publish(api.deps.subjects.logs(f"{sid}-pi-60"), b"line one\nline two\n")
    assert "pi-60" in (await cli("tasks")).stdout
    assert (await cli("logs", sid, "pi-60", "--tail", "1")).stdout == "line two\n"
    following = asyncio.create_task(cli("logs", sid, "pi-60", "--follow"))
    await asyncio.sleep(0.5)
    await api.record(ev.TaskCancelled(**base))
    assert (await asyncio.wait_for(following, 10)).stdout == "line one\nline two\n"

    await cli("system", "set", "--pause", "--server", "gpu1=2", "--runpod-max-running-tasks", "3")
    shown = json.loads((await cli("system", "show", "--json")).stdout)
    assert shown["scheduler_paused"] and shown["servers"][0] == {
        "name": "gpu1",
        "num_slots": 2,
        "gpus": [],
        "labels": {},
    }
    await cli("system", "set", "--resume", "--revision", "0", code=5)  # stale revision: 409
    await cli("system", "set", code=2)  # nothing to change: a usage error

    made = json.loads((await cli("token", "create", "frank", "--role", "admin", "--json")).stdout)
    await cli("token", "revoke", made["id"], "--yes")
    assert (await cli("system", "show", token=made["secret"], code=3)).exit_code == 3


async def test_task_output_reaches_the_terminal_without_control_sequences_unless_raw(api, cli) -> None:
    sid = await api.accepted(api.alice)
    base = {"aggregate_id": f"{sid}-pi-60", "correlation_id": sid, "submission_id": sid, "task_id": "pi-60"}
    await api.record(ev.TaskQueued(**base, spec=ev.TaskSpec(git_url="https://github.com/org/fs.git")))
    hostile = "\x1b]0;owned\x07\x1b]52;c;ZXZpbA==\x07\x1b[2J\x1b[31mred\x1b[0m \x9b1Adone"
    await api.deps.js.publish(api.deps.subjects.logs(f"{sid}-pi-60"), hostile.encode())
    shown = (await cli("logs", sid, "pi-60")).stdout
    assert shown == "red done\n", repr(shown)
    assert (await cli("logs", sid, "pi-60", "--raw")).stdout == hostile + "\n"


async def test_show_prints_the_validation_report_and_json_gives_its_typed_shape(api, cli) -> None:
    sid = await api.submit(api.alice)
    report = sample_report(False, detail="values change \x1b]0;pwned\x07when later rows are added [bold]x[/bold]")
    await api.record(ev.SubmissionValidated(aggregate_id=sid, correlation_id=sid, passed=False, report=report))

    shown = (await cli("show", sid)).stdout
    assert "failed 1 of 11 checks (1.25 s, 8000 canned candles)" in shown
    assert "feature set 'demo', LOOKBACK 20, 2 columns" in shown
    lines = shown.splitlines()
    failing = next(line for line in lines if "no_lookahead" in line)
    assert "✗" in failing and "values change when later rows are added" in failing
    assert "[bold]x[/bold]" in shown  # printed as text, not taken for markup
    assert "\x1b" not in shown and "pwned" not in shown  # the trainer's text cannot drive the terminal
    assert sum("✓" in line for line in lines) == 10

    typed = json.loads((await cli("show", sid, "--json")).stdout)["validation_report"]
    assert typed == {**report, "data": {**report["data"], "start": "2024-01-01T00:00:00",
                                        "end": "2024-01-06T13:19:00"}}
    assert [c["name"] for c in typed["checks"] if not c["passed"]] == ["no_lookahead"]
