"""``touchstone debug step <container-name>``: what the scheduler would decide for one task,
and why, without touching any other (the seed's ``_DEBUG_TASK_CONTAINER``).

``debug_step`` rebuilds the view from the stream, reads the system settings, listens to agent
heartbeats until every declared server has reported (``listen_s`` at most), then explains the
one decision. With ``apply=True`` it also carries
that decision out (with the same optimistic concurrency as the scheduler, so it cannot
double-assign even while a scheduler runs).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime

from touchstone.scheduler import policy
from touchstone.scheduler.adapters import listen_to_agents
from touchstone.scheduler.config import SchedulerSettings
from touchstone.scheduler.domain import decide, fair_order, foreign, online
from touchstone.scheduler.liveness import listen_to_providers
from touchstone.scheduler.service import Scheduler
from touchstone.scheduler.stuck import PHASE_RULES, overdue
from touchstone.scheduler.sweep import clock_of
from touchstone.scheduler.view import TaskRecord
from touchstone.shared.commands import CONTAINER_PREFIX
from touchstone.shared.jetstream import connect_with, system_bucket
from touchstone.shared.lifecycle import TASK_FINAL, TaskStatus
from touchstone.shared.subjects import Subjects
from touchstone.shared.system import read_system


def debug_step(
    container_name: str, settings: SchedulerSettings | None = None, *, listen_s: float = 6.0, apply: bool = False
) -> str:
    """Explain (and with ``apply`` carry out) the scheduler's decision for one task."""
    return asyncio.run(explain_container(container_name, settings or SchedulerSettings(), listen_s=listen_s,
                                         apply=apply))


async def explain_container(
    container_name: str, settings: SchedulerSettings, *, listen_s: float = 6.0, apply: bool = False
) -> str:
    nc = await connect_with(settings, "touchstone-debug", reconnect=False)
    try:
        js = nc.jetstream()
        subjects = Subjects(settings.namespace)
        scheduler = Scheduler(settings.model_copy(update={"leader_election": False}), nc, js, subjects)
        stop = asyncio.Event()
        feed = asyncio.create_task(scheduler.feed.run(stop))
        agents = await listen_to_agents(nc, subjects, scheduler.on_heartbeat)
        providers = await listen_to_providers(nc, subjects, scheduler.on_live_attempts)
        try:
            await asyncio.wait_for(scheduler.feed.caught_up.wait(), timeout=60)
            scheduler.system, _ = await read_system(await system_bucket(js, subjects))
            await _hear_from_servers(scheduler, listen_s)
            lines, plans = decide_one(scheduler, container_name)
            if apply and plans:
                results = await scheduler.execute(plans)
                lines.append("applied." if all(results) else "not applied: another writer moved the task first")
            elif plans:
                lines.append("(dry run: pass apply=True to carry it out)")
            return "\n".join(lines)
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await agents.unsubscribe()
            with contextlib.suppress(Exception):
                await providers.unsubscribe()
            await asyncio.wait_for(feed, 5)
    finally:
        await nc.close()


async def _hear_from_servers(scheduler: Scheduler, listen_s: float) -> None:
    """Listen to heartbeats until every declared server has reported, at most ``listen_s``."""
    declared = {s.name for s in scheduler.system.servers if s.num_slots > 0}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + listen_s
    while not declared <= scheduler.hosts.keys() and loop.time() < deadline:
        await asyncio.sleep(0.05)


def decide_one(scheduler: Scheduler, container_name: str) -> tuple[list[str], list[policy.Plan]]:
    """The explanation and the plans for one task, from the scheduler's current knowledge."""
    now = scheduler.clock()
    found = scheduler.view.find_container(container_name)
    if found is None:
        hint = "" if container_name.startswith(CONTAINER_PREFIX) else f" (names start with {CONTAINER_PREFIX!r})"
        return [f"{container_name}: no task of this namespace has that container name{hint}"], []
    task, attempt = found
    assert task.state is not None
    head = f"task {task.key} ({task.queued.kind if task.queued else '?'}): {task.status}, attempt {task.attempt}"
    lines = [head]
    if attempt != task.attempt:
        lines.append(f"{container_name} is attempt {attempt}; the task has moved on to attempt {task.attempt}")
    sub = scheduler.view.submissions.get(task.submission_id)
    plans = policy.task_plans(task, sub, now, scheduler.cfg.command_resend_window_s)
    if task.status == TaskStatus.QUEUED:
        more_lines, more = _queued(scheduler, task, now)
        lines += more_lines
        plans += more
    elif task.status in PHASE_RULES:
        more_lines, more = _live(scheduler, task, now)
        lines += more_lines
        plans += more
    elif task.status == TaskStatus.FAILED:
        for follow_up in task.follow_ups:
            lines.append(f"failed ({task.state.last_failure_class}): {task.state.last_error}")
            lines.append(f"decision: append {follow_up.event_type}" + _follow_up_detail(follow_up))
    elif task.status in TASK_FINAL:
        lines.append(f"finished ({task.status}); nothing to decide" + (
            f": {task.state.last_error}" if task.state.last_error else ""))
    for attempt_no, owed in sorted(task.owed_terminates.items()):
        lines.append(f"decision: stop the container of attempt {attempt_no} ({owed.reason})")
    return lines, plans


def _follow_up_detail(event: object) -> str:
    not_before = getattr(event, "not_before", None)
    attempt = getattr(event, "attempt", None)
    if isinstance(not_before, datetime):
        return f": attempt {attempt}, not before {not_before.isoformat()}"
    return f": {getattr(event, 'reason', '')}"


def _queued(scheduler: Scheduler, task: TaskRecord, now: datetime) -> tuple[list[str], list[policy.Plan]]:
    assert task.state is not None and task.queued is not None
    sub = scheduler.view.submissions.get(task.submission_id)
    if sub is not None and sub.cancel_request is not None:
        return ["its submission is being cancelled: it will be cancelled, never placed"], []
    if scheduler.system.scheduler_paused:
        return ["the scheduler is paused (system settings): nothing is placed"], []
    if task.state.not_before and task.state.not_before > now:
        wait = (task.state.not_before - now).total_seconds()
        return [f"waiting out its retry back-off: {wait:.0f}s more (until {task.state.not_before.isoformat()})"], []
    lines = [f"wants platform {task.queued.platform}, priority {task.queued.priority}"]
    lines += _capacity_lines(scheduler, now)
    queue = scheduler.queue()
    chosen = decide(queue, scheduler.capacity(now), now, runpod_default_gpu_type=scheduler.cfg.runpod_default_gpu_type)
    mine = [a for a in chosen if a.key == task.key]
    if mine:
        (a,) = mine
        lines.append(f"decision: assign attempt {a.attempt} to {a.platform} {a.placement}")
        return lines, [policy.assignment_plan(task, a, now)]
    ahead = next((i for i, t in enumerate(fair_order(queue, now)) if t.key == task.key), len(queue))
    lines.append(f"decision: keep waiting: {ahead} task(s) go before it and {len(chosen)} place(s) are free now")
    return lines, []


def _capacity_lines(scheduler: Scheduler, now: datetime) -> list[str]:
    lines = []
    for server in scheduler.system.servers:
        report = scheduler.hosts.get(server.name)
        if server.num_slots == 0:
            state = "paused (num_slots 0)"
        elif report is None:
            state = "never heard from: gets nothing"
        elif foreign(report, scheduler.cfg.namespace):
            state = f"serves namespace {report.heartbeat.namespace}, not this one: gets nothing"
        elif not online(report, now, scheduler.cfg.heartbeat_timeout_s):
            state = f"offline (last heartbeat {(now - report.received_at).total_seconds():.0f}s ago)"
        else:
            state = f"online, agent reports {report.heartbeat.slots_free}/{report.heartbeat.slots_total} free"
        lines.append(f"  server {server.name}: {state}")
    runpod_live = sum(1 for p in scheduler.live_placements() if p.platform == "runpod")
    cap = scheduler.system.runpod_max_running_tasks
    lines.append(f"  runpod: {runpod_live}/{cap} running" + (" (paused: cap 0)" if cap == 0 else ""))
    return lines


def _live(scheduler: Scheduler, task: TaskRecord, now: datetime) -> tuple[list[str], list[policy.Plan]]:
    assert task.state is not None and task.state.phase_since is not None
    clock = clock_of(task)
    seen = scheduler.last_seen.get(task.container)
    rule = PHASE_RULES[task.status]
    limit = rule.limit(scheduler.deadlines)
    lines = [f"on {task.assigned.platform if task.assigned else '?'} {task.state.placement or ''}, "
             f"phase '{rule.phase}' since {task.state.phase_since.isoformat()} (limit {limit:.0f}s)"]
    if rule.heartbeat:
        lines.append(f"last heartbeat naming {task.container}: " + (
            f"{(now - seen).total_seconds():.0f}s ago" if seen else "none since this process started"))
    verdict = overdue(clock, scheduler.deadlines, now, last_seen=seen, watch_since=scheduler.watch_since)
    if verdict is None:
        lines.append("decision: nothing; within its deadline")
        return lines, []
    lines.append(f"decision: {verdict.reason}: fail it as an infrastructure failure and stop its container")
    return lines, [policy.stuck_plan(task, verdict, now)]
