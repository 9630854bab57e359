"""What the lifecycle requires next, decided from the view. Pure: no I/O, ``now`` passed in.

Every decision is a list of plans. A plan is the steps for one aggregate, in order: appends
(each with the aggregate sequence the decision was made on) and the commands that follow them.
If an append meets a conflict, the rest of its plan is dropped and the aggregate is reloaded
and decided again. Event ids are derived from their causes, so a decision taken twice (a
redelivery, two replicas) appends once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from touchstone.scheduler.config import SchedulerSettings
from touchstone.scheduler.domain import Assignment
from touchstone.scheduler.stuck import Stuck
from touchstone.scheduler.view import SubmissionRecord, TaskRecord
from touchstone.shared import events as ev
from touchstone.shared.commands import PROVIDER_SERVICE, Command, LaunchTask, TerminateTask
from touchstone.shared.lifecycle import (
    TASK_FINAL,
    SubmissionStatus,
    TaskStatus,
    rollup_submission,
)
from touchstone.shared.subjects import task_aggregate_id

S, T = SubmissionStatus, TaskStatus


@dataclass(frozen=True)
class Append:
    event: ev.Event
    expected_seq: int | None
    """The aggregate's sequence the decision saw; ``None``: right after this plan's last append."""


@dataclass(frozen=True)
class Send:
    service: str
    command: Command
    msg_id: str


Step = Append | Send
Plan = tuple[Step, ...]


# --- submissions --------------------------------------------------------------------------


def submission_plans(
    sub: SubmissionRecord, tasks: list[TaskRecord], cfg: SchedulerSettings, now: datetime
) -> list[Plan]:
    """What a submission needs now: its tasks queued, cancelled or rolled up."""
    if sub.created is None:
        return []
    if sub.status == S.VALIDATING:
        return _validating(sub, next((t for t in tasks if t.task_id == ev.VALIDATION_TASK_ID), None), cfg, now)
    if sub.status in (S.SCHEDULED, S.RUNNING):
        return _scheduled(sub, [t for t in tasks if t.queued and t.queued.kind == "training"], cfg, now)
    return []


def _validating(
    sub: SubmissionRecord, task: TaskRecord | None, cfg: SchedulerSettings, now: datetime
) -> list[Plan]:
    assert sub.created is not None
    if sub.cancel_request is not None:
        if task is not None and task.status not in TASK_FINAL:
            return [cancel_plan(task, sub.cancel_request, now)]
        return [_sub_append(sub, ev.SubmissionCancelled, now, "cancelled")]
    if task is None:
        return [(Append(validation_queued(sub.created, cfg, now), 0),)]
    if task.status == T.SUCCEEDED and task.finished is not None:
        done = task.finished
        report = done.report
        validated = ev.SubmissionValidated(
            **_sub_common(sub, ev.derived_id(done.event_id, "validated"), done.event_id, now),
            passed=report.passed if report is not None else done.exit_code == 0,
            report=report,
            commit=done.commit,
        )
        return [(Append(validated, sub.seq),)]
    if task.status == T.ERROR:
        reason = f"validation failed: {task.state.last_error if task.state else 'unknown error'}"
        return [_sub_append(sub, ev.SubmissionFailed, now, "failed", reason=reason)]
    if task.status == T.CANCELLED:
        return [_sub_append(sub, ev.SubmissionFailed, now, "failed", reason="validation task was cancelled")]
    return []


def _scheduled(
    sub: SubmissionRecord, tasks: list[TaskRecord], cfg: SchedulerSettings, now: datetime
) -> list[Plan]:
    assert sub.scheduled is not None
    if sub.cancel_request is not None:
        request = sub.cancel_request
        unfinished = [cancel_plan(t, request, now) for t in tasks if t.status not in TASK_FINAL]
        return unfinished or [_sub_append(sub, ev.SubmissionCancelled, now, "cancelled")]
    have = {t.task_id for t in tasks}
    intervals = sorted(set(sub.scheduled.schedule.prediction_intervals))
    missing = [i for i in intervals if ev.training_task_id(i) not in have]
    if missing:
        return [(Append(training_queued(sub, i, cfg, now), 0),) for i in missing]
    assert sub.status is not None
    target = rollup_submission(sub.status, [t.status for t in tasks])
    if target == sub.status:
        return []
    if target == S.RUNNING:
        return [_sub_append(sub, ev.SubmissionStarted, now, "started")]
    if target == S.COMPLETED:
        return [_sub_append(sub, ev.SubmissionCompleted, now, "completed")]
    if target == S.CANCELLED:
        return [_sub_append(sub, ev.SubmissionCancelled, now, "cancelled")]
    errored = [t for t in tasks if t.status == T.ERROR]
    first = errored[0] if errored else None
    why = first.state.last_error if first and first.state else None
    reason = f"task {first.task_id if first else '?'} failed: {why or 'unknown error'}"
    return [_sub_append(sub, ev.SubmissionFailed, now, "failed", reason=reason)]


def _sub_common(sub: SubmissionRecord, event_id: str, cause: str | None, now: datetime) -> dict[str, object]:
    return {
        "event_id": event_id,
        "aggregate_id": sub.id,
        "correlation_id": sub.id,
        "causation_id": cause,
        "occurred_at": now,
    }


def _sub_append(
    sub: SubmissionRecord, cls: type[ev.SubmissionEvent], now: datetime, what: str, **fields: object
) -> Plan:
    event = cls(**_sub_common(sub, ev.derived_id(sub.id, what), None, now), **fields)
    return (Append(event, sub.seq),)


def validation_queued(created: ev.SubmissionCreated, cfg: SchedulerSettings, now: datetime) -> ev.TaskQueued:
    sid, tid = created.aggregate_id, ev.VALIDATION_TASK_ID
    return ev.TaskQueued(
        event_id=ev.derived_id(created.event_id, tid),
        aggregate_id=task_aggregate_id(sid, tid),
        correlation_id=sid,
        causation_id=created.event_id,
        occurred_at=now,
        submission_id=sid,
        task_id=tid,
        kind="validation",
        spec=ev.TaskSpec(
            git_url=created.git_url, git_ref=created.git_ref, feature_set_path=created.feature_set_path
        ),
        platform=cfg.validation_platform,
        priority=cfg.validation_priority,
        max_attempts=cfg.max_attempts,
    )


def training_queued(sub: SubmissionRecord, interval: int, cfg: SchedulerSettings, now: datetime) -> ev.TaskQueued:
    assert sub.created is not None and sub.scheduled is not None
    created, scheduled = sub.created, sub.scheduled
    schedule = scheduled.schedule
    tid = ev.training_task_id(interval)
    return ev.TaskQueued(
        event_id=ev.derived_id(scheduled.event_id, tid),
        aggregate_id=task_aggregate_id(sub.id, tid),
        correlation_id=sub.id,
        causation_id=scheduled.event_id,
        occurred_at=now,
        submission_id=sub.id,
        task_id=tid,
        kind="training",
        spec=ev.TaskSpec(
            git_url=created.git_url,
            git_ref=sub.commit or created.git_ref,
            feature_set_path=created.feature_set_path,
            config_file=schedule.config_file,
            trainer_ref=schedule.trainer_ref,
            fetched_data_end_to=schedule.fetched_data_end_to,
            passthrough_args=schedule.passthrough_args,
            run_timeout_s=schedule.run_timeout_s,
        ),
        prediction_interval=interval,
        platform=schedule.platform,
        gpu_type=schedule.gpu_type,
        priority=schedule.priority,
        max_attempts=cfg.max_attempts,
    )


# --- tasks --------------------------------------------------------------------------------


def _task_common(task: TaskRecord, event_id: str, cause: str | None, now: datetime) -> dict[str, object]:
    return {
        "event_id": event_id,
        "aggregate_id": task.key,
        "correlation_id": task.submission_id,
        "causation_id": cause,
        "occurred_at": now,
        "submission_id": task.submission_id,
        "task_id": task.task_id,
    }


def cancel_plan(task: TaskRecord, request: ev.SubmissionCancelRequested, now: datetime) -> Plan:
    """Cancel one unfinished task (the view then owes its container a terminate, if live)."""
    who = f" by {request.requested_by}" if request.requested_by else ""
    cancelled = ev.TaskCancelled(
        **_task_common(task, ev.derived_id(request.event_id, task.key), request.event_id, now),
        reason=f"submission cancelled{who}",
    )
    return (Append(cancelled, task.seq),)


def task_plans(
    task: TaskRecord, sub: SubmissionRecord | None, now: datetime, resend_window_s: float
) -> list[Plan]:
    """A failed task's follow-up (retry or error) and terminates owed to its containers (those
    owed for longer than ``resend_window_s`` are left to the providers' own reapers)."""
    plans: list[Plan] = []
    cancelling = sub is not None and sub.cancel_request is not None
    if task.follow_ups and task.status == T.FAILED and not cancelling:
        steps = [Append(e, task.seq if i == 0 else None) for i, e in enumerate(task.follow_ups)]
        plans.append(tuple(steps))
    for attempt, owed in sorted(task.owed_terminates.items()):
        if (now - owed.since).total_seconds() > resend_window_s:
            continue
        plans.append((terminate(task, attempt, owed.platform, owed.msg_id, owed.reason),))
    return plans


def terminate(task: TaskRecord, attempt: int, platform: str, msg_id: str, reason: str) -> Send:
    command = TerminateTask(
        command_id=msg_id, submission_id=task.submission_id, task_id=task.task_id, attempt=attempt, reason=reason
    )
    return Send(PROVIDER_SERVICE[platform], command, msg_id)


def assignment_plan(task: TaskRecord, placed: Assignment, now: datetime) -> Plan:
    """Record the assignment, then ask the platform's provider to launch it."""
    assigned = ev.TaskAssigned(
        **_task_common(
            task, ev.derived_id(task.queue_event_id, "assigned", placed.placement), task.queue_event_id, now
        ),
        attempt=placed.attempt,
        platform=placed.platform,
        placement=placed.placement,
        gpu_type=placed.gpu_type,
    )
    return (Append(assigned, task.seq), launch(task, assigned))


def launch(task: TaskRecord, assigned: ev.TaskAssigned) -> Send:
    assert task.queued is not None
    msg_id = ev.derived_id(assigned.event_id, "launch")
    command = LaunchTask(
        command_id=msg_id,
        submission_id=task.submission_id,
        task_id=task.task_id,
        attempt=assigned.attempt,
        kind=task.queued.kind,
        spec=task.queued.spec,
        prediction_interval=task.queued.prediction_interval,
        placement=assigned.placement,
        gpu_type=assigned.gpu_type,
    )
    return Send(PROVIDER_SERVICE[assigned.platform], command, msg_id)


def stuck_plan(task: TaskRecord, stuck: Stuck, now: datetime) -> Plan:
    """Fail the overrun attempt as an infrastructure failure, then stop its container."""
    failed = ev.TaskFailed(
        **_task_common(
            task, ev.derived_id(task.key, str(stuck.attempt), "stuck"), None, now
        ),
        attempt=stuck.attempt,
        reason=stuck.reason,
        failure_class="infrastructure",
    )
    platform = task.platforms.get(stuck.attempt)
    if platform is None:
        return (Append(failed, task.seq),)
    stop = terminate(task, stuck.attempt, platform, ev.derived_id(failed.event_id, "terminate"), stuck.reason)
    return (Append(failed, task.seq), stop)
