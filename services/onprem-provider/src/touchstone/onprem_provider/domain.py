"""What agent reports mean for a task: pure decisions, no I/O, ``now`` passed in.

``decide_report`` compares an agent's report of one attempt with the task's recorded events
and returns the events still missing (desired minus observed), so a repeated or late report
adds nothing and a lost one is made up by the next. Outcome rules:

| the agent saw                                       | event                                  |
|-----------------------------------------------------|----------------------------------------|
| exit 0                                              | ``TrainingFinished`` (validation: with its report) |
| validation, exit 1, report written with passed=false| ``TrainingFinished`` (exit_code 1, report) |
| any other exit status                               | ``TaskFailed`` (trainer)               |
| provision / prepare / collect failed, process lost  | ``TaskFailed`` (infrastructure)        |
| prepare failed for good (``permanent``: unknown ref, no wheel) | ``TaskFailed`` (permanent: no retry) |
| terminated while the attempt was still live         | ``TaskFailed`` (infrastructure)        |
| container and work directory removed                | ``ContainerTerminated`` (once per attempt) |

A report is rejected when its host is not the one the attempt was assigned to.

A launch the agent refuses only because another container still holds its slot (``held_by``:
an attempt the scheduler already counts as ended, still stopping there) is handed back to the
queue with ``LaunchDeferred`` (``decide_deferral``): nothing of the attempt was started, so the
same attempt is placed again, and no attempt is burned. Any other refusal fails the attempt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from touchstone.shared import events as ev
from touchstone.shared.agents import AttemptOutcome, AttemptReport, stage_index
from touchstone.shared.attempt import judge_exit
from touchstone.shared.commands import LaunchTask, container_name, deferral
from touchstone.shared.lifecycle import TASK_LIVE, TaskState, TaskStatus, fold_task, task_transition
from touchstone.shared.subjects import task_aggregate_id

T = TaskStatus

HELD_SLOT_RETRY_S = 2.0
"""A launch handed back because its slot was held is placed again no sooner than this: time for
the agent's next heartbeat, which names the slots it holds, to reach the scheduler."""


@dataclass(frozen=True)
class Decision:
    events: tuple[ev.TaskEvent, ...] = ()
    rejected: str | None = None
    """Why the report was refused (nothing is recorded then)."""
    stop_container: bool = False
    """The container runs for an attempt that is no longer live: stop it."""
    watching: bool = False
    """The attempt is live on its host: its agent's silence matters."""


@dataclass(frozen=True)
class Verdict:
    finished: bool
    reason: str = ""
    failure_class: ev.FailureClass = "infrastructure"


def assigned_host(history: Sequence[ev.TaskEvent], attempt: int) -> str | None:
    """The on-prem host the attempt was assigned to; none when it was not assigned on-prem."""
    host = None
    for e in history:
        if isinstance(e, ev.TaskAssigned) and e.attempt == attempt:
            host = e.placement.partition("/")[0] if e.platform == "onprem" else None
    return host


def terminated_recorded(history: Sequence[ev.TaskEvent], attempt: int) -> bool:
    return any(isinstance(e, ev.ContainerTerminated) and e.attempt == attempt for e in history)


def live_at(state: TaskState | None, attempt: int) -> bool:
    return state is not None and state.status in TASK_LIVE and state.attempt == attempt


def judge(kind: str, outcome: AttemptOutcome) -> Verdict:
    """Success, or a failure and its class, from how the attempt ended (the exit statuses are
    judged by the one judge of every platform, ``touchstone.shared.attempt.judge_exit``)."""
    if outcome.result == "exited":
        judged = judge_exit(outcome.exit_code, kind, outcome.report, outcome.report_problem)
        return Verdict(judged.succeeded, judged.reason, judged.failure_class)
    if outcome.result == "terminated":
        return Verdict(False, f"container terminated: {outcome.error or 'on request'}")
    if outcome.result == "lost":
        return Verdict(False, f"attempt lost: {outcome.error or 'unknown'}")
    reason = f"{outcome.failed_phase or 'agent'} failed: {outcome.error or 'unknown'}"
    if outcome.failure_class is not None:
        return Verdict(False, reason, outcome.failure_class)
    return Verdict(False, reason, "permanent" if outcome.permanent else "infrastructure")


def trainer_started(outcome: AttemptOutcome) -> bool:
    return outcome.result == "exited" or outcome.failed_phase in ("run", "collect")


def _common(report_or_ids: AttemptReport, name: str, now: datetime) -> dict[str, Any]:
    r = report_or_ids
    return dict(
        event_id=ev.derived_id(r.container, name),
        occurred_at=now,
        aggregate_id=task_aggregate_id(r.submission_id, r.task_id),
        correlation_id=r.submission_id,
        submission_id=r.submission_id,
        task_id=r.task_id,
        attempt=r.attempt,
    )


def decide_report(
    history: Sequence[ev.TaskEvent], report: AttemptReport, from_host: str, now: datetime
) -> Decision:
    """The events that bring the task up to what ``from_host``'s agent reports."""
    if report.host != from_host:
        return Decision(rejected=f"report names host {report.host} but came from {from_host}")
    if report.container != container_name(report.submission_id, report.task_id, report.attempt):
        return Decision(rejected=f"container {report.container} does not match its task and attempt")
    host = assigned_host(history, report.attempt)
    if host is None:
        return Decision(rejected=f"attempt {report.attempt} of {report.container} is not assigned on-prem")
    if host != from_host:
        return Decision(rejected=f"{report.container} is assigned to {host}, not {from_host}")
    state = fold_task(history, now)
    out: list[ev.TaskEvent] = []
    live = live_at(state, report.attempt)
    if live:
        assert state is not None
        out = _progress(state, report, now)
    if report.removed and not terminated_recorded(history, report.attempt):
        common = _common(report, "ContainerTerminated", now)
        out.append(ev.ContainerTerminated(**common, container_name=report.container))
    return Decision(
        events=tuple(out),
        stop_container=not live and not report.removed and report.stage != "ended",
        watching=live and report.stage != "ended",
    )


def _progress(state: TaskState, report: AttemptReport, now: datetime) -> list[ev.TaskEvent]:
    reached = stage_index(report.stage)
    outcome = report.outcome if report.stage == "ended" else None
    if outcome is not None:
        if trainer_started(outcome):
            reached = stage_index("started")
        elif outcome.failed_phase == "provision":
            reached = -1
        else:
            reached = stage_index("ready")
    steps: list[ev.TaskEvent] = []
    status = state.status
    if status == T.ASSIGNED and reached >= stage_index("launched"):
        steps.append(ev.ContainerLaunched(**_common(report, "ContainerLaunched", now), container_name=report.container))
        status = T.PROVISIONING
    if status == T.PROVISIONING and reached >= stage_index("ready"):
        steps.append(ev.ContainerReady(**_common(report, "ContainerReady", now)))
        status = T.PREPARING
    if status == T.PREPARING and reached >= stage_index("started"):
        steps.append(ev.TrainingStarted(**_common(report, "TrainingStarted", now)))
        status = T.RUNNING
    if outcome is not None:
        steps.append(_ending(report, outcome, status, now))
    current: TaskState = state
    for step in steps:  # every step must be a legal transition; IllegalTransition otherwise
        current = task_transition(current, step, now).state
    return steps


def _ending(report: AttemptReport, outcome: AttemptOutcome, status: TaskStatus, now: datetime) -> ev.TaskEvent:
    verdict = judge(report.kind, outcome)
    if verdict.finished and status == T.RUNNING:
        return ev.TrainingFinished(
            **_common(report, "TrainingFinished", now),
            exit_code=outcome.exit_code or 0,
            metrics=outcome.metrics,
            artifacts=outcome.artifacts,
            log_key=outcome.log_key,
            report=outcome.report if report.kind == "validation" else None,
            commit=outcome.commit,
        )
    return ev.TaskFailed(
        **_common(report, "TaskFailed", now),
        reason=verdict.reason or "the attempt ended before training started",
        failure_class=verdict.failure_class,
        log_snippet="\n".join(outcome.log_tail) or None,
        log_key=outcome.log_key,
    )


def decide_failure(
    history: Sequence[ev.TaskEvent],
    submission_id: str,
    task_id: str,
    attempt: int,
    reason: str,
    key: str,
    now: datetime,
) -> ev.TaskFailed | None:
    """An infrastructure failure of a live attempt (agent silent, unreachable or refusing);
    none when the attempt is no longer live."""
    if not live_at(fold_task(history, now), attempt):
        return None
    name = container_name(submission_id, task_id, attempt)
    return ev.TaskFailed(
        event_id=ev.derived_id(name, key),
        occurred_at=now,
        aggregate_id=task_aggregate_id(submission_id, task_id),
        correlation_id=submission_id,
        submission_id=submission_id,
        task_id=task_id,
        attempt=attempt,
        reason=reason,
        failure_class="infrastructure",
    )


def decide_deferral(
    history: Sequence[ev.TaskEvent], command: LaunchTask, reason: str, now: datetime
) -> ev.LaunchDeferred | None:
    """The launch back to the queue (same attempt) when the task still waits, assigned, on the
    placement this launch names; none otherwise (the attempt moved on, or a later assignment
    of it was made: a stale launch hands nothing back)."""
    state = fold_task(history, now)
    assigned = [e for e in history if isinstance(e, ev.TaskAssigned) and e.attempt == command.attempt]
    if (state is None or state.status != T.ASSIGNED or state.attempt != command.attempt or not assigned
            or assigned[-1].placement != command.placement or assigned[-1].platform != "onprem"):
        return None
    return deferral(command, event_id=ev.derived_id(command.container_name, assigned[-1].event_id, "held"),
                    reason=reason, now=now, retry_s=HELD_SLOT_RETRY_S)
