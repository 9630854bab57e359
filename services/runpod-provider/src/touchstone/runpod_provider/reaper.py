"""The reaper: RunPod's pod list kept honest, and the account view written from it.

One sweep (``reconcile``, every ``reconcile_interval_s``):

* stop our attempts whose task moved on (cancelled or failed meanwhile: no ``TerminateTask``
  needed), so their pods do not bill until the trainer happens to end;
* adopt listed pods whose attempts are live past their launch but driven by nobody (a
  restarted provider; ``adopt`` is the provider's);
* reap ``touchstone-`` pods that no live attempt owns (ours in memory, or live on RunPod by the
  task's events) after ``reap_grace_s``; a pod first seen unowned is looked at again when its
  grace ends, so a rogue pod lives at most one period plus grace. Pods without the prefix are
  never touched;
* the high-spend alarm, and the account view (``RunPodStatus``: balance, spend per hour and
  count of our running pods, why launches are stopped, the pods reaped lately) into the
  system bucket, also when RunPod could not be read.

Its dependencies are explicit: the attempts driven here (read only), the account (balance and
key), how to adopt a pod and how to terminate one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime

from nats.js.kv import KeyValue
from touchstone.shared import events as ev
from touchstone.shared.errors import AuthError
from touchstone.shared.publisher import EventPublisher
from touchstone.shared.system import ReapedPod, RunPodStatus, write_runpod_status

from . import adapters, domain
from .account import Account
from .adapters import PLATFORM, Alarms, TaskRecorder
from .api import Pod, PodStatus, RunpodApiClient
from .attempt import AttemptRecord
from .config import RunpodProviderSettings

log = logging.getLogger(__name__)

REAPED_SHOWN = 50
"""Reaped pods kept for the System page."""
BILLED = (PodStatus.PENDING, PodStatus.STARTING, PodStatus.RUNNING)
"""Statuses in which a pod counts as running (and costs its ``cost`` per hour)."""


class Reaper:
    def __init__(
        self,
        settings: RunpodProviderSettings,
        api: RunpodApiClient,
        account: Account,
        recorder: TaskRecorder,
        publisher: EventPublisher,
        alarms: Alarms,
        *,
        attempts: Mapping[str, AttemptRecord],
        adopt: Callable[[Iterable[Pod]], Awaitable[None]],
        terminate: Callable[[str], Awaitable[bool]],
    ) -> None:
        self.settings = settings
        self.api = api
        self.account = account
        self.recorder = recorder
        self.publisher = publisher
        self.alarms = alarms
        self.attempts = attempts
        self.adopt = adopt
        self.terminate = terminate
        self.kv: KeyValue | None = None
        """The system bucket, once the provider opened it (where the account view goes)."""
        self.listed: frozenset[str] = frozenset()
        """Our pods as RunPod last listed them (the launch gate lists them too)."""
        self.running_pods, self.spend_per_hour = 0, 0.0
        self.unowned_since: dict[str, float] = {}
        self.reaped: list[str] = []
        self.recently_reaped: deque[ReapedPod] = deque(maxlen=REAPED_SHOWN)
        self.sweeps = 0
        self.follow_up: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def reconcile(self) -> None:
        """One sweep: stop our attempts whose task moved on, reap RunPod's unowned pods, and
        write the account view for the System page (also when RunPod could not be read)."""
        try:
            await self.stop_abandoned()
            await self.reap()
            await self.watch_spend()
        finally:
            await self.publish_status()
        self.sweeps += 1

    async def stop_abandoned(self) -> None:
        """An attempt whose task was cancelled or failed meanwhile is stopped."""
        for record in list(self.attempts.values()):
            if record.task is None or record.ending:
                continue
            cmd = record.command
            state = await self.recorder.state(cmd.submission_id, cmd.task_id)
            if not domain.attempt_live(state, cmd.attempt) and not record.ending:
                log.info("stopping %s: its task is no longer live on RunPod", record.name)
                record.stop("the task is no longer live")

    async def reap(self) -> None:
        """Terminate ``touchstone-`` pods that no live attempt owns, after the grace period."""
        async with self._lock:
            await self._reap()

    async def _reap(self) -> None:
        try:
            pods = await self.api.list_pods()
        except AuthError as e:
            await self.account.auth_failed(e)
            raise
        self.listed = frozenset(p.name for p in pods if domain.is_ours(p.name))
        await self.adopt(p for p in pods if domain.is_ours(p.name))
        self.running_pods, self.spend_per_hour = domain.spend(
            (p.name, p.cost_per_hour, p.status in BILLED) for p in pods
        )
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
        by_id = {p.id: p for p in pods}
        for pod_id in plan.terminate:
            name = by_id[pod_id].name
            log.warning("reaping rogue pod %s (%s): no live attempt owns it", pod_id, name)
            if await self.terminate(pod_id):
                await self._note_reaped(by_id[pod_id])
                state = states.get(name)
                split = domain.split_pod_name(name)
                if state is not None and split is not None:
                    await self.recorder.container_terminated(state.submission_id, state.task_id, split[1], name)

    async def _note_reaped(self, pod: Pod) -> None:
        self.reaped.append(pod.id)
        adapters.PODS_REAPED.inc()
        await adapters.record_platform_event(self.publisher, ev.RoguePodReaped(
            event_id=ev.derived_id("RoguePodReaped", pod.id), aggregate_id=PLATFORM, correlation_id=PLATFORM,
            pod_id=pod.id, pod_name=pod.name, cost_per_hour=pod.cost_per_hour,
        ))
        self.recently_reaped.appendleft(ReapedPod(
            pod_id=pod.id, name=pod.name, reaped_at=datetime.now(UTC).isoformat(),
            cost_per_hr=pod.cost_per_hour, reason="no live attempt owned it",
        ))
        if pod.status in BILLED and domain.is_ours(pod.name):
            self.running_pods = max(0, self.running_pods - 1)
            self.spend_per_hour = round(max(0.0, self.spend_per_hour - pod.cost_per_hour), 6)

    def _reap_again_when_due(self, now: float) -> None:
        """A pod first seen unowned is due once its grace has passed, which may be well before
        the next sweep: look again then, so a rogue pod lives at most one period plus grace
        (rather than up to two periods)."""
        pending = self.follow_up
        already = pending is not None and not pending.done() and pending is not asyncio.current_task()
        if not self.unowned_since or already:
            return
        delay = max(0.0, min(self.unowned_since.values()) + self.settings.reap_grace_s - now) + 0.05
        if delay < self.settings.reconcile_interval_s:
            self.follow_up = asyncio.create_task(self._reap_after(delay), name="follow-up reap")

    async def _reap_after(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        try:
            await self.reap()
        except Exception as e:
            log.warning("follow-up reap failed: %r", e)

    # --- the account view -----------------------------------------------------------------------

    async def watch_spend(self) -> None:
        """The high-spend alarm: our pods cost more per hour than ``spend_alarm_usd_per_hour``."""
        limit = self.settings.spend_alarm_usd_per_hour
        if limit > 0 and self.spend_per_hour > limit:
            await self.alarms.raise_(
                "high_spend", f"RunPod spend ${self.spend_per_hour:.2f}/h on {self.running_pods} pods "
                f"is over the ${limit:.2f}/h setting")
        else:
            self.alarms.clear("high_spend")

    def status(self) -> RunPodStatus:
        """The account as last seen: money, our running pods, why launches stop, pods reaped."""
        return RunPodStatus(
            updated_at=datetime.now(UTC).isoformat(),
            balance=self.account.balance_usd,
            spend_per_hour=self.spend_per_hour,
            running_pods=self.running_pods,
            launches_stopped=self.account.launches_stopped,
            reaped=list(self.recently_reaped),
        )

    async def publish_status(self) -> None:
        """The account view as gauges and into the system bucket (the same facts)."""
        adapters.PODS_RUNNING.set(self.running_pods)
        adapters.SPEND.set(self.spend_per_hour)
        self.account.export_metrics()
        if self.kv is None:
            return
        try:
            await write_runpod_status(self.kv, self.status())
        except Exception as e:  # the System page is a view; the next sweep writes it again
            log.warning("could not write the RunPod status: %r", e)
