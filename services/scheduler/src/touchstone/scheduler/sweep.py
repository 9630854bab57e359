"""The reconciliation sweep and the view's inputs to placement. Pure: the view and the clock's
reading in, plans and placement inputs out.

The sweep is the safety net under the reactions: it decides again for every unfinished
submission and every task with something owed, sends the launches of live assignments that were
recorded but not sent, and fails the attempts that overran their phase.
Because decisions are level-triggered and their event ids derived from their causes, a sweep
after a clean run finds nothing to do.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping
from datetime import datetime
from itertools import chain

from touchstone.scheduler import policy
from touchstone.scheduler.config import SchedulerSettings
from touchstone.scheduler.domain import LivePlacement, QueuedTask
from touchstone.scheduler.stuck import Deadlines, TaskClock, find_stuck
from touchstone.scheduler.view import SchedulerView, TaskRecord
from touchstone.shared.lifecycle import TaskStatus


def queue_of(
    view: SchedulerView,
    cfg: SchedulerSettings,
    cache: dict[str, tuple[int, QueuedTask]] | None = None,
    platforms: Iterable[str] | None = None,
) -> list[QueuedTask]:
    """The queued tasks placement may consider (not those of a submission being cancelled),
    only those that asked for one of ``platforms`` when given. ``cache`` keeps each task's
    entry until its next event, so large queues cost little."""
    cache = {} if cache is None else cache
    keys = view.queued if platforms is None else chain.from_iterable(view.queued_for.get(p, ()) for p in platforms)
    out = []
    for key in keys:
        task = view.tasks[key]
        sub = view.submissions.get(task.submission_id)
        if task.queued is None or task.state is None or (sub and sub.cancel_request):
            continue
        hit = cache.get(key)
        if hit is None or hit[0] != task.seq:
            q = task.queued
            entry = QueuedTask(
                key=key, submission_id=task.submission_id, attempt=task.attempt, order=task.queue_seq,
                priority=q.priority, platform=q.platform, gpu_type=q.gpu_type,
                needs_gpu=q.kind != "validation" or cfg.validation_needs_gpu,
                not_before=task.state.not_before,
            )
            hit = cache[key] = (task.seq, entry)
        out.append(hit[1])
    if len(cache) > 2 * len(view.queued) + 1000:  # forget tasks that left the queue
        for key in [k for k in cache if k not in view.queued]:
            del cache[key]
    return out


def live_of(view: SchedulerView) -> list[LivePlacement]:
    """Where every live attempt sits."""
    out = []
    for key in view.live:
        task = view.tasks[key]
        if task.assigned is not None:
            out.append(LivePlacement(task.assigned.platform, task.assigned.placement, task.container))
    return out


def clock_of(task: TaskRecord) -> TaskClock:
    assert task.state is not None and task.state.phase_since is not None
    platform = task.assigned.platform if task.assigned else task.state.platform
    return TaskClock(task.key, task.status, task.attempt, task.state.phase_since, task.container, platform)


def sweep_plans(
    view: SchedulerView,
    cfg: SchedulerSettings,
    deadlines: Deadlines,
    now: datetime,
    *,
    last_seen: Mapping[str, datetime],
    watch_since: datetime | None,
    sent: Container[str],
) -> list[policy.Plan]:
    """What the sweep does now; ``sent`` holds the message ids of the commands this scheduler
    has sent (or is sending): every other launch of a live assignment goes again (a send that
    failed through a broker's trouble; the commands stream keeps one copy)."""
    window = cfg.command_resend_window_s
    plans: list[policy.Plan] = resend_plans(view, now, window, sent)
    for sub in list(view.unfinished_submissions()):
        plans += policy.submission_plans(sub, list(view.tasks_of(sub.id)), cfg, now)
    for key in list(view.attention):
        task = view.tasks[key]
        plans += policy.task_plans(task, view.submissions.get(task.submission_id), now, window)
    clocks = [clock_of(view.tasks[k]) for k in view.live]
    for stuck in find_stuck(clocks, deadlines, now, last_seen=last_seen, watch_since=watch_since):
        plans.append(policy.stuck_plan(view.tasks[stuck.key], stuck, now))
    return plans


def resend_plans(view: SchedulerView, now: datetime, window_s: float, sent: Container[str]) -> list[policy.Plan]:
    """Launches to send again, those in ``sent`` excepted: a new leader's predecessor may have
    died between recording an assignment and sending it (a new leader has sent nothing, so its
    first sweep sends every launch in the window), and a send may have failed through a
    broker's trouble (the commands stream's duplicate window drops copies that did arrive)."""
    plans: list[policy.Plan] = []
    for key in view.live:
        task = view.tasks[key]
        assigned = task.assigned
        if task.status != TaskStatus.ASSIGNED or assigned is None:
            continue
        if (now - assigned.occurred_at).total_seconds() <= window_s:
            send = policy.launch(task, assigned)
            if send.msg_id not in sent:
                plans.append((send,))
    return plans
