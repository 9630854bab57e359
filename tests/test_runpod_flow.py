"""The scheduler and the RunPod provider together, in-process, against a real nats-server and the
local RunPod (``FakeRunpod``: real HTTP, pods that are real SSH endpoints), with the stand-in
trainer for speed.

Every test ends with the fake's ledger accounted for: each ``touchstone-`` pod ever created is
terminated or owned by a live attempt. Waits are liveness bounds (generous), never timing checks;
"within one reconcile period plus grace" is checked in reconcile sweeps, not seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from touchstone.runpod_local import FakeRunpod
from touchstone.runpod_local.container import DockerPodError, docker
from touchstone.runpod_provider import testing
from touchstone.runpod_provider.config import RunpodProviderSettings
from touchstone.runpod_provider.service import RunpodProvider
from touchstone.runpod_provider.testing import (
    GPU,
    PROVIDER_DEFAULTS,
    WAIT_S,
    control_plane_objects,
    pod_spec,
    provider_settings,
    store_settings,
    unaccounted,
    wait_for,
    write_feature_set,
    write_standin_trainer,
)
from touchstone.scheduler.config import SchedulerSettings
from touchstone.scheduler.service import Scheduler
from touchstone.shared import events as ev
from touchstone.shared.agents import AgentHeartbeat, encode_report
from touchstone.shared.commands import container_name
from touchstone.shared.jetstream import system_bucket
from touchstone.shared.lifecycle import TaskStatus
from touchstone.shared.publisher import EventPublisher
from touchstone.shared.subjects import Bucket, task_aggregate_id
from touchstone.shared.system import Server, SystemSettings, write_system

TASK = "pi-60"
RECOVERY_BOUND_S = 60.0

fake = testing.fake  # fixtures shared with the provider's own tests
api = testing.api
trainer_repo = testing.trainer_repo
wheelhouse = testing.wheelhouse

PROVIDER: dict[str, Any] = {**PROVIDER_DEFAULTS, "reconcile_interval_s": 0.3, "reap_grace_s": 0.3}

SCHEDULER: dict[str, Any] = {
    "lease_ttl_s": 2.0,
    "sweep_interval_s": 0.5,
    "retry_base_delay_s": 0.0,
    "runpod_default_gpu_type": GPU,
}


class Flow:
    """A scheduler and a RunPod provider in this process, against the fake and a real nats-server."""

    def __init__(self, fake: FakeRunpod, nats_url: str, nc, js, subjects, tmp: Path) -> None:
        self.fake, self.nats_url, self.nc, self.js, self.subjects, self.tmp = fake, nats_url, nc, js, subjects, tmp
        self.publisher = EventPublisher(js, subjects)
        self.scheduler: Scheduler | None = None
        self.provider: RunpodProvider | None = None
        self._running: list[tuple[asyncio.Event, asyncio.Task[None]]] = []
        self._provider_run: tuple[asyncio.Event, asyncio.Task[None]] | None = None
        self.trainer_src: Path | None = write_standin_trainer(tmp / "trainer-src")
        """The fixed stand-in trainer; None to resolve ``trainer_ref`` in ``trainer_repo``."""
        self.uploads = contextlib.ExitStack()
        self.objects = self.uploads.enter_context(control_plane_objects(tmp / "control-plane" / "objects"))
        """The control plane's store (its own folder): the provider uploads outputs to it over HTTP."""

    # --- settings and services ---------------------------------------------------------------

    async def system(self, *, max_running: int, servers: tuple[Server, ...] = ()) -> None:
        kv = await system_bucket(self.js, self.subjects)
        await write_system(kv, SystemSettings(runpod_max_running_tasks=max_running, servers=list(servers)))

    async def start_scheduler(self, **overrides: Any) -> Scheduler:
        cfg = SchedulerSettings(namespace=self.subjects.ns, **{**SCHEDULER, **overrides})
        scheduler = Scheduler(cfg, self.nc, self.js, self.subjects)
        stop = asyncio.Event()
        self._running.append((stop, asyncio.create_task(scheduler.run(stop))))
        await wait_for(lambda: scheduler.active)
        self.scheduler = scheduler
        return scheduler

    def provider_settings(self, **overrides: Any) -> RunpodProviderSettings:
        return provider_settings(self.fake, namespace=self.subjects.ns, data_dir=self.tmp / "data",
                                 trainer_src=self.trainer_src,
                                 **{**PROVIDER, **store_settings(self.objects), **overrides})

    async def start_provider(self, **overrides: Any) -> RunpodProvider:
        provider = RunpodProvider(self.provider_settings(**overrides), self.nc, self.js, self.subjects)
        stop = asyncio.Event()
        self._provider_run = (stop, asyncio.create_task(provider.run(stop)))
        self.provider = provider
        return provider

    async def provider_process(self, log_path: Path, **overrides: Any) -> asyncio.subprocess.Process:
        """The provider as its own process (``python -m touchstone.runpod_provider``), so that it
        can really be killed; returns once it consumes commands."""
        settings = self.provider_settings(**overrides)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOUCHSTONE_")}
        env.update(TOUCHSTONE_NATS_URL=self.nats_url, TOUCHSTONE_RUNPOD_API_KEY=self.fake.api_key,
                   TOUCHSTONE_METRICS_PORT="0")
        for field in ("namespace", "data_dir", "runpod_base_url", "runpod_graphql_url", "default_gpu_type",
                      "trainer_src_dir", "python", "objects_dir", "objects_url", *PROVIDER, *overrides):
            env[f"TOUCHSTONE_{field.upper()}"] = str(getattr(settings, field))
        env["TOUCHSTONE_UPLOAD_GRANT_KEY"] = settings.upload_grant_key.get_secret_value()
        with log_path.open("wb") as log:
            proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "touchstone.runpod_provider",
                                                        env=env, stdout=log, stderr=log)

        async def consuming() -> bool:
            try:
                await self.js.consumer_info(self.subjects.commands_stream, self.subjects.durable("runpod-provider"))
            except Exception:
                return proc.returncode is not None
            return True

        await wait_for(consuming)
        assert proc.returncode is None, _tail(log_path)
        return proc

    async def close(self) -> None:
        if self._provider_run is not None:  # first: a provider that stops leaves live pods running
            stop, task = self._provider_run
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 60)
        for stop, task in self._running:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 15)
        with contextlib.suppress(Exception):
            await self.js.delete_stream(f"KV_{self.subjects.bucket(Bucket.LEASE)}")
        self.uploads.close()

    # --- submissions and tasks -----------------------------------------------------------------

    def feature_set(self, **files: str) -> Path:
        return write_feature_set(self.tmp, **files)

    async def submit(self, folder: Path, *, platform: str = "runpod", gpu_type: str | None = GPU,
                     trainer_ref: str = "main") -> str:
        """An accepted submission scheduled for one training interval; returns its id. The
        scheduler queues the task (``TaskQueued``) and takes it from there."""
        sid = f"s{uuid.uuid4().hex[:8]}"
        await self.publisher.append(ev.SubmissionCreated(aggregate_id=sid, correlation_id=sid, owner="alice",
                                                         name="flow", git_url=str(folder), git_ref="v1"))
        await self.publisher.append(ev.SubmissionValidated(aggregate_id=sid, correlation_id=sid, passed=True,
                                                           commit="c1"))
        schedule = ev.Schedule(prediction_intervals=(60,), platform=platform, gpu_type=gpu_type,  # type: ignore[arg-type]
                               trainer_ref=trainer_ref)
        await self.publisher.append(ev.SubmissionScheduled(aggregate_id=sid, correlation_id=sid, schedule=schedule))
        return sid

    async def events(self, sid: str) -> list[ev.TaskEvent]:
        return [r.event for r in await self.publisher.load_task(sid, TASK)]  # type: ignore[misc]

    async def types(self, sid: str) -> list[str]:
        return [e.event_type for e in await self.events(sid)]

    def status(self, sid: str) -> TaskStatus | None:
        assert self.scheduler is not None
        record = self.scheduler.view.tasks.get(task_aggregate_id(sid, TASK))
        return None if record is None or record.state is None else record.status

    async def until_status(self, sid: str, status: TaskStatus, within: float = WAIT_S) -> None:
        await wait_for(lambda: self.status(sid) is status, within)

    async def until_event(self, sid: str, event_type: str, *, attempt: int | None = None,
                          within: float = WAIT_S) -> ev.TaskEvent:
        async def seen() -> ev.TaskEvent | None:
            return next((e for e in await self.events(sid) if e.event_type == event_type
                         and (attempt is None or getattr(e, "attempt", None) == attempt)), None)

        found: list[ev.TaskEvent] = []

        async def present() -> bool:
            event = await seen()
            if event is not None:
                found.append(event)
            return event is not None

        await wait_for(present, within)
        return found[0]

    def assert_accounted_for(self) -> None:
        """Every touchstone- pod ever created is terminated or owned by a live attempt."""
        live = set(self.provider.attempts) if self.provider else set()
        assert unaccounted(self.fake.ledger(), live) == []


def _tail(path: Path) -> str:
    return path.read_text()[-4000:]


@contextlib.asynccontextmanager
async def running_flow(fake: FakeRunpod, nats_server, nc, js, subjects, tmp_path: Path) -> AsyncIterator[Flow]:
    f = Flow(fake, nats_server.url, nc, js, subjects, tmp_path)
    try:
        yield f
        f.assert_accounted_for()
    finally:
        await f.close()
    assert all(r.terminated for r in fake.ledger() if r.name.startswith("touchstone-")), fake.ledger()


@pytest.fixture
async def flow(fake, nats_server, nc, js, subjects, tmp_path) -> AsyncIterator[Flow]:
    async with running_flow(fake, nats_server, nc, js, subjects, tmp_path) as f:
        yield f


@pytest.fixture(params=["ssh", "docker"])
async def each_pods_flow(request, nats_server, nc, js, subjects, tmp_path) -> AsyncIterator[Flow]:
    """The same, once with asyncssh pods and once with pods as Docker containers running sshd
    (skipped, saying why, where the engine or an image with sshd is missing)."""
    if request.param == "docker":
        await testing.docker_pods_or_skip()
    async with FakeRunpod(api_key=testing.API_KEY, root=tmp_path / "pods", pod_backend=request.param,
                          rate_limiter=testing.scaled_rate_limiter()) as server, \
            running_flow(server, nats_server, nc, js, subjects, tmp_path) as f:
        yield f


# --- 1. a RunPod task end to end --------------------------------------------------------------

async def test_a_runpod_training_task_runs_end_to_end(each_pods_flow):
    flow, fake = each_pods_flow, each_pods_flow.fake
    await flow.system(max_running=2)
    sid = await flow.submit(flow.feature_set())
    await flow.start_scheduler()
    await flow.start_provider()

    await flow.until_status(sid, TaskStatus.SUCCEEDED)
    await flow.until_event(sid, "ContainerTerminated")

    types = await flow.types(sid)
    assert types[:7] == ["TaskQueued", "TaskAssigned", "ContainerLaunched", "ContainerReady", "TrainingStarted",
                         "TrainingFinished", "ContainerTerminated"], types
    events = {e.event_type: e for e in await flow.events(sid)}
    assigned, launched, finished = events["TaskAssigned"], events["ContainerLaunched"], events["TrainingFinished"]
    assert (assigned.platform, assigned.placement, assigned.attempt) == ("runpod", GPU, 1)
    assert launched.container_name == container_name(sid, TASK, 1)
    assert finished.metrics == {"long": {"auc": 0.61}, "short": {"auc": 0.58}}
    assert {"long.bin", "short.bin", "metrics.json"} <= set(finished.artifacts)
    assert finished.cost_usd is not None and finished.cost_usd >= 0
    [pod] = fake.ledger()
    assert pod.id == launched.deployment_id and pod.name == launched.container_name and pod.terminated
    await wait_for(lambda: flow.scheduler.view.submission(sid).status == "COMPLETED")


# --- 2. overflow from a full on-prem, and the RunPod cap ------------------------------------

@pytest.mark.parametrize("onprem", ["paused", "busy"])
async def test_any_overflows_to_runpod_only_while_the_cap_allows(flow, fake, onprem):
    if onprem == "paused":  # declared with no slots
        await flow.system(max_running=0, servers=(Server(name="gpu-a", num_slots=0),))
    else:  # online, every slot taken
        await flow.system(max_running=0, servers=(Server(name="gpu-a", num_slots=1),))
    sid = await flow.submit(flow.feature_set(), platform="any")
    scheduler = await flow.start_scheduler(heartbeat_timeout_s=600.0)
    if onprem == "busy":
        report = AgentHeartbeat(host="gpu-a", version="test", slots_total=1, slots_free=0,
                                running=("someone-elses-container",))
        await flow.nc.publish(flow.subjects.agent_reports("gpu-a"), encode_report(report))
        await flow.nc.flush()
        await wait_for(lambda: "gpu-a" in scheduler.hosts)
    provider = await flow.start_provider()

    await flow.until_status(sid, TaskStatus.QUEUED)
    assert await scheduler.place() == 0  # RunPod capped at 0 and on-prem full: nowhere to go
    assert flow.status(sid) is TaskStatus.QUEUED
    assert await flow.types(sid) == ["TaskQueued"]
    assert fake.ledger() == [] and provider.attempts == {}

    await flow.system(max_running=1, servers=scheduler.system.servers)  # raise the cap
    await flow.until_status(sid, TaskStatus.SUCCEEDED)

    assigned = next(e for e in await flow.events(sid) if e.event_type == "TaskAssigned")
    assert assigned.platform == "runpod"
    await flow.until_event(sid, "ContainerTerminated")
    [pod] = fake.ledger()
    assert pod.terminated and pod.name == container_name(sid, TASK, 1)


# --- 3. an injected fault through the scheduler's retry policy -------------------------------

async def test_a_pod_dying_mid_run_is_retried_and_the_second_attempt_succeeds(flow, fake):
    await flow.system(max_running=2)
    folder = flow.feature_set(SLEEP="120")
    sid = await flow.submit(folder)
    await flow.start_scheduler()
    provider = await flow.start_provider()

    launched = await flow.until_event(sid, "ContainerLaunched", attempt=1)
    await flow.until_event(sid, "TrainingStarted", attempt=1)
    log_file = provider.settings.artifacts_dir / "logs" / sid / TASK / "attempt-1.log"
    await wait_for(lambda: log_file.exists() and "sleeping" in log_file.read_text())
    (folder / "SLEEP").unlink()  # attempt 1 already has its copy; attempt 2 will not sleep
    await fake.kill_pod(launched.deployment_id)

    await flow.until_status(sid, TaskStatus.SUCCEEDED)
    events = await flow.events(sid)
    failed = [e for e in events if e.event_type == "TaskFailed"]
    assert len(failed) == 1 and failed[0].attempt == 1
    assert failed[0].failure_class == "infrastructure" and "mid-run" in failed[0].reason
    assert [e.attempt for e in events if e.event_type == "TaskRetried"] == [2]
    assert [e.attempt for e in events if e.event_type == "TaskAssigned"] == [1, 2]
    assert [e.attempt for e in events if e.event_type == "TrainingFinished"] == [2]
    await flow.until_event(sid, "ContainerTerminated", attempt=2)
    ledger = fake.ledger()
    assert [r.name for r in ledger] == [container_name(sid, TASK, 1), container_name(sid, TASK, 2)]
    assert all(r.terminated for r in ledger)


# --- 4. the provider crashes between create and record -----------------------------------------

async def test_a_provider_crash_between_create_and_record_leaves_no_pod_running(flow, fake, tmp_path):
    await flow.system(max_running=2)
    sid = await flow.submit(flow.feature_set())

    # the create makes the pod, but its answer is held until the provider is dead
    made, release = asyncio.Event(), asyncio.Event()
    real_create = fake.create

    async def create_then_hang(body: dict[str, Any]):
        pod = await real_create(body)
        made.set()
        await release.wait()
        return pod

    fake.create = create_then_hang  # type: ignore[method-assign]
    log_path = tmp_path / "crashed-provider.log"
    proc = await flow.provider_process(log_path, api_timeout_s=60.0)
    try:
        # the scheduler's own cover for a launch nobody reports on (launch_timeout_s, 120 s by
        # default) is far beyond this test's bounds: recovery has to come from the provider
        scheduler = await flow.start_scheduler()
        assert scheduler.cfg.launch_timeout_s > RECOVERY_BOUND_S
        try:
            await wait_for(made.is_set)
        except TimeoutError:
            events = [(e.event_type, getattr(e, "attempt", None), getattr(e, "reason", None), e.occurred_at)
                      for e in await flow.events(sid)]
            pytest.fail(f"the provider never created the pod: {events}\n{log_path.read_text()[-4000:]}")
        proc.kill()  # SIGKILL: no shutdown, nothing recorded, nothing terminated
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        fake.create = real_create  # type: ignore[method-assign]
        release.set()

    [orphan] = fake.ledger()
    assert orphan.name == container_name(sid, TASK, 1) and not orphan.terminated
    assert "ContainerLaunched" not in await flow.types(sid)

    # a new provider process: the launch, never acked, comes to it again and it adopts the pod
    await flow.start_provider()
    await flow.until_status(sid, TaskStatus.SUCCEEDED, within=RECOVERY_BOUND_S)
    await flow.until_event(sid, "ContainerTerminated", attempt=1)

    events = await flow.events(sid)
    types = [e.event_type for e in events]
    assert "TaskFailed" not in types and "TaskRetried" not in types, types
    assert [e.attempt for e in events if e.event_type == "TaskAssigned"] == [1]
    [launched] = [e for e in events if e.event_type == "ContainerLaunched"]
    assert launched.attempt == 1 and launched.deployment_id == orphan.id  # adopted
    assert [e.attempt for e in events if e.event_type == "TrainingFinished"] == [1]
    [pod] = fake.ledger()  # never two pods per attempt
    assert pod.id == orphan.id and pod.terminated


# --- 5. rogue pods -------------------------------------------------------------------------------

async def test_rogue_prefixed_pods_are_reaped_within_a_period_and_others_survive(flow, fake, api):
    await flow.system(max_running=2)
    sid = await flow.submit(flow.feature_set(SLEEP="2"))  # a live task on RunPod: its pod must not be reaped
    await flow.start_scheduler()
    provider = await flow.start_provider(reconcile_interval_s=0.5, reap_grace_s=0.4)  # grace <= period
    await flow.until_event(sid, "TrainingStarted")

    reaped_at: dict[str, int] = {}  # pod id -> sweeps completed when it was reaped
    real_reap = provider.reaper.reap

    async def noting_reap() -> None:
        await real_reap()
        for pod_id in provider.reaper.reaped:
            reaped_at.setdefault(pod_id, provider.reaper.sweeps)

    provider.reaper.reap = noting_reap  # type: ignore[method-assign]
    first_sweep = provider.reaper.sweeps
    rogue = await api.create_pod(pod_spec("touchstone-sgone-pi-60-1"))
    unknown = await api.create_pod(pod_spec("touchstone-not-ours-at-all"))
    stranger = await api.create_pod(pod_spec("jupyter-notebook"))
    await wait_for(lambda: {rogue.id, unknown.id} <= set(reaped_at))
    # a sweep already under way may miss them; the next sees them (orphaned), and the one after,
    # a period later (>= grace), terminates them
    assert max(reaped_at.values()) <= first_sweep + 2, (first_sweep, reaped_at)

    await flow.until_status(sid, TaskStatus.SUCCEEDED)
    sweeps = provider.reaper.sweeps
    await wait_for(lambda: provider.reaper.sweeps >= sweeps + 2)
    alive = set(fake.live_pods())
    assert stranger.id in alive and rogue.id not in alive and unknown.id not in alive
    assert "TaskRetried" not in await flow.types(sid)  # the owned pod was never reaped under its task
    assert set(provider.reaper.reaped) == {rogue.id, unknown.id}
    await api.terminate_pod(stranger.id)


# --- 6. the trainer at the schedule's trainer_ref ---------------------------------------------

async def test_the_trainer_runs_at_the_schedules_trainer_ref(flow, fake, trainer_repo):
    flow.trainer_src = None  # resolve refs in the trainer repository
    await flow.system(max_running=2)
    old, new = await flow.submit(flow.feature_set(), trainer_ref="v1"), await flow.submit(flow.feature_set())
    await flow.start_scheduler()
    provider = await flow.start_provider(trainer_repo=str(trainer_repo))

    for sid, version in ((old, "v1"), (new, "v2")):
        await flow.until_status(sid, TaskStatus.SUCCEEDED)
        log_text = (provider.settings.artifacts_dir / "logs" / sid / TASK / "attempt-1.log").read_text()
        assert f"stand-in trainer version {version}" in log_text, log_text
        assert "[touchstone] trainer " in log_text
        await flow.until_event(sid, "ContainerTerminated")


async def test_an_unknown_trainer_ref_fails_once_for_good_without_renting_a_pod(flow, fake, trainer_repo):
    flow.trainer_src = None
    await flow.system(max_running=2)
    sid = await flow.submit(flow.feature_set(), trainer_ref="no-such-trainer-ref")
    await flow.start_scheduler()
    await flow.start_provider(trainer_repo=str(trainer_repo))

    await flow.until_status(sid, TaskStatus.ERROR)

    events = await flow.events(sid)
    [failed] = [e for e in events if e.event_type == "TaskFailed"]
    assert failed.attempt == 1 and failed.failure_class == "permanent"
    assert "'no-such-trainer-ref'" in failed.reason and str(trainer_repo) in failed.reason
    assert [e.attempt for e in events if e.event_type == "TaskAssigned"] == [1]
    assert "TaskRetried" not in [e.event_type for e in events]
    assert fake.ledger() == []  # resolved before any pod was rented: none to pay for, none left


# --- 7. a feature set's requirements.txt, installed in the pod --------------------------------

async def image_has_pip(image: str) -> bool:
    try:
        await docker("run", "--rm", "--entrypoint", "python3", image, "-m", "pip", "--version", timeout=60)
    except DockerPodError:
        return False
    return True


async def pip_in_image_or_skip(flow: Flow) -> None:
    """Docker pods install with the image's ``python3 -m pip``; skip, saying why, without it."""
    if flow.fake.pod_backend == "docker" and not await image_has_pip(flow.fake.pod_image):
        why = (f"the pod image {flow.fake.pod_image} has no pip (python3 -m pip), so its pods cannot install "
               "requirements.txt: rebuild it with `make images`")
        if os.environ.get("TOUCHSTONE_REQUIRE_DOCKER") == "1":
            pytest.fail(why)
        pytest.skip(why)


async def test_requirements_are_installed_in_the_pod_and_on_the_trainers_path(each_pods_flow, wheelhouse):
    flow = each_pods_flow
    await pip_in_image_or_skip(flow)
    await flow.system(max_running=2)
    folder = flow.feature_set(IMPORT="tsdemo_helper")
    (folder / "requirements.txt").write_text("# helpers\ntsdemo-helper==1.0  # pinned\n")
    sid = await flow.submit(folder)
    await flow.start_scheduler()
    provider = await flow.start_provider(pip_find_links=(wheelhouse,), pip_no_index=True)

    await flow.until_status(sid, TaskStatus.SUCCEEDED)
    log_text = (provider.settings.artifacts_dir / "logs" / sid / TASK / "attempt-1.log").read_text()
    assert "imported tsdemo_helper: tsdemo-helper 1.0" in log_text, log_text
    assert "--only-binary=:all:" in log_text  # the install command, as the pod ran it
    await flow.until_event(sid, "ContainerTerminated")


@pytest.mark.parametrize("requirement", ["tsdemo-missing==1.0", "--index-url http://evil.example/simple"])
async def test_requirements_that_cannot_be_installed_fail_once_for_good(flow, fake, wheelhouse, requirement):
    await flow.system(max_running=2)
    folder = flow.feature_set()
    (folder / "requirements.txt").write_text(f"tsdemo-helper\n{requirement}\n")
    sid = await flow.submit(folder)
    await flow.start_scheduler()
    await flow.start_provider(pip_find_links=(wheelhouse,), pip_no_index=True)

    await flow.until_status(sid, TaskStatus.ERROR)
    await flow.until_event(sid, "ContainerTerminated")

    events = await flow.events(sid)
    [failed] = [e for e in events if e.event_type == "TaskFailed"]
    assert failed.failure_class == "permanent" and "TaskRetried" not in [e.event_type for e in events]
    assert "TrainingStarted" not in [e.event_type for e in events]
    if requirement.startswith("--"):  # refused here, before pip
        assert "line 2 is not a plain requirement" in failed.reason
    else:  # pip's own last lines
        assert "pip install of requirements.txt failed" in failed.reason and "tsdemo-missing" in failed.reason
    [pod] = fake.ledger()
    assert pod.terminated


async def test_a_pod_image_without_pip_fails_requirements_for_good_saying_so(flow, fake, tmp_path, wheelhouse):
    bare = tmp_path / "no-pip"  # a Python without pip, like a pod image without it
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "venv", "--without-pip", str(bare))
    assert await proc.wait() == 0
    await flow.system(max_running=2)
    folder = flow.feature_set()
    (folder / "requirements.txt").write_text("tsdemo-helper\n")
    sid = await flow.submit(folder)
    await flow.start_scheduler()
    await flow.start_provider(python=str(bare / "bin" / "python"), pip_find_links=(wheelhouse,), pip_no_index=True)

    await flow.until_status(sid, TaskStatus.ERROR)
    await flow.until_event(sid, "ContainerTerminated")

    [failed] = [e for e in await flow.events(sid) if e.event_type == "TaskFailed"]
    assert failed.failure_class == "permanent" and "has no pip" in failed.reason
    assert all(r.terminated for r in fake.ledger())


# --- 9. the provider restarts under live pods; no stock for a while ----------------------------

@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
async def test_a_provider_restart_adopts_three_training_pods_and_all_finish_on_attempt_1(each_pods_flow, tmp_path,
                                                                                         how):
    """A redeploy (SIGTERM) or a crash (SIGKILL) of the provider with three pods training: the
    pods and their trainers go on, the next provider adopts them from the events and follows the
    trainers to the end. Nothing is terminated early, no attempt is burned. Once with asyncssh
    pods, once with Docker pods running a real sshd."""
    flow, fake = each_pods_flow, each_pods_flow.fake
    await flow.system(max_running=3)
    sids = [await flow.submit(flow.feature_set(SLEEP="15")) for _ in range(3)]  # long enough on a busy machine
    await flow.start_scheduler()
    proc = await flow.provider_process(tmp_path / "first-provider.log")
    data = flow.provider_settings().artifacts_dir
    logs = [data / "logs" / sid / TASK / "attempt-1.log" for sid in sids]
    try:
        for sid in sids:
            await flow.until_event(sid, "TrainingStarted", attempt=1)
        await wait_for(lambda: all(p.exists() and "sleeping" in p.read_text() for p in logs))
        for sid in sids:  # all three still training when the provider goes
            assert "TrainingFinished" not in await flow.types(sid)
        proc.send_signal(how)
        await asyncio.wait_for(proc.wait(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    pods = fake.ledger()
    assert len(pods) == 3 and not any(p.terminated for p in pods), pods  # left running, not reaped
    assert all(flow.status(sid) is TaskStatus.RUNNING for sid in sids)

    await flow.start_provider()  # the next provider: adopts, follows, collects, terminates
    for sid in sids:
        await flow.until_status(sid, TaskStatus.SUCCEEDED)
        await flow.until_event(sid, "ContainerTerminated", attempt=1)
        events = await flow.events(sid)
        types = [e.event_type for e in events]
        assert "TaskFailed" not in types and "TaskRetried" not in types, types
        assert [e.attempt for e in events if e.event_type == "TaskAssigned"] == [1]
        [finished] = [e for e in events if isinstance(e, ev.TrainingFinished)]
        assert finished.attempt == 1 and {"long.bin", "short.bin", "metrics.json"} <= set(finished.artifacts)
        assert (flow.objects.root / finished.artifacts["long.bin"]).read_text() == "long"
        assert "stand-in trainer: train" in (flow.objects.root / (finished.log_key or "?")).read_text()
    for log in logs:  # one console, streamed on from where the first provider stopped reading
        text = log.read_text()
        assert text.count("stand-in trainer: train") == 1 and "following the trainer" in text, text
    ledger = fake.ledger()
    assert len(ledger) == 3 and all(p.terminated for p in ledger)


async def test_no_stock_for_three_launch_deadlines_keeps_the_task_queued_then_runs_it_on_attempt_1(flow, fake):
    """The scheduler's launch deadline and the provider's stock wait are one setting
    (``launch_timeout_s``; the provider holds a launch for half of it, then hands it back)."""
    deadline_s = 1.0
    await flow.system(max_running=2)
    fake.faults.no_capacity = {GPU}
    sid = await flow.submit(flow.feature_set())
    await flow.start_scheduler(launch_timeout_s=deadline_s)
    provider = await flow.start_provider(launch_timeout_s=deadline_s)
    assert provider.settings.launch_hold_s < flow.scheduler.cfg.launch_timeout_s

    await asyncio.sleep(3 * deadline_s)
    events = await flow.events(sid)
    types = [e.event_type for e in events]
    assert "TaskFailed" not in types and "ContainerLaunched" not in types, types
    assert types.count("LaunchDeferred") >= 2, types
    assert {e.attempt for e in events if e.event_type in ("TaskAssigned", "LaunchDeferred")} == {1}
    assert fake.ledger() == []

    fake.faults.no_capacity = set()
    await flow.until_status(sid, TaskStatus.SUCCEEDED)
    events = await flow.events(sid)
    types = [e.event_type for e in events]
    assert "TaskFailed" not in types and "TaskRetried" not in types, types
    assert {e.attempt for e in events if hasattr(e, "attempt")} == {1}
    await flow.until_event(sid, "ContainerTerminated", attempt=1)
    [pod] = fake.ledger()
    assert pod.terminated and pod.name == container_name(sid, TASK, 1)
