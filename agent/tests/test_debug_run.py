"""``touchstone debug run``: a task's attempt run here with the spec the record holds, through
the agent's own phases, printing its console and recording nothing."""

from __future__ import annotations

import asyncio

from touchstone.agent.debugrun import NoSuchTask, launch_of, run_attempt
from touchstone.shared import events as ev
from touchstone.shared.publisher import EventPublisher
from typer.testing import CliRunner

from touchstone.cli.main import app


async def record_task(js, subjects, feature_set: str, sid: str = "s-dbg", tid: str = "pi-15") -> list[ev.Event]:
    pub = EventPublisher(js, subjects)
    common = {"aggregate_id": f"{sid}-{tid}", "correlation_id": sid, "submission_id": sid, "task_id": tid}
    recorded = [
        ev.TaskQueued(**common, kind="training", prediction_interval=15,
                      spec=ev.TaskSpec(git_url=feature_set, trainer_ref="main", passthrough_args=("--x", "1"))),
        ev.TaskAssigned(**common, attempt=1, platform="onprem", placement="gpu-a/0"),
        ev.TaskFailed(**common, attempt=1, reason="exit code 3", failure_class="trainer"),
        ev.TaskRetried(**common, attempt=2, not_before=ev.utcnow()),
        ev.TaskAssigned(**common, attempt=2, platform="onprem", placement="gpu-a/1"),
    ]
    for event in recorded:
        await pub.append(event)
    return recorded


async def stream_size(js, subjects) -> tuple[int, int]:
    events = (await js.stream_info(subjects.events_stream)).state.messages
    logs = (await js.stream_info(subjects.logs_stream)).state.messages
    return events, logs


async def test_the_latest_attempt_runs_here_with_the_recorded_spec_and_records_nothing(
        js, subjects, agent_settings, make_feature_set) -> None:
    fs = make_feature_set("dbg", lines=["hello from the task", "\x1b]0;pwned\x07title"])
    recorded = await record_task(js, subjects, fs)
    history = await EventPublisher(js, subjects).load_task("s-dbg", "pi-15")
    command = launch_of(history, "debug-here", gpu=False)
    assert (command.attempt, command.placement, command.kind) == (2, "debug-here/cpu0", "training")
    assert command.spec == recorded[0].spec and command.prediction_interval == 15
    before = await stream_size(js, subjects)

    lines: list[str] = []
    done = await run_attempt(command, agent_settings(host="debug-here"), echo=lines.append, deadline_s=60)
    assert done.outcome.result == "exited" and done.outcome.exit_code == 0
    assert "hello from the task" in lines and "stand-in done" in lines
    assert done.outcome.metrics == {"long": {"accuracy": 0.6}}
    assert (done.outputs / "metrics.json").is_file() and (done.outputs / "models" / "long.json").is_file()
    assert await stream_size(js, subjects) == before  # no event, no console line published


async def test_the_cli_runs_it_and_says_how_it_ended(nats_server, js, subjects, tmp_path, make_feature_set,
                                                     stand_in_trainer) -> None:
    await record_task(js, subjects, make_feature_set("cli", lines=["\x1b[2Jcleared?"], exit=4))
    env = {"TOUCHSTONE_NATS_URL": nats_server.url, "TOUCHSTONE_NAMESPACE": subjects.ns,
           "TOUCHSTONE_RUNTIME": "process", "TOUCHSTONE_PROCESS_SANDBOX": "none",
           "TOUCHSTONE_TRAINER_DIR": str(stand_in_trainer), "TOUCHSTONE_TRAINER_MODULE": "stand_in_trainer",
           "TOUCHSTONE_ALLOW_LOCAL_SOURCES": "true", "TOUCHSTONE_NVIDIA_SMI": "no-such-nvidia-smi",
           "TOUCHSTONE_POLL_INTERVAL_S": "0.05"}
    runner = CliRunner()
    args = ["debug", "run", "s-dbg", "pi-15", "--data-dir", str(tmp_path / "cli-data")]
    result = await asyncio.to_thread(runner.invoke, app, args, env=env)
    assert result.exit_code == 1, result.output  # the trainer exited 4
    assert "running touchstone-s-dbg-pi-15-2 here" in result.output
    assert "cleared?" in result.output and "\x1b" not in result.output  # a task cannot drive the terminal
    assert "attempt ended: exited, exit code 4" in result.output

    missing = await asyncio.to_thread(runner.invoke, app, ["debug", "run", "s-dbg", "pi-99"], env=env)
    assert missing.exit_code == 1 and "no TaskQueued" in missing.output
    hostile = await asyncio.to_thread(runner.invoke, app, ["debug", "run", "s.dbg", "pi-15"], env=env)
    assert hostile.exit_code == 2


def test_a_task_that_was_never_queued_is_refused() -> None:
    try:
        launch_of([], "h", gpu=False)
    except NoSuchTask:
        return
    raise AssertionError("launched a task the record does not hold")
