"""The provider against the local RunPod (real HTTP, real SSH pods) and a real nats-server.

Every test ends with the fake's ledger accounted for: each ``touchstone-`` pod is terminated or
owned by a live attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from touchstone.runpod_local import FakeRunpod, Injection, SshMode
from touchstone.runpod_local.container import POD_LABEL, docker
from touchstone.runpod_provider.adapters import load_or_create_key
from touchstone.runpod_provider.api import RunpodApiClient
from touchstone.runpod_provider.service import RunpodProvider
from touchstone.runpod_provider.testing import (
    GPU,
    WAIT_S,
    control_plane_objects,
    provider_settings,
    store_settings,
    unaccounted,
    wait_for,
    write_feature_set,
)
from touchstone.shared import events as ev
from touchstone.shared.commands import LaunchTask, TerminateTask, container_name
from touchstone.shared.jetstream import system_bucket
from touchstone.shared.providers import decode_live
from touchstone.shared.publisher import EventPublisher
from touchstone.shared.subjects import task_aggregate_id
from touchstone.shared.system import RunPodStatus, SystemSettings, read_runpod_status, write_system


class Harness:
    """A provider running against the fake, with helpers to drive tasks through it."""

    def __init__(self, fake: FakeRunpod, js, subjects, nc, tmp_path: Path, trainer_src: Path,
                 defaults: dict[str, object]) -> None:
        self.fake, self.js, self.subjects, self.nc, self.tmp = fake, js, subjects, nc, tmp_path
        self.trainer_src = trainer_src
        self.defaults = defaults
        self.publisher = EventPublisher(js, subjects)
        self.provider: RunpodProvider | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.detached: set[str] = set()
        """Attempts live when the provider stopped: their pods are left for the next provider."""
        self.uploads = contextlib.ExitStack()
        self.objects = self.uploads.enter_context(control_plane_objects(tmp_path / "control-plane" / "objects"))
        """The control plane's store, in a folder of its own: the provider uploads to it over HTTP."""

    def read(self, key: str | None) -> str:
        """The text of an object the provider put into the control plane's store."""
        assert key is not None and key.startswith("attempts/"), key
        return (self.objects.root / key).read_text()

    async def start(self, *, max_running: int = 4, **overrides: object) -> RunpodProvider:
        await self.set_max_running(max_running)
        settings = provider_settings(self.fake, namespace=self.subjects.ns, data_dir=self.tmp / "data",
                                     trainer_src=self.trainer_src,
                                     **{**self.defaults, **store_settings(self.objects), **overrides})
        self.provider = RunpodProvider(settings, self.nc, self.js, self.subjects)
        self._task = asyncio.create_task(self.provider.run(self._stop))
        return self.provider

    async def stop(self) -> None:
        """Stop the provider as SIGTERM does: its live attempts are detached, their pods kept."""
        if self._task is not None:
            if self.provider is not None:
                self.detached |= set(self.provider.attempts)
            self._stop.set()
            await asyncio.wait_for(self._task, 60)

    async def set_max_running(self, n: int) -> None:
        kv = await system_bucket(self.js, self.subjects)
        await write_system(kv, SystemSettings(runpod_max_running_tasks=n))

    def feature_set(self, **files: str) -> Path:
        return write_feature_set(self.tmp, **files)

    async def assign(self, *, kind: str = "validation", feature_set: Path, attempt: int = 1,
                     trainer_ref: str = "main", run_timeout_s: float | None = None) -> LaunchTask:
        """A task queued and assigned to RunPod; returns the launch the scheduler would send."""
        submission = f"s{uuid.uuid4().hex[:8]}"
        task_id = "validation" if kind == "validation" else "pi-60"
        common = {"aggregate_id": task_aggregate_id(submission, task_id), "correlation_id": submission,
                  "submission_id": submission, "task_id": task_id}
        spec = ev.TaskSpec(git_url=str(feature_set), trainer_ref=trainer_ref, run_timeout_s=run_timeout_s)
        interval = None if kind == "validation" else 60
        await self.publisher.append(ev.TaskQueued(**common, kind=kind, spec=spec, platform="runpod",
                                                  prediction_interval=interval))
        await self.publisher.append(ev.TaskAssigned(**common, attempt=attempt, platform="runpod", placement=GPU))
        return LaunchTask(submission_id=submission, task_id=task_id, attempt=attempt, kind=kind, spec=spec,
                          prediction_interval=interval, placement=GPU, gpu_type=GPU)

    async def send(self, command: LaunchTask | TerminateTask) -> None:
        subject = self.subjects.command("runpod-provider", command.type)
        await self.js.publish(subject, command.model_dump_json().encode(), stream=self.subjects.commands_stream)

    async def events(self, command: LaunchTask) -> list[ev.TaskEvent]:
        recorded = await self.publisher.load_task(command.submission_id, command.task_id)
        return [r.event for r in recorded]  # type: ignore[misc]

    async def types(self, command: LaunchTask) -> list[str]:
        return [e.event_type for e in await self.events(command)]

    async def until_event(self, command: LaunchTask, event_type: str, within: float = WAIT_S) -> ev.TaskEvent:
        async def seen() -> bool:
            return event_type in await self.types(command)

        await wait_for(seen, within)
        return next(e for e in await self.events(command) if e.event_type == event_type)

    def assert_accounted_for(self) -> None:
        """Every touchstone- pod ever created is terminated or owned by a live attempt (one the
        provider drives, or one it left running when it stopped)."""
        live = (set(self.provider.attempts) if self.provider else set()) | self.detached
        assert unaccounted(self.fake.ledger(), live) == []


@pytest.fixture
async def harness(fake, js, subjects, nc, tmp_path, trainer_src, provider_defaults) -> AsyncIterator[Harness]:
    h = Harness(fake, js, subjects, nc, tmp_path, trainer_src, provider_defaults)
    yield h
    with contextlib.suppress(Exception):
        await h.stop()
    h.uploads.close()
    h.assert_accounted_for()


@pytest.fixture
async def docker_harness(docker_fake, js, subjects, nc, tmp_path, trainer_src, provider_defaults
                         ) -> AsyncIterator[Harness]:
    """A provider against the local RunPod whose pods are Docker containers running sshd."""
    h = Harness(docker_fake, js, subjects, nc, tmp_path, trainer_src, provider_defaults)
    yield h
    with contextlib.suppress(Exception):
        await h.stop()
    h.uploads.close()
    h.assert_accounted_for()


TRANSCRIPT = ["TaskQueued", "TaskAssigned", "ContainerLaunched", "ContainerReady", "TrainingStarted",
              "TrainingFinished", "ContainerTerminated"]


async def test_a_validation_runs_end_to_end_on_a_fake_pod(harness, fake, tmp_path):
    await harness.start()
    launch = await harness.assign(feature_set=harness.feature_set())
    logs = await harness.nc.subscribe(harness.subjects.logs(task_aggregate_id(launch.submission_id, launch.task_id)))

    await harness.send(launch)
    await harness.until_event(launch, "ContainerTerminated")

    assert await harness.types(launch) == TRANSCRIPT
    events = {e.event_type: e for e in await harness.events(launch)}
    launched, finished = events["ContainerLaunched"], events["TrainingFinished"]
    assert launched.container_name == container_name(launch.submission_id, "validation", 1)
    assert launched.cost_per_hour and launched.cost_per_hour > 0
    assert finished.exit_code == 0 and finished.report is not None and finished.report.passed
    assert [(c.name, c.detail) for c in finished.report.checks] == [("shape", "ok")]
    assert finished.cost_usd is not None and finished.cost_usd >= 0
    prefix = f"attempts/{launch.submission_id}/validation/attempt-1/"
    assert finished.artifacts["report.json"] == f"{prefix}report.json" and finished.log_uri is None
    assert json.loads(harness.read(finished.artifacts["report.json"]))["passed"] is True
    log_text = harness.read(finished.log_key)
    assert "stand-in trainer: validate" in log_text and "to stderr" in log_text
    assert finished.log_key == f"{prefix}console.log"
    staged = tmp_path / "data" / "artifacts" / "models" / launch.submission_id
    assert not [p for p in staged.rglob("*") if p.is_file()]  # the staged copies are gone
    streamed = await logs.next_msg(timeout=5)
    assert streamed.data
    [pod] = fake.ledger()
    assert pod.id == launched.deployment_id and pod.terminated
    assert pod.name == launched.container_name


async def test_a_training_collects_models_and_metrics(harness, fake):
    await harness.start()
    launch = await harness.assign(kind="training", feature_set=harness.feature_set())

    await harness.send(launch)
    finished = await harness.until_event(launch, "TrainingFinished")

    assert finished.metrics == {"long": {"auc": 0.61}, "short": {"auc": 0.58}}
    assert {"long.bin", "short.bin", "metrics.json"} <= set(finished.artifacts)
    assert harness.read(finished.artifacts["long.bin"]) == "long"
    await harness.until_event(launch, "ContainerTerminated")


async def test_a_training_runs_end_to_end_in_a_docker_pod(docker_harness, docker_fake):
    """The same phases with sshd in a container: the trainer runs as the pod's user (root, as on
    RunPod) under the image's python3, files go in and out over SFTP."""
    await docker_harness.start()
    launch = await docker_harness.assign(kind="training", feature_set=docker_harness.feature_set())

    await docker_harness.send(launch)
    await docker_harness.until_event(launch, "ContainerTerminated")

    assert await docker_harness.types(launch) == TRANSCRIPT
    finished = next(e for e in await docker_harness.events(launch) if isinstance(e, ev.TrainingFinished))
    assert finished.metrics == {"long": {"auc": 0.61}, "short": {"auc": 0.58}}
    assert docker_harness.read(finished.artifacts["long.bin"]) == "long"
    assert "stand-in trainer: train touchstone/feature-set" in docker_harness.read(finished.log_key)
    [pod] = docker_fake.ledger()
    assert pod.terminated
    assert await docker("ps", "-aq", "--filter", f"label={POD_LABEL}={pod.id}") == ""


async def test_a_docker_pod_is_ready_only_once_its_sshd_accepts(docker_harness, docker_fake):
    docker_fake.faults.pull_s = 1.0  # sshd starts a second after the container
    docker_fake.faults.ssh_direct_during_pull = True  # the port is published (and drops) before that
    await docker_harness.start()
    launch = await docker_harness.assign(feature_set=docker_harness.feature_set())

    await docker_harness.send(launch)
    await docker_harness.until_event(launch, "ContainerTerminated")

    assert await docker_harness.types(launch) == TRANSCRIPT


async def test_a_docker_pod_whose_sshd_never_comes_up_fails_as_infrastructure(docker_harness, docker_fake):
    docker_fake.faults.ssh = SshMode.REFUSE  # a container without sshd behind the published port
    await docker_harness.start(ready_timeout_s=2.0)
    launch = await docker_harness.assign(feature_set=docker_harness.feature_set())

    await docker_harness.send(launch)
    await docker_harness.until_event(launch, "ContainerTerminated")

    failed = next(e for e in await docker_harness.events(launch) if isinstance(e, ev.TaskFailed))
    assert failed.failure_class == "infrastructure" and "SSH" in failed.reason
    [pod] = docker_fake.ledger()
    assert pod.terminated
    assert await docker("ps", "-aq", "--filter", f"label={POD_LABEL}={pod.id}") == ""


async def test_a_launch_stays_unacked_until_its_pod_is_recorded(harness, fake, js, subjects):
    """So that a provider dying before the record hands the launch to the next one."""
    made, release = asyncio.Event(), asyncio.Event()
    real_create = fake.create

    async def create_then_hold(body):
        pod = await real_create(body)
        made.set()
        await release.wait()
        return pod

    fake.create = create_then_hold
    await harness.start()
    launch = await harness.assign(feature_set=harness.feature_set(SLEEP="60"))

    async def commands_in_stream() -> int:
        return (await js.stream_info(subjects.commands_stream)).state.messages

    await harness.send(launch)
    await wait_for(made.is_set)
    sweeps = harness.provider.reaper.sweeps
    await wait_for(lambda: harness.provider.reaper.sweeps >= sweeps + 3)  # several launch_retry_s go by
    assert await commands_in_stream() == 1  # pod made, not recorded: the launch is still there
    assert "ContainerLaunched" not in await harness.types(launch)

    release.set()
    await harness.until_event(launch, "ContainerLaunched")
    async def acked() -> bool:  # a work queue drops an acked command
        return await commands_in_stream() == 0

    await wait_for(acked)
    assert [r.name for r in fake.ledger()] == [launch.container_name]


async def test_two_replicas_share_launches_and_never_drive_one_attempt_twice(harness, fake, tmp_path):
    """Replicas share the launch consumer and the key. A launch is nak'ed until its pod is
    recorded, so its redeliveries reach the other replica too: that one must leave the attempt
    to the replica whose heartbeats name it (a second driver would race the first through the
    pod: two followers, two collects, a failure recorded over a success)."""
    fake.faults.create_answer_delay_s = 1.0  # the pod is made, the launch stays pending a while
    first = await harness.start(launch_retry_s=0.1)
    await wait_for(lambda: first.settings.key_file.exists())
    settings = provider_settings(fake, namespace=harness.subjects.ns, data_dir=tmp_path / "data-b",
                                 trainer_src=harness.trainer_src,
                                 **{**harness.defaults, **store_settings(harness.objects), "launch_retry_s": 0.1})
    settings.key_file.parent.mkdir(parents=True)
    settings.key_file.write_bytes(first.settings.key_file.read_bytes())  # as an operator deploys replicas
    second = RunpodProvider(settings, harness.nc, harness.js, harness.subjects)
    started: list[tuple[str, str]] = []
    for label, replica in (("a", first), ("b", second)):
        real = replica.start_attempt

        def track(command, *, launch_by, resume=None, real=real, label=label, replica=replica):
            if command.container_name not in replica.attempts:
                started.append((label, command.container_name))
            return real(command, launch_by=launch_by, resume=resume)

        replica.start_attempt = replica.deps.start_attempt = track  # type: ignore[method-assign]  # adopt, launch
    stop = asyncio.Event()
    running = asyncio.create_task(second.run(stop))
    try:
        await asyncio.sleep(3 * settings.heartbeat_interval_s)  # the second has listened to its peer
        launches = [await harness.assign(feature_set=harness.feature_set(SLEEP="1")) for _ in range(3)]
        for launch in launches:
            await harness.send(launch)
        for launch in launches:
            await harness.until_event(launch, "ContainerTerminated")
    finally:
        stop.set()
        await asyncio.wait_for(running, 60)

    names = [name for _, name in started]
    assert sorted(names) == sorted(launch.container_name for launch in launches), started  # each once
    for launch in launches:
        assert (await harness.types(launch)) == TRANSCRIPT
    assert sorted(r.name for r in fake.ledger()) == sorted(names)


async def test_a_create_that_fails_but_makes_the_pod_is_adopted(harness, fake):
    fake.inject(Injection(status=500, method="POST", path="/v2/pods", apply_first=True))
    await harness.start()
    launch = await harness.assign(feature_set=harness.feature_set())

    await harness.send(launch)
    await harness.until_event(launch, "ContainerTerminated")

    assert await harness.types(launch) == TRANSCRIPT
    [pod] = fake.ledger()
    assert pod.terminated


async def test_a_trainer_failure_fails_the_task_with_the_log_tail(harness, fake):
    await harness.start()
    launch = await harness.assign(feature_set=harness.feature_set(EXIT="3"))

    await harness.send(launch)
    await harness.until_event(launch, "ContainerTerminated")

    failed = next(e for e in await harness.events(launch) if isinstance(e, ev.TaskFailed))
    assert failed.failure_class == "trainer" and "status 3" in failed.reason
    assert "failing on purpose" in (failed.log_snippet or "")
    assert all(r.terminated for r in fake.ledger())


async def test_a_pod_dying_mid_run_fails_the_attempt_as_infrastructure(harness, fake):
    await harness.start()
    launch = await harness.assign(feature_set=harness.feature_set(SLEEP="60"))

    await harness.send(launch)
    launched = await harness.until_event(launch, "TrainingStarted")
    launched = next(e for e in await harness.events(launch) if isinstance(e, ev.ContainerLaunched))
    log_file = harness.tmp / "data" / "artifacts" / "logs" / launch.submission_id / "validation" / "attempt-1.log"
    await wait_for(lambda: log_file.exists() and "sleeping" in log_file.read_text())
    await fake.kill_pod(launched.deployment_id)
    await harness.until_event(launch, "ContainerTerminated")

    failed = next(e for e in await harness.events(launch) if isinstance(e, ev.TaskFailed))
    assert failed.failure_class == "infrastructure" and "mid-run" in failed.reason
    assert "TrainingFinished" not in await harness.types(launch)
    [pod] = fake.ledger()
    assert pod.terminated


async def test_max_running_zero_launches_nothing_until_raised(harness, fake):
    provider = await harness.start(max_running=0)
    launch = await harness.assign(feature_set=harness.feature_set())

    await harness.send(launch)
    await wait_for(lambda: provider.deps.held_back >= 3)

    assert fake.ledger() == []
    assert await harness.types(launch) == ["TaskQueued", "TaskAssigned"]
    await harness.set_max_running(1)
    await harness.until_event(launch, "ContainerTerminated")
    assert await harness.types(launch) == TRANSCRIPT


async def test_a_paused_lifecycle_launches_no_pod_even_with_room_then_hands_the_task_back(harness, fake):
    """``scheduler_paused`` (the one pause switch) holds launches the scheduler sent before the
    pause: no pod, whatever the cap, and the task goes back to the queue unspent."""
    provider = await harness.start(max_running=2, launch_timeout_s=1.0)
    kv = await system_bucket(harness.js, harness.subjects)
    await write_system(kv, SystemSettings(runpod_max_running_tasks=2, scheduler_paused=True))
    await wait_for(lambda: provider.system.scheduler_paused)
    launch = await harness.assign(feature_set=harness.feature_set())

    await harness.send(launch)
    deferred = await harness.until_event(launch, "LaunchDeferred")

    assert deferred.attempt == 1 and "lifecycle is paused" in deferred.reason
    assert fake.ledger() == []


async def test_a_terminate_command_stops_a_running_attempt(harness, fake):
    await harness.start()
    launch = await harness.assign(feature_set=harness.feature_set(SLEEP="60"))
    live = await harness.nc.subscribe(harness.subjects.provider_live("runpod"))
    agents = await harness.nc.subscribe(harness.subjects.all_agent_reports)
    await harness.send(launch)
    await harness.until_event(launch, "TrainingStarted")
    async with asyncio.timeout(WAIT_S):  # the scheduler hears of the running attempt
        while launch.container_name not in decode_live((await live.next_msg(timeout=WAIT_S)).data).running:
            pass
    # ...in a report of its own: the provider no longer poses as an agent host
    assert agents.pending_msgs == 0

    await harness.send(TerminateTask(submission_id=launch.submission_id, task_id=launch.task_id,
                                     attempt=launch.attempt, reason="cancelled by test"))
    await harness.until_event(launch, "ContainerTerminated")

    failed = next(e for e in await harness.events(launch) if isinstance(e, ev.TaskFailed))
    assert "cancelled by test" in failed.reason
    [pod] = fake.ledger()
    assert pod.terminated


async def test_rogue_prefixed_pods_are_reaped_and_others_survive(harness, fake, api: RunpodApiClient, spec):
    owned_launch = await harness.assign(feature_set=harness.feature_set())
    rogue = await api.create_pod(spec(name="touchstone-sgone-validation-1"))
    stranger = await api.create_pod(spec(name="jupyter-notebook"))
    # a pod whose attempt the events call live (a launch in flight elsewhere): not a rogue
    owned = await api.create_pod(spec(name=owned_launch.container_name))
    provider = await harness.start()

    await wait_for(lambda: rogue.id in provider.reaper.reaped)
    sweeps = provider.reaper.sweeps
    await wait_for(lambda: provider.reaper.sweeps >= sweeps + 3)

    alive = set(fake.live_pods())
    assert rogue.id not in alive
    assert stranger.id in alive and owned.id in alive
    assert provider.reaper.reaped == [rogue.id]
    recorded = [r.event for r in await harness.publisher.load("platform", "runpod")]
    assert [(e.event_type, e.pod_id, e.pod_name) for e in recorded] == [("RoguePodReaped", rogue.id, rogue.name)]
    await api.terminate_pod(stranger.id)
    await api.terminate_pod(owned.id)


async def shown(js, subjects, check: Callable[[RunPodStatus], bool]) -> RunPodStatus:
    """The provider's account view in the system bucket, once ``check`` holds for it."""
    kv = await system_bucket(js, subjects)
    seen: list[RunPodStatus] = []

    async def holds() -> bool:
        status = await read_runpod_status(kv)
        if status is not None and check(status):
            seen.append(status)
        return bool(seen)

    await wait_for(holds)
    return seen[0]


async def test_the_account_view_shows_the_balance_and_reaped_pods(harness, fake, api, spec, js, subjects):
    fake.faults.balance = 42.5
    rogue = await api.create_pod(spec(name="touchstone-sgone-validation-1"))
    stranger = await api.create_pod(spec(name="jupyter-notebook"))
    await harness.start()

    status = await shown(js, subjects, lambda s: s.balance == 42.5 and any(r.pod_id == rogue.id for r in s.reaped))

    [reaped] = status.reaped
    assert reaped.name == rogue.name and reaped.cost_per_hr == pytest.approx(0.44) and reaped.reaped_at
    assert status.launches_stopped is None  # low (an alarm), not below the stop threshold
    assert (status.running_pods, status.spend_per_hour) == (0, 0.0)  # the stranger is not ours
    assert stranger.id in fake.live_pods()
    await api.terminate_pod(stranger.id)


async def test_the_account_view_counts_our_running_pods(harness, fake, js, subjects):
    await harness.start()
    launch = await harness.assign(feature_set=harness.feature_set(SLEEP="60"))
    await harness.send(launch)
    await harness.until_event(launch, "TrainingStarted")

    status = await shown(js, subjects, lambda s: s.running_pods == 1)

    assert status.spend_per_hour == pytest.approx(0.44) and status.reaped == []
    assert status.balance == pytest.approx(100.0)


async def test_a_pod_of_a_finished_attempt_is_reaped_and_recorded(harness, fake, api, spec):
    launch = await harness.assign(feature_set=harness.feature_set())
    common = {"aggregate_id": task_aggregate_id(launch.submission_id, launch.task_id),
              "correlation_id": launch.submission_id, "submission_id": launch.submission_id,
              "task_id": launch.task_id}
    await harness.publisher.append(ev.TaskCancelled(**common))
    left_over = await api.create_pod(spec(name=launch.container_name))
    provider = await harness.start()

    await wait_for(lambda: left_over.id in provider.reaper.reaped)
    terminated = await harness.until_event(launch, "ContainerTerminated")
    assert terminated.container_name == launch.container_name


async def test_low_balance_alarms_and_stops_launches(harness, fake):
    fake.faults.balance = 5.0
    provider = await harness.start()
    await wait_for(lambda: "low_balance" in provider.alarms.active)

    launch = await harness.assign(feature_set=harness.feature_set())
    await harness.send(launch)
    await wait_for(lambda: provider.deps.held_back >= 2)
    assert fake.ledger() == []
    status = await shown(harness.js, harness.subjects, lambda s: s.launches_stopped is not None)
    assert "balance" in status.launches_stopped and status.balance == 5.0

    [alarm] = [r.event for r in await harness.publisher.load("platform", "runpod")]
    assert alarm.event_type == "AlarmRaised" and alarm.kind == "low_balance" and "5.00" in alarm.message

    fake.faults.balance = 100.0
    await harness.until_event(launch, "ContainerTerminated")
    assert "low_balance" not in provider.alarms.active


async def test_a_rejected_key_alarms_and_stops_launches(harness, fake, nc, subjects):
    fake.faults.revoked = True
    announced = await nc.subscribe(subjects.alarm("runpod-provider", "api_key_rejected"))
    provider = await harness.start()
    await wait_for(lambda: provider.account.key_rejected and "api_key_rejected" in provider.alarms.active)
    alarm = json.loads((await announced.next_msg(timeout=WAIT_S)).data)  # for whoever listens
    assert alarm["kind"] == "api_key_rejected" and alarm["service"] == "runpod-provider"

    launch = await harness.assign(feature_set=harness.feature_set())
    await harness.send(launch)
    await wait_for(lambda: provider.deps.held_back >= 2)
    assert fake.ledger() == []
    status = await shown(harness.js, harness.subjects, lambda s: s.launches_stopped is not None)
    assert status.launches_stopped == "RunPod rejected the API key"

    fake.faults.revoked = False
    await harness.until_event(launch, "ContainerTerminated")
    assert not provider.account.key_rejected


async def test_the_gpu_catalog_is_written_to_the_system_bucket(harness, js, subjects):
    await harness.start(catalog_interval_s=0.2)
    kv = await system_bucket(js, subjects)

    async def written() -> bool:
        try:
            return bool((await kv.get("gpu_types")).value)
        except Exception:
            return False

    await wait_for(written)
    catalog = json.loads((await kv.get("gpu_types")).value)
    assert any(g["id"] == GPU and g["price_per_hour"] > 0 for g in catalog)


async def test_never_more_pods_than_max_running(harness, fake):
    provider = await harness.start(max_running=1)
    first = await harness.assign(feature_set=harness.feature_set(SLEEP="0.5"))
    second = await harness.assign(feature_set=harness.feature_set())
    most = 0

    async def sample() -> None:
        nonlocal most
        while True:
            most = max(most, len(fake.live_pods()))
            await asyncio.sleep(0.005)

    sampler = asyncio.create_task(sample())
    try:
        await harness.send(first)
        await harness.send(second)
        await harness.until_event(first, "ContainerTerminated")
        await harness.until_event(second, "ContainerTerminated")
    finally:
        sampler.cancel()

    assert most == 1 and provider.deps.held_back >= 1
    assert len(fake.ledger()) == 2 and all(r.terminated for r in fake.ledger())


async def test_ready_waits_for_a_working_handshake_after_a_slow_pull(harness, fake):
    fake.faults.pull_s = 0.5
    fake.faults.ssh_direct_during_pull = True  # ssh.direct shows, but connections drop until pulled
    await harness.start()
    launch = await harness.assign(feature_set=harness.feature_set())

    await harness.send(launch)
    await harness.until_event(launch, "ContainerTerminated")

    assert await harness.types(launch) == TRANSCRIPT


async def test_ssh_that_never_comes_up_fails_the_attempt_and_terminates_the_pod(harness, fake):
    fake.faults.ssh = SshMode.REFUSE
    await harness.start(ready_timeout_s=1.0)
    launch = await harness.assign(feature_set=harness.feature_set())

    await harness.send(launch)
    await harness.until_event(launch, "ContainerTerminated")

    assert "ContainerReady" not in await harness.types(launch)
    failed = next(e for e in await harness.events(launch) if isinstance(e, ev.TaskFailed))
    assert failed.failure_class == "infrastructure" and "SSH" in failed.reason
    [pod] = fake.ledger()
    assert pod.terminated


async def test_no_stock_waits_then_hands_the_task_back_without_a_pod(harness, fake):
    """Half the launch deadline without stock: the task goes back to the queue, same attempt."""
    fake.faults.no_capacity = {GPU}
    await harness.start(launch_timeout_s=1.0)
    launch = await harness.assign(feature_set=harness.feature_set())

    await harness.send(launch)
    deferred = await harness.until_event(launch, "LaunchDeferred")

    assert deferred.attempt == 1 and "stock" in deferred.reason
    assert await harness.types(launch) == ["TaskQueued", "TaskAssigned", "LaunchDeferred"]
    assert fake.ledger() == []


async def test_a_launch_held_back_past_its_hold_hands_the_task_back(harness, fake):
    provider = await harness.start(max_running=0, launch_timeout_s=1.0)
    launch = await harness.assign(feature_set=harness.feature_set())

    await harness.send(launch)
    deferred = await harness.until_event(launch, "LaunchDeferred")

    assert deferred.attempt == 1 and "paused" in deferred.reason and provider.deps.held_back >= 1
    assert await harness.types(launch) == ["TaskQueued", "TaskAssigned", "LaunchDeferred"]
    assert fake.ledger() == []


REPO = Path(__file__).resolve().parents[3]


@pytest.mark.skipif(not (REPO / "examples" / "feature-sets" / "momentum").is_dir(), reason="no example feature set")
async def test_the_reference_trainer_validates_an_example_in_a_fake_pod(harness, fake):
    """The real trainer of this checkout (the default ``trainer_repo``) at ``HEAD``, not the stand-in."""
    harness.trainer_src = None
    await harness.start(trainer_module="touchstone.trainer")
    launch = await harness.assign(feature_set=REPO / "examples" / "feature-sets" / "momentum", trainer_ref="HEAD")

    await harness.send(launch)
    finished = await harness.until_event(launch, "TrainingFinished", within=120)

    assert finished.exit_code == 0 and finished.report is not None and finished.report.passed is True
    await harness.until_event(launch, "ContainerTerminated")


async def test_a_launch_adopts_the_pod_a_crashed_provider_left_behind(harness, fake, api, spec):
    launch = await harness.assign(feature_set=harness.feature_set())
    key = load_or_create_key(harness.tmp / "data" / "runpod-provider" / "id_ed25519")  # the provider's own
    left = await api.create_pod(spec(name=launch.container_name, public_key=key.export_public_key().decode()))
    await harness.start()  # a new provider process; the launch is delivered again

    await harness.send(launch)
    await harness.until_event(launch, "ContainerTerminated")

    assert await harness.types(launch) == TRANSCRIPT
    launched = next(e for e in await harness.events(launch) if isinstance(e, ev.ContainerLaunched))
    assert launched.deployment_id == left.id
    [pod] = fake.ledger()
    assert pod.terminated


async def test_a_task_cancelled_mid_run_gets_its_pod_terminated(harness, fake):
    await harness.start()
    launch = await harness.assign(feature_set=harness.feature_set(SLEEP="60"))
    await harness.send(launch)
    await harness.until_event(launch, "TrainingStarted")

    common = {"aggregate_id": task_aggregate_id(launch.submission_id, launch.task_id),
              "correlation_id": launch.submission_id, "submission_id": launch.submission_id,
              "task_id": launch.task_id}
    await harness.publisher.append(ev.TaskCancelled(**common, reason="admin"))
    await harness.until_event(launch, "ContainerTerminated")

    assert await harness.types(launch) == ["TaskQueued", "TaskAssigned", "ContainerLaunched", "ContainerReady",
                                           "TrainingStarted", "TaskCancelled", "ContainerTerminated"]
    [pod] = fake.ledger()
    assert pod.terminated


@pytest.mark.parametrize("kind", ["validation", "training"])
async def test_a_trainer_past_its_run_deadline_is_stopped_and_fails_as_timeout(harness, fake, kind):
    """Validation: the ``validation_timeout_s`` setting; training: the schedule's ``run_timeout_s``
    (the provider's training default is far away). The pod is terminated, the error says which."""
    await harness.start(validation_timeout_s=1.5 if kind == "validation" else 3600, run_timeout_s=3600)
    launch = await harness.assign(kind=kind, feature_set=harness.feature_set(SLEEP="60"),
                                  run_timeout_s=1.5 if kind == "training" else None)

    await harness.send(launch)
    await harness.until_event(launch, "ContainerTerminated")

    failed = next(e for e in await harness.events(launch) if isinstance(e, ev.TaskFailed))
    assert failed.failure_class == "timeout", failed
    assert f"{kind} run deadline of 1.5s" in failed.reason
    assert ("validation_timeout_s setting" if kind == "validation" else "schedule's run_timeout_s") in failed.reason
    assert "TrainingFinished" not in await harness.types(launch)
    assert all(r.terminated for r in fake.ledger())


async def test_a_feature_set_path_outside_its_source_is_rejected_before_any_pod_runs_it(harness, fake):
    await harness.start()
    launch = await harness.assign(feature_set=harness.feature_set())
    launch = launch.model_copy(update={"spec": launch.spec.model_copy(update={"feature_set_path": "../.."})})

    await harness.send(launch)
    await harness.until_event(launch, "ContainerTerminated")

    failed = next(e for e in await harness.events(launch) if isinstance(e, ev.TaskFailed))
    assert failed.failure_class == "rejected" and "not a folder inside the source" in failed.reason
