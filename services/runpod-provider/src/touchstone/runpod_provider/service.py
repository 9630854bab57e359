"""The RunPod provider: the command consumer and the loops that keep RunPod honest.

* commands: ``{ns}.cmd.runpod-provider.{command}`` through the shared ``ConsumerLoop``; the
  reactions are the table in ``handlers.py`` (its filter, too) over a small ``Deps`` bound here;
* attempts: one supervised asyncio task each (``attempt.py``), kept in ``attempts``; the trainer
  runs detached in its pod (``detached.py``). Stopping the provider (SIGTERM, a redeploy)
  detaches every attempt and leaves its pod running; a provider that starts adopts the pods
  whose attempts the events say are live past their launch (``resume.py``) and follows their
  trainers on from where the console was read up to. Nothing is terminated, no attempt burned;
* the reaper (``reaper.py``, every ``reconcile_interval_s``): stops attempts whose task moved
  on, adopts, reaps unowned ``touchstone-`` pods, writes the account view (``RunPodStatus``);
* the account (``account.py``, the balance every ``balance_interval_s``): a low balance or a
  rejected key stops launches, with an alarm;
* catalog (every ``catalog_interval_s``): the GPU types into the system bucket, key ``gpu_types``;
* system settings: ``runpod_max_running_tasks`` watched in the system bucket (0 pauses launches);
* live attempts (``peers.py``): the names of the attempts driven here, a ``LiveAttempts`` on
  ``{ns}.provider.runpod.live`` (every ``heartbeat_interval_s`` and whenever one starts), which
  the scheduler reads for stuck detection and peer replicas for what not to touch. Replicas
  share the launch commands (one consumer), RunPod's pod list and the SSH key (an operator
  gives every replica the same key file).

Each part is an object of its own with its dependencies given here; the SSH key is read (or
made) when the provider is built, so every part exists before it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from touchstone.shared.commands import CONTAINER_PREFIX, LaunchTask, decode_command
from touchstone.shared.consumer import ConsumerLoop
from touchstone.shared.errors import AuthError
from touchstone.shared.jetstream import system_bucket
from touchstone.shared.logs import task_context
from touchstone.shared.publisher import EventPublisher, task_events
from touchstone.shared.subjects import Subjects
from touchstone.shared.system import SystemSettings, read_system, watch_system

from . import adapters, domain
from . import resume as resume_
from .account import Account
from .adapters import Alarms, TaskRecorder
from .api import GpuType, Pod, RunpodApiClient
from .attempt import AttemptRecord, AttemptRunner
from .config import RunpodProviderSettings
from .handlers import REACTIONS, Deps
from .peers import Peers
from .pods import PodControl
from .reaper import Reaper

log = logging.getLogger(__name__)

SERVICE = "runpod-provider"


class RunpodProvider:
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
        self.account = Account(settings, self.api, self.alarms)
        self.pods = PodControl(settings, self.api, adapters.load_or_create_key(settings.key_file), self.account)
        self.runner = AttemptRunner(settings, self.pods, self.recorder, nc, subjects, self.catalog)
        self.peers = Peers(nc, subjects, settings.peer_silence_s, self.attempts)
        self.reaper = Reaper(settings, self.api, self.account, self.recorder, self.publisher, self.alarms,
                             attempts=self.attempts, adopt=self.adopt, terminate=self.pods.terminate)
        self.deps = Deps(settings, self.attempts, self.recorder, self.peers, self.pods,
                         launch_gate=self.launch_gate, start_attempt=self.start_attempt)
        spec = REACTIONS.command_consumer(SERVICE, subjects, ack_wait_s=settings.ack_wait_s,
                                          max_deliver=settings.command_max_deliver)
        self.loop = ConsumerLoop(js, subjects, spec, REACTIONS.bind(self.deps), decode_command)

    # --- running ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        kv = self.reaper.kv = await system_bucket(self.js, self.subjects)
        self.system, _ = await read_system(kv)
        peers = await self.peers.listen()
        loops = [
            asyncio.create_task(watch_system(kv, self._on_settings, stop)),
            asyncio.create_task(self._every(self.settings.reconcile_interval_s, self.reaper.reconcile, stop)),
            asyncio.create_task(self._every(self.settings.balance_interval_s, self.account.check_balance, stop)),
            asyncio.create_task(self._every(self.settings.catalog_interval_s, lambda: self.refresh_catalog(kv), stop)),
            asyncio.create_task(self._every(self.settings.heartbeat_interval_s, self.peers.announce, stop)),
        ]
        try:
            await self.loop.run(stop)
        finally:
            if self.reaper.follow_up is not None:
                loops.append(self.reaper.follow_up)
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
        self.peers.announce_now()  # at once: peers leave this attempt to us
        return record

    async def _supervise(self, record: AttemptRecord) -> None:
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

    async def adopt(self, pods: Iterable[Pod]) -> None:
        """Drive again the attempts of listed pods that the events say are live past their
        launch and that no attempt here or at a peer drives (a provider that restarted, or
        took over from a peer that died)."""
        for pod in pods:
            split = domain.split_pod_name(pod.name)
            if split is None or pod.name in self.attempts or self.peers.drives(pod.name, time.monotonic()):
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
            await self.account.auth_failed(e)
        else:
            self.reaper.listed = frozenset(p.name for p in listed)
        return domain.LaunchGate(
            limit=self.system.runpod_max_running_tasks,
            ours=frozenset(self.attempts),
            listed=self.reaper.listed,
            balance=self.account.balance,
            key_rejected=self.account.key_rejected,
            paused=self.system.scheduler_paused,
        )

    async def refresh_catalog(self, kv: KeyValue) -> None:
        try:
            types = await self.api.list_gpu_types(cloud=self.settings.cloud)
        except AuthError as e:
            await self.account.auth_failed(e)
            raise
        self.account.auth_ok()
        self.catalog[:] = types
        await adapters.publish_catalog(kv, types)


def _monotonic_at(when: datetime | None) -> float | None:
    """``time.monotonic`` at the wall-clock moment ``when`` (None stays None)."""
    if when is None:
        return None
    return time.monotonic() - max(0.0, (datetime.now(UTC) - when).total_seconds())
