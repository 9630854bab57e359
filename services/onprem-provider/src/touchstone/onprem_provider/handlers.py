"""The on-prem provider's reactions, in two tables bound to one ``Deps`` at bootstrap:
``COMMANDS`` (its work queue: launch and terminate, forwarded to the agent of the attempt)
and ``REPORTS`` (what the agents say on ``{ns}.agent.*.evt``: heartbeats and attempt reports).

A command is acked once its agent answered. An agent that does not answer gets the command
again (the consumer loop naks with back-off); on the last try a launch fails the attempt
(infrastructure), so the scheduler retries it elsewhere. A launch refused because its slot is
still held by another container goes back to the queue (``LaunchDeferred``, no attempt burned);
any other refusal fails the attempt. Each ``AttemptReport`` is checked
against the task's events (``domain``) and the missing events appended through the one
aggregate writer, one task at a time (a lock per task).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from touchstone.onprem_provider import domain
from touchstone.onprem_provider.adapters import AgentClient
from touchstone.onprem_provider.config import ProviderSettings
from touchstone.shared.agents import AgentHeartbeat, AttemptReport
from touchstone.shared.aggregate import change
from touchstone.shared.commands import LaunchTask, TerminateTask, container_name
from touchstone.shared.consumer import Delivery
from touchstone.shared.errors import UnavailableError
from touchstone.shared.events import TaskEvent
from touchstone.shared.logs import task_context
from touchstone.shared.objects.keys import attempt_prefix
from touchstone.shared.objects.stores import ObjectStore
from touchstone.shared.publisher import EventPublisher, Recorded, task_events
from touchstone.shared.reactions import Reactions
from touchstone.shared.subjects import reporting_host, task_aggregate_id

log = logging.getLogger(__name__)

CONFLICT_TRIES = 5


@dataclass(frozen=True)
class Watch:
    """A live attempt on a host, whose agent must keep talking."""

    host: str
    submission_id: str
    task_id: str
    attempt: int
    since: float


@dataclass
class Deps:
    """What the reactions use, built once by ``OnpremProvider`` (which also sweeps ``watch``
    for silent agents)."""

    settings: ProviderSettings
    publisher: EventPublisher
    agents: AgentClient
    store: ObjectStore
    """Issues each launch's upload grant."""
    heard: dict[str, float] = field(default_factory=dict)
    """When each host last spoke (monotonic)."""
    watch: dict[str, Watch] = field(default_factory=dict)
    """The live attempts by container name."""
    rejected: list[str] = field(default_factory=list)
    """Why each rejected report was rejected."""
    applied: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    """The last report recorded (or rejected) per container, to skip repeats."""
    locks: defaultdict[str, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))
    """One writer per task aggregate in this process."""
    background: set[asyncio.Task[Any]] = field(default_factory=set)
    """Reports being recorded (cancelled when the provider stops)."""


def _now() -> datetime:
    return datetime.now(UTC)


def _key(host: str, report: AttemptReport) -> str:
    return f"{host}/{report.host}/{report.container}"


def _signature(report: AttemptReport) -> tuple[Any, ...]:
    return (report.stage, report.removed, report.outcome is not None)


# --- commands --------------------------------------------------------------------------


async def on_launch_task(command: LaunchTask, deps: Deps, delivery: Delivery) -> None:
    """Forward the launch, with its upload grant, to the host of its placement, when the
    attempt is still live there; a refusal, or no answer on the last try, fails the attempt,
    except a refusal for a slot another container still holds, which hands the task back."""
    host = command.placement.partition("/")[0]
    history = await _history(deps, command.submission_id, command.task_id)
    assigned = domain.assigned_host(history, command.attempt)
    if assigned != host or not domain.live_at(domain.fold_task(history, _now()), command.attempt):
        log.info("not launching %s: attempt not live on %s", command.container_name, host)
        return
    try:
        reply = await deps.agents.send(host, with_grant(deps, command))
    except UnavailableError as e:
        if delivery.num_delivered < deps.settings.max_deliver:
            raise
        await fail_attempt(deps, command.submission_id, command.task_id, command.attempt, str(e), "unreachable")
        return
    if not reply.ok:
        reason = f"agent {host} refused the launch: {reply.error}"
        if reply.held_by:  # its slot is still held (nothing of this attempt started): back to the queue
            await defer_launch(deps, command, reason)
        else:
            await fail_attempt(deps, command.submission_id, command.task_id, command.attempt, reason, "refused")
        return
    deps.watch[command.container_name] = Watch(
        host, command.submission_id, command.task_id, command.attempt, time.monotonic()
    )
    if reply.report is not None:
        await record_report(deps, host, reply.report)


def with_grant(deps: Deps, command: LaunchTask) -> LaunchTask:
    """The launch with write access to its attempt's prefix in the object store: the agent
    holds no store credentials, and its grant reaches nothing but this attempt."""
    prefix = attempt_prefix(command.submission_id, command.task_id, command.attempt)
    grant = deps.store.grant(prefix, deps.settings.upload_max_bytes, deps.settings.upload_grant_ttl_s, _now())
    return command.model_copy(update={"upload": grant})


async def on_terminate_task(command: TerminateTask, deps: Deps, delivery: Delivery) -> None:
    """Stop the attempt on the host it was assigned to; an agent without the container
    means it is gone, recorded as removed."""
    history = await _history(deps, command.submission_id, command.task_id)
    host = domain.assigned_host(history, command.attempt)
    if host is None:
        log.info("terminate of %s/%s attempt %d: not placed on-prem", command.submission_id,
                 command.task_id, command.attempt)
        return
    reply = await deps.agents.send(host, command)
    name = container_name(command.submission_id, command.task_id, command.attempt)
    deps.watch.pop(name, None)
    if reply.report is not None:
        await record_report(deps, host, reply.report)
    elif reply.ok:  # the agent has no such container: it is gone
        gone = AttemptReport(host=host, container=name, submission_id=command.submission_id,
                             task_id=command.task_id, attempt=command.attempt, stage="ended", removed=True)
        await record_report(deps, host, gone)


# --- reports ---------------------------------------------------------------------------


async def on_agent_heartbeat(heartbeat: AgentHeartbeat, deps: Deps, delivery: Delivery) -> None:
    """The host is alive (when the heartbeat names the host whose subject it came on)."""
    host = reporting_host(delivery.subject)
    if heartbeat.host == host:
        deps.heard[host] = time.monotonic()


async def on_attempt_report(report: AttemptReport, deps: Deps, delivery: Delivery) -> None:
    """Record what the report adds, in the background (agents repeat their reports on every
    heartbeat, so one already recorded or rejected is skipped)."""
    host = reporting_host(delivery.subject)
    if report.host == host:
        deps.heard[host] = time.monotonic()
    if deps.applied.get(_key(host, report)) == _signature(report):
        return  # nothing new since the last one we recorded (or rejected)
    with task_context(report):
        task = asyncio.create_task(_record_quietly(deps, host, report))
    deps.background.add(task)
    task.add_done_callback(deps.background.discard)


COMMANDS = Reactions[Deps]({LaunchTask: on_launch_task, TerminateTask: on_terminate_task})
REPORTS = Reactions[Deps]({AgentHeartbeat: on_agent_heartbeat, AttemptReport: on_attempt_report})


# --- recording -------------------------------------------------------------------------


async def _record_quietly(deps: Deps, host: str, report: AttemptReport) -> None:
    try:
        await record_report(deps, host, report)
    except Exception as e:  # the agent repeats its report on the next tick
        log.warning("could not record the report of %s from %s: %r", report.container, host, e)


async def record_report(deps: Deps, host: str, report: AttemptReport) -> domain.Decision:
    """Record what ``report`` adds to its task's events (or reject it)."""
    aggregate = task_aggregate_id(report.submission_id, report.task_id)
    async with deps.locks[aggregate]:
        decided: list[domain.Decision] = []

        def decide(recorded: list[Recorded]) -> list[TaskEvent]:
            decided.append(domain.decide_report(task_events(recorded), report, host, _now()))
            return [] if decided[-1].rejected else list(decided[-1].events)

        await change(deps.publisher, "task", aggregate, decide, tries=CONFLICT_TRIES)
        decision = decided[-1]
        if decision.rejected:
            deps.applied[_key(host, report)] = _signature(report)
            deps.rejected.append(decision.rejected)
            log.warning("rejected a report from %s: %s", host, decision.rejected)
            return decision
        _track(deps, host, report, decision)
        if decision.stop_container:
            await _stop_stray(deps, host, report)
        return decision


def _track(deps: Deps, host: str, report: AttemptReport, decision: domain.Decision) -> None:
    deps.applied[_key(host, report)] = _signature(report)
    if len(deps.applied) > 10_000:
        deps.applied.clear()
    if decision.watching:
        deps.watch.setdefault(
            report.container, Watch(host, report.submission_id, report.task_id, report.attempt, time.monotonic())
        )
    else:
        deps.watch.pop(report.container, None)


async def _stop_stray(deps: Deps, host: str, report: AttemptReport) -> None:
    command = TerminateTask(submission_id=report.submission_id, task_id=report.task_id,
                            attempt=report.attempt, reason="attempt is no longer live")
    try:
        await deps.agents.send(host, command)
    except UnavailableError as e:
        log.warning("could not stop stray %s on %s: %s", report.container, host, e)


async def _history(deps: Deps, submission_id: str, task_id: str) -> list[TaskEvent]:
    return task_events(await deps.publisher.load_task(submission_id, task_id))


async def defer_launch(deps: Deps, command: LaunchTask, reason: str) -> None:
    """Hand an assigned attempt back to the queue (``LaunchDeferred``; nothing when it moved on)."""
    aggregate = task_aggregate_id(command.submission_id, command.task_id)

    def decide(recorded: list[Recorded]) -> list[TaskEvent]:
        deferred = domain.decide_deferral(task_events(recorded), command, reason, _now())
        return [] if deferred is None else [deferred]

    async with deps.locks[aggregate]:
        changed = await change(deps.publisher, "task", aggregate, decide, tries=CONFLICT_TRIES)
    if changed.appended:
        log.warning("launch of %s handed back to the queue: %s", command.container_name, reason)


async def fail_attempt(deps: Deps, submission_id: str, task_id: str, attempt: int, reason: str, key: str) -> None:
    """Fail a live attempt for an infrastructure reason (nothing when it is not live)."""
    aggregate = task_aggregate_id(submission_id, task_id)

    def decide(recorded: list[Recorded]) -> list[TaskEvent]:
        failed = domain.decide_failure(task_events(recorded), submission_id, task_id, attempt, reason, key, _now())
        return [] if failed is None else [failed]

    async with deps.locks[aggregate]:
        changed = await change(deps.publisher, "task", aggregate, decide, tries=CONFLICT_TRIES)
    if changed.appended:
        log.warning("attempt %d of %s/%s failed: %s", attempt, submission_id, task_id, reason)
