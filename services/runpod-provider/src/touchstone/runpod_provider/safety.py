"""Cost safety of the RunPod provider (``CostSafety``, a part of ``RunpodProvider``):

* reconcile: stop our attempts whose task moved on, adopt listed pods whose attempts are live
  past their launch but driven by nobody here (a restarted provider), reap ``touchstone-`` pods
  that no live attempt owns after ``reap_grace_s`` (with a follow-up reap when a pod's grace ends before the
  next sweep), and write the account view (``RunPodStatus``) into the system bucket;
* balance: low → alarm; below the stop threshold → no launches;
* a rejected key (401): alarm, no launches until a call succeeds again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime

from nats.js.kv import KeyValue
from touchstone.shared import events as ev
from touchstone.shared.errors import AuthError
from touchstone.shared.publisher import EventPublisher
from touchstone.shared.system import ReapedPod, RunPodStatus, write_runpod_status

from . import adapters, domain
from .adapters import PLATFORM, Alarms, TaskRecorder
from .api import ForbiddenError, Pod, PodStatus, RunpodApiClient
from .attempt import AttemptRecord
from .config import RunpodProviderSettings
from .pods import Hooks, PodControl

log = logging.getLogger(__name__)

REAPED_SHOWN = 50
"""Reaped pods kept for the System page."""
BILLED = (PodStatus.PENDING, PodStatus.STARTING, PodStatus.RUNNING)
"""Statuses in which a pod counts as running (and costs its ``cost`` per hour)."""


class CostSafety(Hooks):
    """The reaper, the balance, the key and the account view; state set up by ``_init_safety``.
    ``RunpodProvider`` is one; this class only keeps the module near its size."""

    settings: RunpodProviderSettings
    api: RunpodApiClient
    recorder: TaskRecorder
    publisher: EventPublisher
    alarms: Alarms
    attempts: dict[str, AttemptRecord]
    pods: PodControl | None
    kv: KeyValue | None

    def _init_safety(self) -> None:
        self.balance = domain.BalanceLevel.OK
        self.balance_usd: float | None = None
        self.key_rejected = False
        self.listed: frozenset[str] = frozenset()
        self.running_pods, self.spend_per_hour = 0, 0.0
        self.unowned_since: dict[str, float] = {}
        self.reaped: list[str] = []
        self.recently_reaped: deque[ReapedPod] = deque(maxlen=REAPED_SHOWN)
        self.sweeps = 0
        self._reap_lock = asyncio.Lock()
        self._follow_up: asyncio.Task[None] | None = None

    async def _record_terminated(self, submission_id: str, task_id: str, attempt: int, name: str) -> None:
        raise NotImplementedError

    async def adopt(self, pods: Iterable[Pod]) -> None:
        raise NotImplementedError

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
            balance=self.balance_usd,
            spend_per_hour=self.spend_per_hour,
            running_pods=self.running_pods,
            launches_stopped=domain.launches_stopped(self.balance, self.key_rejected),
            reaped=list(self.recently_reaped),
        )

    def export_metrics(self) -> None:
        """The account view as gauges (the same facts the System page shows)."""
        adapters.PODS_RUNNING.set(self.running_pods)
        adapters.SPEND.set(self.spend_per_hour)
        adapters.KEY_REJECTED.set(1 if self.key_rejected else 0)
        adapters.LAUNCHES_STOPPED.set(1 if domain.launches_stopped(self.balance, self.key_rejected) else 0)
        adapters.BALANCE_LOW.set(self.settings.balance_low_usd)
        adapters.SPEND_LIMIT.set(self.settings.spend_alarm_usd_per_hour)

    async def publish_status(self) -> None:
        self.export_metrics()
        if self.kv is None:
            return
        try:
            await write_runpod_status(self.kv, self.status())
        except Exception as e:  # the System page is a view; the next sweep writes it again
            log.warning("could not write the RunPod status: %r", e)

    async def stop_abandoned(self) -> None:
        """An attempt whose task was cancelled or failed meanwhile (no ``TerminateTask`` needed)
        is stopped, so its pod does not bill until the trainer happens to end."""
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
            if await self.pods.terminate(pod_id):
                await self._note_reaped(by_id[pod_id])
                state = states.get(name)
                split = domain.split_pod_name(name)
                if state is not None and split is not None:
                    await self._record_terminated(state.submission_id, state.task_id, split[1], name)

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
        self.balance_usd = balance.balance
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
        self.export_metrics()

    # --- hooks from attempts ------------------------------------------------------------------

    async def on_key_rejected(self, message: str) -> None:
        self.key_rejected = True
        self.export_metrics()
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
        self.export_metrics()
