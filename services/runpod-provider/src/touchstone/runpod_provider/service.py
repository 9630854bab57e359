"""The RunPod provider: the command consumer and the loops that keep RunPod honest.

* commands: ``{ns}.cmd.runpod-provider.>`` through the shared ``ConsumerLoop`` (``handlers.py``);
* attempts: one supervised asyncio task each (``attempt.py``), kept in ``attempts``;
* reconcile (every ``reconcile_interval_s``): list RunPod's pods, reap ``touchstone-`` pods that
  no live attempt owns (ours in memory, or live on RunPod by the task's events) after
  ``reap_grace_s`` (a pod first seen unowned is looked at again when its grace ends, so a rogue
  pod lives at most one period plus grace); pods without the prefix are never touched;
* balance (every ``balance_interval_s``): low → alarm; below the stop threshold → no launches;
* catalog (every ``catalog_interval_s``): the GPU types into the system bucket, key ``gpu_types``;
* system settings: ``runpod_max_running_tasks`` watched in the system bucket (0 pauses launches);
* heartbeats: the running attempts' names on ``{ns}.agent.runpod-provider.evt``, which the
  scheduler reads for stuck detection.

A 401 from RunPod on any call raises an alarm and stops launches until a call succeeds again;
pods already running are still tracked, reaped and terminated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from touchstone.shared.agents import AgentHeartbeat, encode_report
from touchstone.shared.commands import CONTAINER_PREFIX, Command, LaunchTask, command_consumer
from touchstone.shared.errors import AuthError
from touchstone.shared.events import ContainerTerminated, derived_id
from touchstone.shared.jetstream import system_bucket
from touchstone.shared.publisher import EventPublisher
from touchstone.shared.subjects import Subjects, task_aggregate_id
from touchstone.shared.system import SystemSettings, read_system, watch_system

from . import adapters, domain
from .adapters import Alarms, TaskRecorder
from .api import ForbiddenError, GpuType, RunpodApiClient
from .attempt import AttemptRecord, AttemptRunner
from .config import RunpodProviderSettings
from .handlers import handlers
from .pods import Hooks, PodControl

log = logging.getLogger(__name__)

SERVICE = "runpod-provider"
HOST = "runpod-provider"


class RunpodProvider(Hooks):
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
        self.alarms = Alarms(nc, subjects)
        self.attempts: dict[str, AttemptRecord] = {}
        self.catalog: list[GpuType] = []
        self.system = SystemSettings()
        self.balance = domain.BalanceLevel.OK
        self.key_rejected = False
        self.listed: frozenset[str] = frozenset()
        self.unowned_since: dict[str, float] = {}
        self.reaped: list[str] = []
        self.held_back = 0
        self.sweeps = 0
        self._reap_lock = asyncio.Lock()
        self._follow_up: asyncio.Task[None] | None = None
        self.runner: AttemptRunner | None = None
        self.pods: PodControl | None = None
        self.loop = command_consumer(js, subjects, SERVICE, handlers(self),
                                     ack_wait_s=settings.ack_wait_s, max_deliver=settings.command_max_deliver)

    # --- running ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        key = await asyncio.to_thread(adapters.load_or_create_key, self.settings.key_file)
        self.pods = PodControl(self.settings, self.api, key, self)
        self.runner = AttemptRunner(self.settings, self.pods, self.recorder, self.nc, self.subjects, self.catalog)
        kv = await system_bucket(self.js, self.subjects)
        self.system, _ = await read_system(kv)
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
            await self.stop_attempts("the provider is shutting down")
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

    def start_attempt(self, command: LaunchTask) -> AttemptRecord:
        record = AttemptRecord(command)
        self.attempts[record.name] = record
        record.task = asyncio.create_task(self._supervise(record), name=f"attempt {record.name}")
        adapters.PODS_LIVE.set(len(self.attempts))
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

    async def stop_attempts(self, reason: str) -> None:
        """Stop every attempt: each terminates its pod and records why it ended."""
        tasks = []
        for record in list(self.attempts.values()):
            if record.task is not None and record.phase not in ("terminating", "done"):
                record.stop_reason = reason
                record.task.cancel()
            if record.task is not None:
                tasks.append(record.task)
        if tasks:
            await asyncio.wait(tasks, timeout=self.settings.terminate_timeout_s + 30)

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

    # --- cost safety ------------------------------------------------------------------------

    async def reconcile(self) -> None:
        """One sweep: stop our attempts whose task moved on, then reap RunPod's unowned pods."""
        await self.stop_abandoned()
        await self.reap()
        self.sweeps += 1

    async def stop_abandoned(self) -> None:
        """An attempt whose task was cancelled or failed meanwhile (no ``TerminateTask`` needed)
        is stopped, so its pod does not bill until the trainer happens to end."""
        for record in list(self.attempts.values()):
            if record.task is None or record.phase in ("terminating", "done"):
                continue
            cmd = record.command
            state = await self.recorder.state(cmd.submission_id, cmd.task_id)
            if not domain.attempt_live(state, cmd.attempt) and record.phase not in ("terminating", "done"):
                log.info("stopping %s: its task is no longer live on RunPod", record.name)
                record.stop_reason = "the task is no longer live"
                record.task.cancel()

    async def reap(self) -> None:
        """Terminate ``touchstone-`` pods that no live attempt owns, after the grace period."""
        async with self._reap_lock:
            await self._reap()

    async def _reap(self) -> None:
        assert self.pods is not None
        try:
            pods = await self.api.list_pods()
        except AuthError as e:
            await self._auth_failed(e)
            raise
        self.listed = frozenset(p.name for p in pods if domain.is_ours(p.name))
        owned = set(self.attempts)
        states = {}
        for pod in pods:
            if not domain.is_ours(pod.name) or pod.name in owned:
                continue
            split = domain.split_pod_name(pod.name)
            if split is None:
                continue
            try:
                state = await self.recorder.aggregate_state(split[0])
            except ValueError:  # not a valid aggregate id: not one of our attempts
                continue
            states[pod.name] = state
            if domain.attempt_live(state, split[1]):
                owned.add(pod.name)
        plan = domain.decide_reap(((p.id, p.name) for p in pods), frozenset(owned), self.unowned_since,
                                  time.monotonic(), self.settings.reap_grace_s)
        self.unowned_since = dict(plan.unowned_since)
        self._reap_again_when_due(time.monotonic())
        names = {p.id: p.name for p in pods}
        for pod_id in plan.terminate:
            name = names[pod_id]
            log.warning("reaping rogue pod %s (%s): no live attempt owns it", pod_id, name)
            if await self.pods.terminate(pod_id):
                self.reaped.append(pod_id)
                adapters.PODS_REAPED.inc()
                state = states.get(name)
                split = domain.split_pod_name(name)
                if state is not None and split is not None:
                    await self._record_terminated(state.submission_id, state.task_id, split[1], name)

    def _reap_again_when_due(self, now: float) -> None:
        """A pod first seen unowned is due once its grace has passed, which may be well before
        the next sweep: look again then, so a rogue pod lives at most one period plus grace
        (rather than up to two periods)."""
        pending = self._follow_up
        already = pending is not None and not pending.done() and pending is not asyncio.current_task()
        if not self.unowned_since or already:
            return
        delay = max(0.0, min(self.unowned_since.values()) + self.settings.reap_grace_s - now) + 0.05
        if delay < self.settings.reconcile_interval_s:
            self._follow_up = asyncio.create_task(self._reap_after(delay), name="follow-up reap")

    async def _reap_after(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        try:
            await self.reap()
        except Exception as e:
            log.warning("follow-up reap failed: %r", e)

    async def check_balance(self) -> None:
        try:
            balance = await self.api.get_balance()
        except AuthError as e:
            await self._auth_failed(e)
            raise
        self._auth_ok()
        adapters.BALANCE.set(balance.balance)
        level = domain.balance_level(balance.balance, self.settings.balance_low_usd, self.settings.balance_stop_usd)
        if level is not domain.BalanceLevel.OK:
            stop = " (launches stopped)" if level is domain.BalanceLevel.STOP else ""
            await self.alarms.raise_("low_balance", f"RunPod balance ${balance.balance:.2f}{stop}")
        else:
            self.alarms.clear("low_balance")
        if level != self.balance:
            log.info("RunPod balance level %s -> %s", self.balance.value, level.value)
        self.balance = level

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
        running = tuple(sorted(name for name, r in self.attempts.items() if r.pod_id is not None))
        report = AgentHeartbeat(host=HOST, namespace=self.subjects.ns, slots_total=0, slots_free=0, running=running)
        await self.nc.publish(self.subjects.agent_reports(HOST), encode_report(report))

    # --- hooks from attempts ------------------------------------------------------------------

    async def on_key_rejected(self, message: str) -> None:
        self.key_rejected = True
        await self.alarms.raise_("api_key_rejected", f"RunPod rejected the API key; launches stopped: {message}")

    async def on_payment_required(self, message: str) -> None:
        self.balance = domain.BalanceLevel.STOP
        await self.alarms.raise_("low_balance", f"RunPod refused a pod for the balance: {message}")

    async def _auth_failed(self, error: AuthError) -> None:
        if not isinstance(error, ForbiddenError):
            await self.on_key_rejected(str(error))

    def _auth_ok(self) -> None:
        if self.key_rejected:
            log.info("RunPod accepts the API key again; launches resume")
        self.key_rejected = False
        self.alarms.clear("api_key_rejected")
