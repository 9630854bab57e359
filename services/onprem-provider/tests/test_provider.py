"""The on-prem provider and an agent (process runtime) against a real nats-server: commands
from the commands stream in, task events out."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from touchstone.agent.testing import GRANT_KEY, pid_alive
from touchstone.onprem_provider.config import ProviderSettings
from touchstone.onprem_provider.service import OnpremProvider
from touchstone.shared import events as ev
from touchstone.shared.agents import AttemptOutcome, AttemptReport, encode
from touchstone.shared.commands import LaunchTask, TerminateTask, container_name
from touchstone.shared.publisher import EventPublisher, last_seq, task_events
from touchstone.shared.testing import sample_report

REPO = Path(__file__).resolve().parents[3]
MOMENTUM = REPO / "examples" / "feature-sets" / "momentum"


class World:
    """A provider, the events stream and helpers to seed tasks and send commands."""

    def __init__(self, nc: Any, js: Any, subjects: Any, provider: OnpremProvider) -> None:
        self.nc, self.js, self.subjects, self.provider = nc, js, subjects, provider
        self.publisher = EventPublisher(js, subjects)

    async def assign(self, feature_set: str, *, task_id: str = "validation", kind: str = "validation",
                     placement: str = "h1/cpu0", submission_id: str = "s1", trainer_ref: str = "main") -> LaunchTask:
        """Record a queued, assigned task (as the scheduler would) and return its launch."""
        base = dict(aggregate_id=f"{submission_id}-{task_id}", correlation_id=submission_id,
                    submission_id=submission_id, task_id=task_id)
        spec = ev.TaskSpec(git_url=feature_set, trainer_ref=trainer_ref)
        interval = None if kind == "validation" else 15
        seq = await self.publisher.append(
            ev.TaskQueued(**base, kind=kind, spec=spec, platform="onprem", prediction_interval=interval),
            expected_last_seq=0,
        )
        await self.publisher.append(
            ev.TaskAssigned(**base, attempt=1, platform="onprem", placement=placement), expected_last_seq=seq
        )
        return LaunchTask(submission_id=submission_id, task_id=task_id, attempt=1, kind=kind, spec=spec,
                          placement=placement, prediction_interval=interval)

    async def send(self, command: Any) -> None:
        await self.js.publish(
            self.subjects.command("onprem-provider", command.type), command.model_dump_json().encode(),
            stream=self.subjects.commands_stream, headers={"Nats-Msg-Id": command.command_id},
        )

    async def events(self, submission_id: str = "s1", task_id: str = "validation") -> list[ev.TaskEvent]:
        return task_events(await self.publisher.load_task(submission_id, task_id))

    async def wait_for(self, eventually: Callable[..., Any], event_type: str, task_id: str = "validation",
                       timeout: float = 30.0) -> list[ev.TaskEvent]:
        async def check() -> list[ev.TaskEvent] | None:
            found = await self.events(task_id=task_id)
            return found if any(e.event_type == event_type for e in found) else None

        return await eventually(check, timeout=timeout, interval=0.1)


@pytest.fixture
async def world(nc, js, subjects, objects) -> AsyncIterator[Callable[..., Any]]:
    stops: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def start(**overrides: Any) -> World:
        values: dict[str, Any] = dict(namespace=subjects.ns, agent_command_timeout_s=5.0, agent_timeout_s=30.0,
                                      sweep_interval_s=0.2, max_deliver=3, objects_dir=objects.root,
                                      objects_url=objects.url, upload_grant_key=GRANT_KEY)
        values.update(overrides)
        provider = OnpremProvider(ProviderSettings(**values), nc, js, subjects)
        provider.loop.base_delay_s = 0.1
        provider.loop.idle_wait_s = 0.2
        stop = asyncio.Event()
        stops.append((stop, asyncio.create_task(provider.run(stop))))
        return World(nc, js, subjects, provider)

    yield start
    for stop, task in stops:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)


def types(events: list[ev.TaskEvent]) -> list[str]:
    return [e.event_type for e in events]


async def test_a_validation_of_momentum_runs_through_the_agent(world, start_agent, agent_settings, eventually,
                                                                objects):
    """The reference trainer, for real, on the example feature set."""
    w = await world()
    await start_agent(agent_settings(trainer_dir=None, trainer_module="touchstone.trainer"))
    launch = await w.assign(str(MOMENTUM))
    await w.send(launch)
    events = await w.wait_for(eventually, "ContainerTerminated", timeout=90)
    assert types(events) == ["TaskQueued", "TaskAssigned", "ContainerLaunched", "ContainerReady",
                             "TrainingStarted", "TrainingFinished", "ContainerTerminated"]
    finished = events[5]
    assert isinstance(finished, ev.TrainingFinished) and finished.exit_code == 0 and finished.attempt == 1
    assert finished.report is not None and finished.report.passed is True
    assert {c.name for c in finished.report.checks} >= {"imports", "no_lookahead"}
    assert finished.report.feature_set.name and finished.report.data.rows
    # the agent put the report and the log into the control plane's store with the grant it was given
    assert finished.log_key == "attempts/s1/validation/attempt-1/console.log" and finished.log_uri is None
    assert finished.artifacts["report.json"] == "attempts/s1/validation/attempt-1/report.json"
    assert b'"passed": true' in await objects.read(finished.artifacts["report.json"])
    assert b"no_lookahead" in await objects.read(finished.log_key)
    launched = events[2]
    assert isinstance(launched, ev.ContainerLaunched) and launched.container_name == launch.container_name


async def test_a_rejected_feature_set_is_a_finished_validation(
    world, start_agent, agent_settings, make_feature_set, eventually
):
    w = await world()
    await start_agent(agent_settings())
    report = sample_report(False)
    await w.send(await w.assign(make_feature_set(report=report, exit=1)))
    events = await w.wait_for(eventually, "ContainerTerminated")
    finished = next(e for e in events if isinstance(e, ev.TrainingFinished))
    assert finished.exit_code == 1 and finished.report is not None
    assert finished.report.model_dump(mode="json") == report
    assert not any(isinstance(e, ev.TaskFailed) for e in events)


HOSTILE_REPORTS = {
    "a huge detail": ({"report": {**sample_report(), "checks": [{"name": "imports", "passed": True,
                                                                 "detail": "x" * 200_000}]}},
                      "report.json is not a valid validation report: checks.0.detail"),
    "NaN": ({"report": {**sample_report(), "duration_s": float("nan")}},
            "report.json is not a valid validation report: duration_s"),
    "a symlink": ({"hostile": "os.symlink('/etc/hostname', opts['--report'])"},
                  "report.json refused: report.json: not a regular file"),
}


@pytest.mark.parametrize("case", list(HOSTILE_REPORTS))
async def test_an_invalid_report_fails_the_attempt_with_a_short_reason(
    world, start_agent, agent_settings, make_feature_set, eventually, case
):
    """A feature set runs in the trainer's process and can write anything to report.json:
    a report that is not one is the attempt's failure (class trainer), and the event stays small."""
    behaviour, reason = HOSTILE_REPORTS[case]
    w = await world()
    await start_agent(agent_settings())
    await w.send(await w.assign(make_feature_set(**behaviour, exit=0)))
    events = await w.wait_for(eventually, "ContainerTerminated")
    assert not any(isinstance(e, ev.TrainingFinished) for e in events)
    failed = next(e for e in events if isinstance(e, ev.TaskFailed))
    assert failed.failure_class == "trainer" and failed.reason.startswith(reason)
    assert len(failed.reason) < 500 and "xxxx" not in failed.reason


async def test_a_failing_trainer_yields_task_failed_with_its_log(
    world, start_agent, agent_settings, make_feature_set, eventually, objects
):
    w = await world()
    await start_agent(agent_settings())
    lines = [f"line {i}" for i in range(80)] + ["ValueError: the model diverged"]
    launch = await w.assign(make_feature_set(lines=lines, exit=1), task_id="pi-15", kind="training",
                            placement="h1/0")
    await w.send(launch)
    events = await w.wait_for(eventually, "ContainerTerminated", task_id="pi-15")
    assert types(events)[2:] == ["ContainerLaunched", "ContainerReady", "TrainingStarted", "TaskFailed",
                                 "ContainerTerminated"]
    failed = events[5]
    assert isinstance(failed, ev.TaskFailed) and failed.failure_class == "trainer"
    snippet = (failed.log_snippet or "").splitlines()
    assert len(snippet) == 50 and snippet[-2:] == ["ValueError: the model diverged", "stand-in done"]
    assert failed.log_key == "attempts/s1/pi-15/attempt-1/console.log" and failed.log_uri is None
    assert b"ValueError: the model diverged" in await objects.read(failed.log_key)


async def test_a_prepare_problem_is_an_infrastructure_failure(world, start_agent, agent_settings, eventually):
    w = await world()
    await start_agent(agent_settings())
    await w.send(await w.assign("/no/such/feature-set"))
    events = await w.wait_for(eventually, "ContainerTerminated")
    failed = next(e for e in events if isinstance(e, ev.TaskFailed))
    assert failed.failure_class == "infrastructure" and "prepare failed" in failed.reason
    assert "TrainingStarted" not in types(events)


async def test_an_unknown_trainer_ref_is_a_permanent_failure(
    world, start_agent, agent_settings, make_feature_set, eventually
):
    """Retrying cannot help: the failure is ``permanent`` (the scheduler ends the task ERROR
    after this one attempt) and names the ref."""
    w = await world()
    await start_agent(agent_settings(trainer_dir=None, trainer_repo=str(REPO)))
    await w.send(await w.assign(make_feature_set(), trainer_ref="no-such-trainer-ref"))
    events = await w.wait_for(eventually, "ContainerTerminated")
    failed = next(e for e in events if isinstance(e, ev.TaskFailed))
    assert failed.failure_class == "permanent" and "'no-such-trainer-ref'" in failed.reason
    assert "TrainingStarted" not in types(events)


async def test_terminate_task_kills_the_running_process(
    world, start_agent, agent_settings, make_feature_set, eventually, tmp_path
):
    w = await world()
    settings = agent_settings()
    await start_agent(settings)
    pid_file = tmp_path / "pid"
    launch = await w.assign(make_feature_set(sleep=60, pid_file=str(pid_file)), task_id="pi-5",
                            kind="training", placement="h1/0")
    await w.send(launch)
    await w.wait_for(eventually, "TrainingStarted", task_id="pi-5")
    pid = int(await eventually(lambda: pid_file.exists() and pid_file.read_text()))
    # the scheduler cancels the task, then asks for its container to go
    recorded = await w.publisher.load_task("s1", "pi-5")
    await w.publisher.append(
        ev.TaskCancelled(aggregate_id="s1-pi-5", correlation_id="s1", submission_id="s1", task_id="pi-5"),
        expected_last_seq=last_seq(recorded),
    )
    await w.send(TerminateTask(submission_id="s1", task_id="pi-5", attempt=1, reason="cancelled"))
    events = await w.wait_for(eventually, "ContainerTerminated", task_id="pi-5")
    assert types(events)[-2:] == ["TaskCancelled", "ContainerTerminated"]
    await eventually(lambda: not pid_alive(pid))
    assert not (settings.work_root / launch.container_name).exists()


async def test_a_status_from_the_wrong_host_is_rejected(world, nc, subjects, eventually):
    w = await world()
    launch = await w.assign("/unused", task_id="pi-1", kind="training", placement="h1/0")
    done = AttemptOutcome(result="exited", exit_code=0, metrics={"forged": True})
    forged = AttemptReport(host="h2", container=launch.container_name, submission_id="s1", task_id="pi-1",
                           attempt=1, stage="ended", removed=True, outcome=done)
    await nc.publish(subjects.agent_reports("h2"), encode(forged))
    # and one whose body claims the right host, on the wrong host's subject
    spoofed = forged.model_copy(update={"host": "h1"})
    await nc.publish(subjects.agent_reports("h2"), encode(spoofed))
    await eventually(lambda: len(w.provider.deps.rejected) >= 2)
    assert "assigned to h1, not h2" in w.provider.deps.rejected[0]
    assert types(await w.events(task_id="pi-1")) == ["TaskQueued", "TaskAssigned"]


async def test_agent_silence_fails_a_live_attempt(
    world, start_agent, agent_settings, make_feature_set, eventually, tmp_path
):
    w = await world(agent_timeout_s=2.0)
    settings = agent_settings(heartbeat_interval_s=0.2)
    agent = await start_agent(settings)
    pid_file = tmp_path / "pid"
    await w.send(await w.assign(make_feature_set(sleep=60, pid_file=str(pid_file))))
    await w.wait_for(eventually, "TrainingStarted")
    pid = int(await eventually(lambda: pid_file.exists() and pid_file.read_text()))
    try:
        await agent.stop()  # the agent falls silent; its trainer keeps running
        events = await w.wait_for(eventually, "TaskFailed")
        failed = events[-1]
        assert isinstance(failed, ev.TaskFailed) and failed.failure_class == "infrastructure"
        assert "agent h1 silent" in failed.reason
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)


async def test_a_provider_that_did_not_run_for_longer_than_the_agent_timeout_fails_nothing(
    world, start_agent, agent_settings, make_feature_set, eventually, tmp_path
):
    """A replica SIGSTOPped (or starved of CPU) hears nothing while it does not run: waking up,
    it must not take that for its agents' silence and burn the attempts it watches."""
    w = await world(agent_timeout_s=2.0)
    await start_agent(agent_settings(heartbeat_interval_s=0.2))
    release = tmp_path / "release"
    await w.send(await w.assign(make_feature_set(sleep=60, release=str(release)), task_id="pi-1", kind="training",
                                placement="h1/0"))
    await w.wait_for(eventually, "TrainingStarted", task_id="pi-1")
    time.sleep(3.5)  # noqa: ASYNC251 (nothing in this process runs, as in a paused one, past agent_timeout_s)
    await asyncio.sleep(1.5)  # sweeps after waking, the agent heard again
    release.write_text("go")
    events = await w.wait_for(eventually, "ContainerTerminated", task_id="pi-1")
    assert "TaskFailed" not in types(events) and "TrainingFinished" in types(events), types(events)


async def test_an_agent_killed_mid_run_and_restarted_completes_the_task_once(
    world, start_agent, agent_settings, make_feature_set, eventually, tmp_path
):
    w = await world()
    settings = agent_settings()
    agent = await start_agent(settings)
    runs, release = tmp_path / "runs", tmp_path / "release"
    launch = await w.assign(make_feature_set(sleep=60, release=str(release), count_file=str(runs)),
                            task_id="pi-1", kind="training", placement="h1/0")
    await w.send(launch)
    await w.wait_for(eventually, "TrainingStarted", task_id="pi-1")
    await agent.stop()
    await start_agent(settings)
    release.write_text("go")
    events = await w.wait_for(eventually, "ContainerTerminated", task_id="pi-1")
    assert types(events)[2:] == ["ContainerLaunched", "ContainerReady", "TrainingStarted", "TrainingFinished",
                                 "ContainerTerminated"]
    assert runs.read_text() == "run\n"
    finished = events[5]
    assert isinstance(finished, ev.TrainingFinished) and finished.metrics == {"long": {"accuracy": 0.6}}
    assert set(finished.artifacts) == {"long.json", "short.json", "metrics.json", "curves.json"}


async def test_an_unreachable_or_refusing_agent_fails_the_launch(world, start_agent, agent_settings, eventually):
    w = await world(agent_command_timeout_s=3.0, max_deliver=2)
    await w.send(await w.assign("/unused", task_id="pi-1", kind="training", placement="ghost/0"))
    failed = (await w.wait_for(eventually, "TaskFailed", task_id="pi-1"))[-1]
    assert failed.failure_class == "infrastructure" and "ghost" in failed.reason

    await start_agent(agent_settings(num_slots=1))
    await w.send(await w.assign("/unused", task_id="pi-2", kind="training", placement="h1/7"))
    refused = (await w.wait_for(eventually, "TaskFailed", task_id="pi-2"))[-1]
    assert "refused the launch" in refused.reason and "ContainerLaunched" not in types(await w.events(task_id="pi-2"))


async def test_a_launch_refused_for_a_held_slot_goes_back_to_the_queue_without_burning_an_attempt(
    world, start_agent, agent_settings, make_feature_set, eventually, tmp_path
):
    """The scheduler may place onto a slot whose container the agent still stops (an attempt it
    counts as ended, a heartbeat on its way): the agent refuses, naming the holder, and the
    provider hands the task back (``LaunchDeferred``, same attempt) instead of failing it."""
    w = await world()
    agent = await start_agent(agent_settings(num_slots=2))
    release = tmp_path / "release"
    await w.send(await w.assign(make_feature_set(sleep=60, release=str(release)), task_id="pi-60", kind="training",
                                placement="h1/0"))
    await w.wait_for(eventually, "TrainingStarted", task_id="pi-60")
    second = await w.assign(make_feature_set("other"), task_id="pi-15", kind="training", placement="h1/0")
    await w.send(second)
    events = await w.wait_for(eventually, "LaunchDeferred", task_id="pi-15")
    assert types(events) == ["TaskQueued", "TaskAssigned", "LaunchDeferred"]
    deferred = events[-1]
    assert isinstance(deferred, ev.LaunchDeferred) and deferred.attempt == 1
    assert "slot 0 on h1 is held by touchstone-s1-pi-60-1" in deferred.reason
    assert deferred.not_before > deferred.occurred_at
    assert second.container_name not in agent.agent.attempts.live  # nothing of it started
    # the same launch again (a redelivery, a resend) finds the task queued: it hands nothing back twice
    await w.send(second.model_copy(update={"command_id": "resent"}))
    await asyncio.sleep(1.0)
    assert types(await w.events(task_id="pi-15")) == ["TaskQueued", "TaskAssigned", "LaunchDeferred"]
    release.write_text("go")
    await w.wait_for(eventually, "ContainerTerminated", task_id="pi-60")


def test_container_names_match_the_agent():
    assert container_name("s1", "validation", 1) == "touchstone-s1-validation-1"


