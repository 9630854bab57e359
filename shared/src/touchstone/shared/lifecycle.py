"""The submission and task lifecycles: pure state machines with explicit transition tables.

No I/O and no clock reads: ``now`` is passed in. ``transition`` is the one choke point; it
raises ``IllegalTransition`` for any (state, event) pair that is not in the table.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from touchstone.shared import events as ev
from touchstone.shared.errors import IllegalTransition

# --- submission ---------------------------------------------------------------------------


class SubmissionStatus(StrEnum):
    VALIDATING = "VALIDATING"
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"
    SCHEDULED = "SCHEDULED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    ERROR = "ERROR"
    CANCELLED = "CANCELLED"
    RETRACTED = "RETRACTED"


S = SubmissionStatus

# (state, event type) -> next state. SubmissionValidated is split by its verdict.
SUBMISSION_TRANSITIONS: dict[tuple[SubmissionStatus | None, str], SubmissionStatus] = {
    (None, "SubmissionCreated"): S.VALIDATING,
    (S.VALIDATING, "SubmissionValidated:passed"): S.ACCEPTED,
    (S.VALIDATING, "SubmissionValidated:failed"): S.REJECTED,
    (S.VALIDATING, "SubmissionFailed"): S.ERROR,
    (S.VALIDATING, "SubmissionCancelRequested"): S.VALIDATING,
    (S.VALIDATING, "SubmissionCancelled"): S.CANCELLED,
    (S.ACCEPTED, "SubmissionScheduled"): S.SCHEDULED,
    (S.SCHEDULED, "SubmissionStarted"): S.RUNNING,
    (S.SCHEDULED, "SubmissionCompleted"): S.COMPLETED,
    (S.SCHEDULED, "SubmissionFailed"): S.ERROR,
    (S.SCHEDULED, "SubmissionCancelRequested"): S.SCHEDULED,
    (S.SCHEDULED, "SubmissionCancelled"): S.CANCELLED,
    (S.RUNNING, "SubmissionCompleted"): S.COMPLETED,
    (S.RUNNING, "SubmissionFailed"): S.ERROR,
    (S.RUNNING, "SubmissionCancelRequested"): S.RUNNING,
    (S.RUNNING, "SubmissionCancelled"): S.CANCELLED,
    # any state without live tasks may be retracted by its owner
    (S.ACCEPTED, "SubmissionRetracted"): S.RETRACTED,
    (S.REJECTED, "SubmissionRetracted"): S.RETRACTED,
    (S.COMPLETED, "SubmissionRetracted"): S.RETRACTED,
    (S.ERROR, "SubmissionRetracted"): S.RETRACTED,
    (S.CANCELLED, "SubmissionRetracted"): S.RETRACTED,
}

SUBMISSION_LIVE = frozenset({S.VALIDATING, S.SCHEDULED, S.RUNNING})
SUBMISSION_FINAL = frozenset({S.REJECTED, S.COMPLETED, S.ERROR, S.CANCELLED, S.RETRACTED})


def _submission_key(event: ev.SubmissionEvent) -> str:
    if isinstance(event, ev.SubmissionValidated):
        return f"SubmissionValidated:{'passed' if event.passed else 'failed'}"
    return event.event_type


def submission_transition(
    state: SubmissionStatus | None, event: ev.SubmissionEvent
) -> SubmissionStatus:
    """The submission's next status, or ``IllegalTransition``."""
    target = SUBMISSION_TRANSITIONS.get((state, _submission_key(event)))
    if target is None:
        raise IllegalTransition("submission", state, event.event_type)
    return target


# --- task ---------------------------------------------------------------------------------


class TaskStatus(StrEnum):
    QUEUED = "QUEUED"
    ASSIGNED = "ASSIGNED"
    PROVISIONING = "PROVISIONING"
    PREPARING = "PREPARING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    ERROR = "ERROR"
    CANCELLED = "CANCELLED"


T = TaskStatus

TASK_LIVE = frozenset({T.ASSIGNED, T.PROVISIONING, T.PREPARING, T.RUNNING})
TASK_FINAL = frozenset({T.SUCCEEDED, T.ERROR, T.CANCELLED})
TASK_UNFINISHED = frozenset(TaskStatus) - TASK_FINAL

TASK_TRANSITIONS: dict[tuple[TaskStatus | None, str], TaskStatus] = {
    (None, "TaskQueued"): T.QUEUED,
    (T.QUEUED, "TaskAssigned"): T.ASSIGNED,
    (T.ASSIGNED, "ContainerLaunched"): T.PROVISIONING,
    (T.PROVISIONING, "ContainerReady"): T.PREPARING,
    (T.PREPARING, "TrainingStarted"): T.RUNNING,
    (T.RUNNING, "TrainingFinished"): T.SUCCEEDED,
    (T.FAILED, "TaskRetried"): T.QUEUED,
    # a launch the platform cannot start yet goes back to the queue with the same attempt
    (T.ASSIGNED, "LaunchDeferred"): T.QUEUED,
    (T.FAILED, "TaskErrored"): T.ERROR,
    (T.QUEUED, "TaskErrored"): T.ERROR,
    **{(s, "TaskFailed"): T.FAILED for s in TASK_LIVE},
    **{(s, "TaskCancelled"): T.CANCELLED for s in TASK_UNFINISHED},
    # a container may be reported gone in any state; the status does not move
    **{(s, "ContainerTerminated"): s for s in TaskStatus},
    # so may published results, even after a retry has started
    **{(s, "ResultsPublished"): s for s in TaskStatus},
}

RETRYABLE_FAILURES = frozenset({"infrastructure", "trainer"})


@dataclass(frozen=True)
class RetryPolicy:
    """At most ``max_attempts`` attempts; the n-th retry waits ``base_delay_s * factor**(n-1)``."""

    max_attempts: int = 3
    base_delay_s: float = 5.0
    factor: float = 4.0

    def delay(self, failed_attempt: int) -> timedelta:
        return timedelta(seconds=self.base_delay_s * self.factor ** (failed_attempt - 1))


@dataclass(frozen=True)
class TaskState:
    """What the lifecycle needs to know about one task, folded from its events."""

    submission_id: str
    task_id: str
    status: TaskStatus
    attempt: int = 1
    max_attempts: int = 3
    kind: str = "training"
    platform: str = "any"
    placement: str | None = None
    not_before: datetime | None = None
    last_error: str | None = None
    last_failure_class: str | None = None
    phase_since: datetime | None = None


@dataclass(frozen=True)
class Transition:
    state: TaskState
    follow_ups: tuple[ev.TaskEvent, ...] = ()


def _check_attempt(state: TaskState, event: ev.TaskEvent) -> None:
    attempt = getattr(event, "attempt", None)
    if attempt is None or isinstance(event, (ev.TaskRetried, ev.ContainerTerminated, ev.ResultsPublished)):
        return
    if attempt != state.attempt:
        raise IllegalTransition(
            "task", f"{state.status} (attempt {state.attempt})", f"{event.event_type} of attempt {attempt}"
        )


def task_transition(
    state: TaskState | None,
    event: ev.TaskEvent,
    now: datetime,
    policy: RetryPolicy = RetryPolicy(),
) -> Transition:
    """Apply one event to a task. Returns the new state and the events the lifecycle requires
    next: a failure yields ``TaskRetried`` (attempts left, retryable class) or ``TaskErrored``."""
    current = state.status if state else None
    target = TASK_TRANSITIONS.get((current, event.event_type))
    if target is None:
        raise IllegalTransition("task", current, event.event_type)
    if state is None:
        assert isinstance(event, ev.TaskQueued)
        return Transition(
            TaskState(
                submission_id=event.submission_id,
                task_id=event.task_id,
                status=target,
                attempt=event.attempt,
                max_attempts=min(event.max_attempts, policy.max_attempts),
                kind=event.kind,
                platform=event.platform,
                phase_since=event.occurred_at,
            )
        )
    _check_attempt(state, event)
    moved = target != state.status
    new = replace(state, status=target, phase_since=event.occurred_at if moved else state.phase_since)
    follow_ups: tuple[ev.TaskEvent, ...] = ()
    match event:
        case ev.TaskAssigned():
            new = replace(new, placement=event.placement, platform=event.platform)
        case ev.TaskRetried():
            new = replace(new, attempt=event.attempt, not_before=event.not_before, placement=None)
        case ev.LaunchDeferred():
            new = replace(new, not_before=event.not_before, placement=None)
        case ev.TaskErrored():
            new = replace(new, last_error=event.reason)
        case ev.TaskFailed():
            new = replace(new, last_error=event.reason, last_failure_class=event.failure_class)
            follow_ups = (_after_failure(new, event, now, policy),)
    return Transition(new, follow_ups)


def _after_failure(
    state: TaskState, failed: ev.TaskFailed, now: datetime, policy: RetryPolicy
) -> ev.TaskEvent:
    common = dict(
        aggregate_id=failed.aggregate_id,
        correlation_id=failed.correlation_id,
        causation_id=failed.event_id,
        event_id=ev.derived_id(failed.event_id, "after-failure"),
        occurred_at=now,
        submission_id=state.submission_id,
        task_id=state.task_id,
    )
    if failed.failure_class in RETRYABLE_FAILURES and state.attempt < state.max_attempts:
        return ev.TaskRetried(
            **common, attempt=state.attempt + 1, not_before=now + policy.delay(state.attempt)
        )
    why = "not retryable" if failed.failure_class not in RETRYABLE_FAILURES else (
        f"all {state.max_attempts} attempts failed"
    )
    return ev.TaskErrored(**common, reason=f"{why}; last error: {failed.reason}")


def fold_task(events: Iterable[ev.TaskEvent], now: datetime) -> TaskState | None:
    """The state of a task after all of its events (follow-ups are not applied)."""
    state: TaskState | None = None
    for event in events:
        state = task_transition(state, event, now).state
    return state


# --- roll-up ------------------------------------------------------------------------------


def rollup_submission(
    current: SubmissionStatus, training_tasks: Iterable[TaskStatus]
) -> SubmissionStatus:
    """The status a scheduled submission should have, given its training tasks' statuses."""
    statuses = list(training_tasks)
    if current not in (S.SCHEDULED, S.RUNNING) or not statuses:
        return current
    if all(s in TASK_FINAL for s in statuses):
        if any(s == T.ERROR for s in statuses):
            return S.ERROR
        if any(s == T.CANCELLED for s in statuses):
            return S.CANCELLED
        return S.COMPLETED
    if any(s not in (T.QUEUED,) for s in statuses):
        return S.RUNNING
    return current
