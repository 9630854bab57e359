"""The on-prem provider: launch / terminate commands for ``onprem`` go to the agent named in
the placement; agent reports become task events.

* Commands come from the commands stream (``{ns}.cmd.onprem-provider.>``) through the shared
  ``ConsumerLoop``; a command is acked once its agent answered. An agent that does not answer
  gets the command again (nak with back-off); on the last try a launch fails the attempt
  (infrastructure), so the scheduler retries it elsewhere.
* Reports: each ``AttemptReport`` is checked against the task's events (``domain``) and the
  missing events are appended with the task's expected last sequence; a conflict reloads and
  decides again. Reports are handled one task at a time (a lock per task).
* Silence: a live attempt whose agent has sent nothing for ``agent_timeout_s`` fails
  (infrastructure). The provider learns which attempts to watch from the launches it forwards
  and from the reports agents repeat on every heartbeat, so a restarted provider picks them up.
  Silence counts only while this provider listened: a provider that did not run for a while
  (SIGSTOP, a starved CPU: its sweep woke far too late) or lost its connection (a reconnect)
  heard nothing meanwhile, however loud the agents were, so silence counts afresh from then.
  Otherwise a replica waking from a pause fails every attempt it watches before reading the
  heartbeats waiting in its socket (attempts burned by the provider's fault, not the agent's).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from touchstone.onprem_provider import domain
from touchstone.onprem_provider.adapters import AgentClient, listen_to_agents
from touchstone.onprem_provider.config import ProviderSettings
from touchstone.shared.agents import AgentHeartbeat, AttemptReport
from touchstone.shared.aggregate import change
from touchstone.shared.commands import LaunchTask, TerminateTask, command_consumer, container_name
from touchstone.shared.consumer import Delivery, Handler
from touchstone.shared.errors import UnavailableError
from touchstone.shared.events import TaskEvent
from touchstone.shared.logs import task_context
from touchstone.shared.objects.keys import attempt_prefix
from touchstone.shared.publisher import EventPublisher, Recorded, task_events
from touchstone.shared.subjects import Subjects, task_aggregate_id

log = logging.getLogger(__name__)

SERVICE = "onprem-provider"
CONFLICT_TRIES = 5


@dataclass(frozen=True)
class Watch:
    """A live attempt on a host, whose agent must keep talking."""

    host: str
    submission_id: str
    task_id: str
    attempt: int
    since: float


def _now() -> datetime:
    return datetime.now(UTC)


def _key(host: str, report: AttemptReport) -> str:
    return f"{host}/{report.host}/{report.container}"


def _signature(report: AttemptReport) -> tuple[Any, ...]:
    return (report.stage, report.removed, report.outcome is not None)


class OnpremProvider:
    def __init__(
        self,
        settings: ProviderSettings,
        nc: NATS,
        js: JetStreamContext,
        subjects: Subjects,
        publisher: EventPublisher | None = None,
    ) -> None:
        self.settings = settings
        self.nc = nc
        self.js = js
        self.subjects = subjects
        self.publisher = publisher or EventPublisher(js, subjects)
        self.agents = AgentClient(nc, subjects, timeout_s=settings.agent_command_timeout_s)
        self.store = settings.object_store()
        self.heard: dict[str, float] = {}
        self.listening_since = time.monotonic()
        """Since when this provider has been running and connected without a break."""
        self.watch: dict[str, Watch] = {}
        self.rejected: list[str] = []
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._applied: dict[str, tuple[Any, ...]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.loop = command_consumer(js, subjects, SERVICE, self.handlers(),
                                     ack_wait_s=settings.ack_wait_s, max_deliver=settings.max_deliver)

    def handlers(self) -> Mapping[str, Handler]:
        return {"LaunchTask": self.on_launch_task, "TerminateTask": self.on_terminate_task}

    async def run(self, stop: asyncio.Event) -> None:
        sub = await listen_to_agents(self.nc, self.subjects, self.on_heartbeat, self.on_report)
        sweeper = asyncio.create_task(self._sweep(stop))
        try:
            await self.loop.run(stop)
        finally:
            sweeper.cancel()
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper

    # --- commands ----------------------------------------------------------------------

    async def on_launch_task(self, command: LaunchTask, delivery: Delivery) -> None:
        host = command.placement.partition("/")[0]
        history = await self._history(command.submission_id, command.task_id)
        assigned = domain.assigned_host(history, command.attempt)
        if assigned != host or not domain.live_at(domain.fold_task(history, _now()), command.attempt):
            log.info("not launching %s: attempt not live on %s", command.container_name, host)
            return
        try:
            reply = await self.agents.send(host, self.with_grant(command))
        except UnavailableError as e:
            if delivery.num_delivered < self.settings.max_deliver:
                raise
            await self._fail(command.submission_id, command.task_id, command.attempt, str(e), "unreachable")
            return
        if not reply.ok:
            reason = f"agent {host} refused the launch: {reply.error}"
            await self._fail(command.submission_id, command.task_id, command.attempt, reason, "refused")
            return
        self.watch[command.container_name] = Watch(
            host, command.submission_id, command.task_id, command.attempt, time.monotonic()
        )
        if reply.report is not None:
            await self.apply_report(host, reply.report)

    def with_grant(self, command: LaunchTask) -> LaunchTask:
        """The launch with write access to its attempt's prefix in the object store: the agent
        holds no store credentials, and its grant reaches nothing but this attempt."""
        prefix = attempt_prefix(command.submission_id, command.task_id, command.attempt)
        grant = self.store.grant(prefix, self.settings.upload_max_bytes, self.settings.upload_grant_ttl_s, _now())
        return command.model_copy(update={"upload": grant})

    async def on_terminate_task(self, command: TerminateTask, delivery: Delivery) -> None:
        history = await self._history(command.submission_id, command.task_id)
        host = domain.assigned_host(history, command.attempt)
        if host is None:
            log.info("terminate of %s/%s attempt %d: not placed on-prem", command.submission_id,
                     command.task_id, command.attempt)
            return
        reply = await self.agents.send(host, command)
        name = container_name(command.submission_id, command.task_id, command.attempt)
        self.watch.pop(name, None)
        if reply.report is not None:
            await self.apply_report(host, reply.report)
        elif reply.ok:  # the agent has no such container: it is gone
            gone = AttemptReport(host=host, container=name, submission_id=command.submission_id,
                                 task_id=command.task_id, attempt=command.attempt, stage="ended", removed=True)
            await self.apply_report(host, gone)

    # --- reports -----------------------------------------------------------------------

    def on_heartbeat(self, host: str, heartbeat: AgentHeartbeat) -> None:
        if heartbeat.host == host:
            self.heard[host] = time.monotonic()

    async def on_report(self, host: str, report: AttemptReport) -> None:
        if report.host == host:
            self.heard[host] = time.monotonic()
        if self._applied.get(_key(host, report)) == _signature(report):
            return  # nothing new since the last one we recorded (or rejected)
        with task_context(report):
            task = asyncio.create_task(self._apply_quietly(host, report))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _apply_quietly(self, host: str, report: AttemptReport) -> None:
        try:
            await self.apply_report(host, report)
        except Exception as e:  # the agent repeats its report on the next tick
            log.warning("could not record the report of %s from %s: %r", report.container, host, e)

    async def apply_report(self, host: str, report: AttemptReport) -> domain.Decision:
        """Record what ``report`` adds to its task's events (or reject it)."""
        aggregate = task_aggregate_id(report.submission_id, report.task_id)
        async with self._locks[aggregate]:
            decided: list[domain.Decision] = []

            def decide(recorded: list[Recorded]) -> list[TaskEvent]:
                decided.append(domain.decide_report(task_events(recorded), report, host, _now()))
                return [] if decided[-1].rejected else list(decided[-1].events)

            await change(self.publisher, "task", aggregate, decide, tries=CONFLICT_TRIES)
            decision = decided[-1]
            if decision.rejected:
                self._applied[_key(host, report)] = _signature(report)
                self.rejected.append(decision.rejected)
                log.warning("rejected a report from %s: %s", host, decision.rejected)
                return decision
            self._track(host, report, decision)
            if decision.stop_container:
                await self._stop_stray(host, report)
            return decision

    def _track(self, host: str, report: AttemptReport, decision: domain.Decision) -> None:
        self._applied[_key(host, report)] = _signature(report)
        if len(self._applied) > 10_000:
            self._applied.clear()
        if decision.watching:
            self.watch.setdefault(
                report.container, Watch(host, report.submission_id, report.task_id, report.attempt, time.monotonic())
            )
        else:
            self.watch.pop(report.container, None)

    async def _stop_stray(self, host: str, report: AttemptReport) -> None:
        command = TerminateTask(submission_id=report.submission_id, task_id=report.task_id,
                                attempt=report.attempt, reason="attempt is no longer live")
        try:
            await self.agents.send(host, command)
        except UnavailableError as e:
            log.warning("could not stop stray %s on %s: %s", report.container, host, e)

    # --- silence -----------------------------------------------------------------------

    def _reconnects(self) -> int:
        return int(getattr(self.nc, "stats", {}).get("reconnects", 0))

    async def _sweep(self, stop: asyncio.Event) -> None:
        interval = self.settings.sweep_interval_s
        last, reconnects = time.monotonic(), self._reconnects()
        while not stop.is_set():
            await asyncio.sleep(interval)
            now = time.monotonic()
            late, last = now - last - interval, now
            if late > max(1.0, interval) or self._reconnects() != reconnects:
                log.warning("not listening for %.1fs (paused, starved or reconnecting): agents' silence "
                            "counts from now", max(late, 0.0))
                self.listening_since, reconnects = now, self._reconnects()
            if not self.nc.is_connected:
                continue  # deaf now: whatever the agents say is not reaching us
            for name, w in list(self.watch.items()):
                silent = now - max(self.heard.get(w.host, 0.0), w.since, self.listening_since)
                if silent <= self.settings.agent_timeout_s:
                    continue
                reason = f"agent {w.host} silent for {silent:.0f}s"
                try:
                    await self._fail(w.submission_id, w.task_id, w.attempt, reason, "silent")
                except Exception as e:
                    log.warning("could not fail %s after silence: %r", name, e)
                    continue
                self.watch.pop(name, None)

    # --- helpers -----------------------------------------------------------------------

    async def _history(self, submission_id: str, task_id: str) -> list[TaskEvent]:
        return task_events(await self.publisher.load_task(submission_id, task_id))

    async def _fail(self, submission_id: str, task_id: str, attempt: int, reason: str, key: str) -> None:
        """Fail a live attempt for an infrastructure reason (nothing when it is not live)."""
        aggregate = task_aggregate_id(submission_id, task_id)

        def decide(recorded: list[Recorded]) -> list[TaskEvent]:
            failed = domain.decide_failure(task_events(recorded), submission_id, task_id, attempt, reason, key, _now())
            return [] if failed is None else [failed]

        async with self._locks[aggregate]:
            changed = await change(self.publisher, "task", aggregate, decide, tries=CONFLICT_TRIES)
        if changed.appended:
            log.warning("attempt %d of %s/%s failed: %s", attempt, submission_id, task_id, reason)
