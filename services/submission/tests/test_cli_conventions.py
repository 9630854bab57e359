"""The ``touchstone`` command's conventions: login and profiles, --version, confirmation with
-y/--yes, exit codes (2 only for usage errors), help with examples on every verb and option,
completion of fixed values, --json on every API verb, and ``schedule -f schedule.yaml``
validated by the API's own model. Verbs run against the real API."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from touchstone.shared import events as ev
from typer.testing import CliRunner

from touchstone.cli.main import app as main_app

ADMIN_SECRET = "tst_bootstrap-admin-for-tests"
API_VERBS = ("submit", "list", "show", "schedule", "cancel", "delete", "logs", "tasks", "system show",
             "system set", "token create", "token list", "token revoke", "leaderboard", "evaluations", "login",
             "agent exec", "agent get", "agent put")


@pytest.fixture
def env(tmp_path, monkeypatch):
    for name in ("TOUCHSTONE_URL", "TOUCHSTONE_TOKEN", "TOUCHSTONE_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TOUCHSTONE_CONFIG", str(tmp_path / "cli.toml"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*args: str, code: int = 0, input: str | None = None, **env: str):
    result = CliRunner().invoke(main_app, [*args], input=input, env=env or None)
    assert result.exit_code == code, (args, result.exit_code, result.output, result.exception)
    return result


async def arun(*args: str, **kw):
    return await asyncio.to_thread(run, *args, **kw)


def _command(path: str) -> Any:
    cmd: Any = typer.main.get_command(main_app)
    for part in path.split():
        cmd = cmd.commands[part]
    return cmd


def test_version_and_exit_codes_in_help(env) -> None:
    assert run("--version").stdout.startswith("touchstone 0.1.0")
    text = run("--help").stdout
    assert "Exit codes" in text and "2 usage error" in text


def test_every_api_verb_has_json_help_on_every_option_and_an_example(env) -> None:
    for path in API_VERBS:
        cmd = _command(path)
        names = {o for p in cmd.params for o in getattr(p, "opts", [])}
        assert "--json" in names, path
        assert "Example:" in (cmd.help or ""), path
        for p in cmd.params:
            assert getattr(p, "help", None), (path, p.name)  # options and arguments alike


@pytest.mark.integration  # a shell completion per option, each a fresh interpreter
def test_completion_of_fixed_values(env) -> None:
    """Through the installed command, as bash asks for completions."""
    touchstone = Path(sys.executable).parent / "touchstone"

    def values(line: str) -> list[str]:
        words = line.split(" ")
        asking = {"_TOUCHSTONE_COMPLETE": "complete_bash", "COMP_WORDS": line, "COMP_CWORD": str(len(words) - 1)}
        done = subprocess.run([str(touchstone)], capture_output=True, text=True, timeout=60,
                              env={**os.environ, **asking})
        return done.stdout.split()

    assert values("touchstone schedule s-1 --platform ") == ["onprem", "runpod", "any"]
    assert values("touchstone tasks --status RU") == ["RUNNING"]
    assert "ACCEPTED" in values("touchstone list --status ")
    assert values("touchstone token create alice --role ") == ["user", "admin"]
    assert values("touchstone leaderboard --side ") == ["long", "short"]


def test_usage_errors_and_only_they_exit_2(env) -> None:
    run("list", "--no-such-option", code=2)
    run("tasks", "--status", "SLEEPING", code=2)
    run("schedule", "s-1", code=2)  # neither --interval nor --file
    run("schedule", "s-1", "-i", "15", "-f", str(env / "x.yaml"), code=2)
    # the server cannot be reached: 6, not 2
    run("list", "--url", "http://127.0.0.1:9", "--token", "x", code=6)


def test_a_schedule_file_is_checked_by_the_apis_model_before_it_is_sent(env) -> None:
    bad = env / "bad.yaml"
    bad.write_text("prediction_intervals: [15, soon]\nplatform: moon\nsurprise: 1\n")
    err = run("schedule", "s-1", "-f", str(bad), "--url", "http://127.0.0.1:9", code=2).output
    assert "prediction_intervals.1" in err and "platform" in err and "surprise" in err
    run("schedule", "s-1", "-f", str(env / "missing.yaml"), code=2)


async def test_login_writes_a_profile_and_verbs_use_it(api, env) -> None:
    await arun("login", "--url", api.url, "--token", "tst_wrong", code=3)
    assert not (env / "cli.toml").exists()  # nothing saved on a refused token
    await arun("login", "--url", api.url, "--profile", "staging", input=ADMIN_SECRET + "\n")
    path = env / "cli.toml"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert "[profiles.staging]" in path.read_text()
    sid = await api.submit(api.alice)
    listed = json.loads((await arun("--profile", "staging", "list", "--json")).stdout)
    assert sid in [s["id"] for s in listed["items"]]
    # without the profile there is no token: 401 -> 3
    await arun("list", "--url", api.url, code=3)
    # a second login keeps the first profile and fills the default one
    await arun("login", "--url", api.url, "--token", ADMIN_SECRET, "--json")
    assert "[profiles.staging]" in path.read_text() and path.read_text().count("url =") == 2
    assert json.loads((await arun("list", "--json")).stdout)["items"]


async def test_delete_cancel_and_revoke_ask_first_unless_yes(api, env) -> None:
    await arun("login", "--url", api.url, "--token", ADMIN_SECRET)
    sid = await api.accepted(api.alice)
    refused = await arun("delete", sid, input="n\n", code=1)
    assert "Delete" in refused.output and await api.status(sid) == "ACCEPTED"
    await arun("cancel", sid, input="n\n", code=1)
    made = json.loads((await arun("token", "create", "gina", "--json")).stdout)
    await arun("token", "revoke", made["id"], input="n\n", code=1)
    await arun("token", "revoke", made["id"], input="y\n")
    assert (await arun("token", "revoke", made["id"], "--yes", code=4)).exit_code == 4  # gone: 404
    assert f"deleted {sid}" in (await arun("delete", sid, "-y")).stdout
    await arun("show", sid, "--json", code=4)  # a deleted submission is gone for its reader: 404


async def test_schedule_from_a_file(api, env) -> None:
    await arun("login", "--url", api.url, "--token", ADMIN_SECRET)
    sid = await api.accepted(api.alice)
    spec = env / "schedule.yaml"
    spec.write_text("prediction_intervals: [15, 60]\ntrainer_ref: v2\nplatform: onprem\n"
                    "passthrough_args: [--epochs, '3']\npriority: 5\n")
    accepted = json.loads((await arun("schedule", sid, "-f", str(spec), "--json")).stdout)
    assert [t["task_id"] for t in accepted["tasks"]] == ["pi-15", "pi-60"]
    schedule = accepted["submission"]["schedule"]
    assert (schedule["trainer_ref"], schedule["platform"], schedule["priority"]) == ("v2", "onprem", 5)
    assert schedule["passthrough_args"] == ["--epochs", "3"]


async def test_logs_as_json_lines(api, env) -> None:
    await arun("login", "--url", api.url, "--token", ADMIN_SECRET)
    sid = await api.accepted(api.alice)
    base = {"aggregate_id": f"{sid}-pi-60", "correlation_id": sid, "submission_id": sid, "task_id": "pi-60"}
    await api.record(ev.TaskQueued(**base, spec=ev.TaskSpec(git_url="https://github.com/org/fs.git")))
    await api.deps.js.publish(api.deps.subjects.logs(f"{sid}-pi-60"), b"line one\n[x] two\n")
    out = (await arun("logs", sid, "pi-60", "--json")).stdout
    assert [json.loads(line) for line in out.splitlines()] == ["line one", "[x] two"]
