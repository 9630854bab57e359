"""The RunPod provider: the command consumer and the loops that keep RunPod honest.

* commands: ``{ns}.cmd.runpod-provider.>`` through the shared ``ConsumerLoop`` (``handlers.py``);
* attempts: one supervised asyncio task each (``attempt.py``), kept in ``attempts``; the trainer
  runs detached in its pod (``detached.py``). Stopping the provider (SIGTERM, a redeploy)
  detaches every attempt and leaves its pod running; a provider that starts adopts the pods
  whose attempts the events say are live past their launch (``resume.py``) and follows their
  trainers on from where the console was read up to. Nothing is terminated, no attempt burned;
* reconcile (every ``reconcile_interval_s``): list RunPod's pods, reap ``touchstone-`` pods that
  no live attempt owns (ours in memory, or live on RunPod by the task's events) after
  ``reap_grace_s`` (a pod first seen unowned is looked at again when its grace ends, so a rogue
  pod lives at most one period plus grace); pods without the prefix are never touched;
* balance (every ``balance_interval_s``): low → alarm; below the stop threshold → no launches;
* catalog (every ``catalog_interval_s``): the GPU types into the system bucket, key ``gpu_types``;
* account view (every reconcile): balance, spend per hour and count of our running pods, why
  launches are stopped, the pods reaped lately, as a ``RunPodStatus`` in the system bucket;
* system settings: ``runpod_max_running_tasks`` watched in the system bucket (0 pauses launches);
* heartbeats: the names of the attempts driven here on ``{ns}.agent.runpod-provider.evt``
  (every ``heartbeat_interval_s`` and whenever one starts), which the scheduler reads for stuck
  detection and peer replicas for what not to touch;
* replicas: several providers share the launch commands (one consumer), RunPod's pod list and
  the provider's SSH key (an operator gives every replica the same key file). An attempt that a
  peer's heartbeat named lately is the peer's: its pod is never adopted here, and its launch,
  nak'ed until the pod is recorded and so redelivered to any replica, is left pending. A provider
  takes such attempts only after listening to its peers for ``peer_silence_s``, so a restarted
  replica does not take what its peer still drives, and a peer that died (silent that long)
  leaves its attempts to us.

A 401 from RunPod on any call raises an alarm and stops launches until a call succeeds again;
pods already running are still tracked, reaped and terminated. Reconcile, balance, key and the
account view live in ``safety.py`` (``CostSafety``, which this provider is).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from touchstone.shared.agents import AgentHeartbeat, decode_report, encode_report
from touchstone.shared.commands import CONTAINER_PREFIX, Command, LaunchTask, command_consumer
from touchstone.shared.errors import AuthError
from touchstone.shared.events import ContainerTerminated, derived_id
from touchstone.shared.jetstream import system_bucket
from touchstone.shared.logs import task_context
from touchstone.shared.publisher import EventPublisher, task_events
from touchstone.shared.subjects import Subjects, task_aggregate_id
from touchstone.shared.system import SystemSettings, read_system, watch_system

from . import adapters, domain
from . import resume as resume_
from .adapters import Alarms, TaskRecorder
from .api import GpuType, Pod, RunpodApiClient
from .attempt import AttemptRecord, AttemptRunner
from .config import RunpodProviderSettings
from .handlers import handlers
from .pods import PodControl
from .safety import CostSafety

log = logging.getLogger(__name__)

SERVICE = "runpod-provider"
HOST = "runpod-provider"


class RunpodProvider(CostSafety):
    def __init__(
        self,
        settings: RunpodProviderSettings,
        nc: NATS,
        js: JetStreamContext,
        subjects: Subjects,
        publisher: EventPublisher | None = None,
        api: RunpodApiClient | None = None,
    ) -> None:
        self.settings = settings
        self.nc = nc
        self.js = js
        self.subjects = subjects
        self.publisher = publisher or EventPublisher(js, subjects)
        self.api = api or RunpodApiClient(
            settings.runpod_base_url,
            settings.runpod_api_key.get_secret_value(),
            graphql_url=settings.runpod_graphql_url,
            timeout=settings.api_timeout_s,
            max_retries=settings.api_max_retries,
        )
        self.recorder = TaskRecorder(self.publisher)
        self.alarms = Alarms(nc, subjects, publisher=self.publisher)
        self.attempts: dict[str, AttemptRecord] = {}
        self.catalog: list[GpuType] = []
        self.system = SystemSettings()
        self.kv: KeyValue | None = None
        self.held_back = 0
        self.peer_heard: dict[str, float] = {}
        """Pod names a peer replica's heartbeat named, and when (``time.monotonic``)."""
        self.listening_since: float | None = None
        self._announcing: set[asyncio.Task[None]] = set()
        self._init_safety()
        self.runner: AttemptRunner | None = None
        self.pods: PodControl | None = None
        self.loop = command_consumer(js, subjects, SERVICE, handlers(self),
                                     ack_wait_s=settings.ack_wait_s, max_deliver=settings.command_max_deliver)

    # --- running ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        key = await asyncio.to_thread(adapters.load_or_create_key, self.settings.key_file)
        self.pods = PodControl(self.settings, self.api, key, self)
        self.runner = AttemptRunner(self.settings, self.pods, self.recorder, self.nc, self.subjects, self.catalog)
        kv = self.kv = await system_bucket(self.js, self.subjects)
        self.system, _ = await read_system(kv)
        peers = await self.nc.subscribe(self.subjects.agent_reports(HOST), cb=self._on_report)
        self.listening_since = time.monotonic()
        loops = [
            asyncio.create_task(watch_system(kv, self._on_settings, stop)),
            asyncio.create_task(self._every(self.settings.reconcile_interval_s, self.reconcile, stop)),
            asyncio.create_task(self._every(self.settings.balance_interval_s, self.check_balance, stop)),
            asyncio.create_task(self._every(self.settings.catalog_interval_s, lambda: self.refresh_catalog(kv), stop)),
            asyncio.create_task(self._every(self.settings.heartbeat_interval_s, self.heartbeat, stop)),
        ]
        try:
            await self.loop.run(stop)
        finally:
            if self._follow_up is not None:
                loops.append(self._follow_up)
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            with contextlib.suppress(Exception):
                await peers.unsubscribe()
            await self.detach_attempts()
            await self.api.aclose()

    async def _every(self, period_s: float, work: Callable[[], Awaitable[object]], stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await work()
            except Exception as e:
                log.warning("%s failed: %r", getattr(work, "__name__", "a periodic job"), e)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), period_s)

    def _on_settings(self, settings: SystemSettings) -> None:
        if settings.runpod_max_running_tasks != self.system.runpod_max_running_tasks:
            log.info("runpod_max_running_tasks is now %d", settings.runpod_max_running_tasks)
        self.system = settings

    # --- attempts ---------------------------------------------------------------------------

    def start_attempt(self, command: LaunchTask, *, launch_by: float,
                      resume: resume_.Resume | None = None) -> AttemptRecord:
        """Drive ``command`` (from a launch, or ``resume``d from the events); the attempt
        already driven when there is one by that name."""
        record = self.attempts.get(command.container_name)
        if record is not None:
            return record
        record = AttemptRecord(command, launch_by=launch_by)
        if resume is not None:
            record.resumed = True
            record.launch_recorded = resume.launched_at is not None
            record.created_at = _monotonic_at(resume.launched_at)
            record.run_since = _monotonic_at(resume.running_since)
        self.attempts[record.name] = record
        with task_context(command):  # the attempt's log lines carry its ids, resumed ones too
            record.task = asyncio.create_task(self._supervise(record), name=f"attempt {record.name}")
        adapters.PODS_LIVE.set(len(self.attempts))
        announce = asyncio.create_task(self.heartbeat())  # at once: peers leave this attempt to us
        self._announcing.add(announce)
        announce.add_done_callback(self._announcing.discard)
        return record

    async def _supervise(self, record: AttemptRecord) -> None:
        assert self.runner is not None
        try:
            await self.runner.run(record)
        except BaseException as e:  # the runner reports its own failures; this is a last resort
            log.error("attempt %s ended abnormally: %r", record.name, e)
        finally:
            self.attempts.pop(record.name, None)
            adapters.PODS_LIVE.set(len(self.attempts))

    async def detach_attempts(self) -> None:
        """The provider goes away (SIGTERM, a redeploy): leave every pod and its trainer running
        for the next provider to adopt; attempts already ending finish first."""
        tasks = []
        for record in list(self.attempts.values()):
            record.detach()
            if record.task is not None:
                tasks.append(record.task)
        if tasks:
            await asyncio.wait(tasks, timeout=self.settings.terminate_timeout_s + 30)

    async def defer_launch(self, command: LaunchTask, reason: str, assigned_at: datetime | None) -> None:
        """Hand an assigned task back to the queue: same attempt, placed again after
        ``launch_retry_s``; nothing when the task moved on meanwhile."""
        event = domain.launch_deferred(command, reason, datetime.now(UTC), self.settings.launch_retry_s, assigned_at)
        if await self.recorder.record(event):
            log.info("%s: launch handed back to the queue: %s", command.container_name, reason)

    async def _on_report(self, msg: Msg) -> None:
        """A heartbeat on our subject: the names it carries that we do not drive are a peer's."""
        try:
            report = decode_report(msg.data)
        except ValueError:
            return
        if isinstance(report, AgentHeartbeat):
            now = time.monotonic()
            for name in report.running:
                if name not in self.attempts:
                    self.peer_heard[name] = now

    def peer_drives(self, name: str, now: float) -> bool:
        """Whether a peer replica named this pod in a heartbeat within ``peer_silence_s``, or we
        have not listened that long yet (a replica that just started cannot know)."""
        silence = self.settings.peer_silence_s
        self.peer_heard = {n: at for n, at in self.peer_heard.items() if now - at <= silence}
        if self.listening_since is None or now - self.listening_since < silence:
            return True
        return name in self.peer_heard

    async def adopt(self, pods: Iterable[Pod]) -> None:
        """Drive again the attempts of listed pods that the events say are live past their
        launch and that no attempt here or at a peer drives (a provider that restarted, or
        took over from a peer that died)."""
        for pod in pods:
            split = domain.split_pod_name(pod.name)
            if split is None or pod.name in self.attempts or self.peer_drives(pod.name, time.monotonic()):
                continue
            try:
                recorded = await self.publisher.load("task", split[0])
            except ValueError:  # not a valid aggregate id: not one of our attempts
                continue
            history = task_events(recorded)
            if not resume_.resumable(domain.fold_lenient(history, datetime.now(UTC)), split[1]):
                continue
            found = resume_.launch_from_history(history, split[1])
            if found is None or found.command.container_name != pod.name:
                continue
            log.info("%s: adopting pod %s and its attempt", pod.name, pod.id)
            record = self.start_attempt(found.command, launch_by=time.monotonic(), resume=found)
            record.pod_id = record.pod_id or pod.id

    async def launch_gate(self) -> domain.LaunchGate:
        """The throttle's inputs, with RunPod's own list of our pods read now."""
        try:
            listed = await self.api.list_pods(name_prefix=CONTAINER_PREFIX)
        except AuthError as e:  # held back, not dead-lettered: the key may be fixed
            await self._auth_failed(e)
        else:
            self.listed = frozenset(p.name for p in listed)
        return domain.LaunchGate(
            limit=self.system.runpod_max_running_tasks,
            ours=frozenset(self.attempts),
            listed=self.listed,
            balance=self.balance,
            key_rejected=self.key_rejected,
            paused=self.system.scheduler_paused,
        )

    async def terminate_by_name(self, name: str, command: Command) -> None:
        """Terminate every pod with this name (silent when there is none)."""
        assert self.pods is not None
        for pod in await self.pods.find(name):
            if await self.pods.terminate(pod.id):
                await self._record_terminated(command.submission_id, command.task_id, command.attempt, name)

    async def _record_terminated(self, submission_id: str, task_id: str, attempt: int, name: str) -> None:
        event = ContainerTerminated(
            event_id=derived_id(name, "ContainerTerminated"),
            aggregate_id=task_aggregate_id(submission_id, task_id),
            correlation_id=submission_id,
            submission_id=submission_id,
            task_id=task_id,
            attempt=attempt,
            container_name=name,
        )
        await self.recorder.record(event)

    async def refresh_catalog(self, kv: KeyValue) -> None:
        try:
            types = await self.api.list_gpu_types(cloud=self.settings.cloud)
        except AuthError as e:
            await self._auth_failed(e)
            raise
        self._auth_ok()
        self.catalog[:] = types
        await adapters.publish_catalog(kv, types)

    async def heartbeat(self) -> None:
        """Every attempt driven here, launching or running: the scheduler's stuck detection reads
        the names, and peer replicas leave these attempts alone."""
        running = tuple(sorted(self.attempts))
        report = AgentHeartbeat(host=HOST, namespace=self.subjects.ns, slots_total=0, slots_free=0, running=running)
        await self.nc.publish(self.subjects.agent_reports(HOST), encode_report(report))


def _monotonic_at(when: datetime | None) -> float | None:
    """``time.monotonic`` at the wall-clock moment ``when`` (None stays None)."""
    if when is None:
        return None
    return time.monotonic() - max(0.0, (datetime.now(UTC) - when).total_seconds())
