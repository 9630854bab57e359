"""Every (state, event) pair of both lifecycles: allowed pairs move as the table says,
every other pair raises IllegalTransition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from touchstone.shared import events as ev
from touchstone.shared.errors import IllegalTransition
from touchstone.shared.lifecycle import (
    SUBMISSION_TRANSITIONS,
    TASK_TRANSITIONS,
    RetryPolicy,
    SubmissionStatus,
    TaskState,
    TaskStatus,
    rollup_submission,
    submission_transition,
    task_transition,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SID, TID = "s-abc", "pi-60"
AGG = f"{SID}-{TID}"
SPEC = ev.TaskSpec(git_url="https://example.com/fs.git")


def submission_events() -> dict[str, ev.SubmissionEvent]:
    common = {"aggregate_id": SID, "correlation_id": SID}
    return {
        "SubmissionCreated": ev.SubmissionCreated(**common, owner="a", name="n", git_url="https://x/y.git"),
        "SubmissionValidated:passed": ev.SubmissionValidated(**common, passed=True),
        "SubmissionValidated:failed": ev.SubmissionValidated(**common, passed=False),
        "SubmissionScheduled": ev.SubmissionScheduled(
            **common, schedule=ev.Schedule(prediction_intervals=(15,))
        ),
        "SubmissionStarted": ev.SubmissionStarted(**common),
        "SubmissionCompleted": ev.SubmissionCompleted(**common),
        "SubmissionFailed": ev.SubmissionFailed(**common, reason="r"),
        "SubmissionCancelRequested": ev.SubmissionCancelRequested(**common),
        "SubmissionCancelled": ev.SubmissionCancelled(**common),
        "SubmissionRetracted": ev.SubmissionRetracted(**common),
    }


def task_events(attempt: int = 1) -> dict[str, ev.TaskEvent]:
    c = {"aggregate_id": AGG, "correlation_id": SID, "submission_id": SID, "task_id": TID}
    return {
        "TaskQueued": ev.TaskQueued(**c, spec=SPEC),
        "TaskAssigned": ev.TaskAssigned(**c, attempt=attempt, platform="onprem", placement="h1/0"),
        "ContainerLaunched": ev.ContainerLaunched(**c, attempt=attempt, container_name="touchstone-x"),
        "ContainerReady": ev.ContainerReady(**c, attempt=attempt),
        "TrainingStarted": ev.TrainingStarted(**c, attempt=attempt),
        "TrainingFinished": ev.TrainingFinished(**c, attempt=attempt),
        "TaskFailed": ev.TaskFailed(**c, attempt=attempt, reason="boom"),
        "TaskRetried": ev.TaskRetried(**c, attempt=attempt + 1, not_before=NOW),
        "LaunchDeferred": ev.LaunchDeferred(**c, attempt=attempt, reason="no stock", not_before=NOW),
        "TaskErrored": ev.TaskErrored(**c, reason="gave up"),
        "TaskCancelled": ev.TaskCancelled(**c),
        "ContainerTerminated": ev.ContainerTerminated(**c, attempt=attempt),
        "ResultsPublished": ev.ResultsPublished(**c, attempt=attempt),
    }


SUBMISSION_STATES = [None, *SubmissionStatus]
TASK_STATES = [None, *TaskStatus]


@pytest.mark.parametrize("state", SUBMISSION_STATES, ids=str)
@pytest.mark.parametrize("key", list(submission_events()))
def test_submission_every_pair(state: SubmissionStatus | None, key: str) -> None:
    event = submission_events()[key]
    expected = SUBMISSION_TRANSITIONS.get((state, key))
    if expected is None:
        with pytest.raises(IllegalTransition):
            submission_transition(state, event)
    else:
        assert submission_transition(state, event) == expected


def _task_state(status: TaskStatus | None) -> TaskState | None:
    if status is None:
        return None
    return TaskState(submission_id=SID, task_id=TID, status=status, attempt=1, max_attempts=3)


@pytest.mark.parametrize("state", TASK_STATES, ids=str)
@pytest.mark.parametrize("key", list(task_events()))
def test_task_every_pair(state: TaskStatus | None, key: str) -> None:
    event = task_events()[key]
    expected = TASK_TRANSITIONS.get((state, key))
    if expected is None:
        with pytest.raises(IllegalTransition):
            task_transition(_task_state(state), event, NOW)
    else:
        assert task_transition(_task_state(state), event, NOW).state.status == expected


def test_a_happy_task_walks_every_phase_in_order() -> None:
    state = None
    for key in ("TaskQueued", "TaskAssigned", "ContainerLaunched", "ContainerReady",
                "TrainingStarted", "TrainingFinished"):
        state = task_transition(state, task_events()[key], NOW).state
    assert state is not None and state.status == TaskStatus.SUCCEEDED
    assert state.placement == "h1/0"


def test_failure_with_attempts_left_asks_for_a_retry_with_growing_backoff() -> None:
    policy = RetryPolicy(max_attempts=3, base_delay_s=5, factor=4)
    running = TaskState(submission_id=SID, task_id=TID, status=TaskStatus.RUNNING, attempt=1)
    first = task_transition(running, task_events(1)["TaskFailed"], NOW, policy)
    assert first.state.status == TaskStatus.FAILED
    (retry,) = first.follow_ups
    assert isinstance(retry, ev.TaskRetried)
    assert retry.attempt == 2 and retry.not_before == NOW + timedelta(seconds=5)

    second = TaskState(submission_id=SID, task_id=TID, status=TaskStatus.RUNNING, attempt=2)
    (retry2,) = task_transition(second, task_events(2)["TaskFailed"], NOW, policy).follow_ups
    assert isinstance(retry2, ev.TaskRetried)
    assert retry2.not_before == NOW + timedelta(seconds=20)


def test_the_last_attempt_failing_errors_the_task() -> None:
    last = TaskState(submission_id=SID, task_id=TID, status=TaskStatus.RUNNING, attempt=3)
    (errored,) = task_transition(last, task_events(3)["TaskFailed"], NOW).follow_ups
    assert isinstance(errored, ev.TaskErrored)
    assert "all 3 attempts failed" in errored.reason and "boom" in errored.reason


def test_a_permanent_failure_is_not_retried() -> None:
    running = TaskState(submission_id=SID, task_id=TID, status=TaskStatus.RUNNING, attempt=1)
    failed = task_events()["TaskFailed"].model_copy(update={"failure_class": "permanent"})
    (errored,) = task_transition(running, failed, NOW).follow_ups
    assert isinstance(errored, ev.TaskErrored)


def test_follow_ups_of_one_failure_have_a_stable_id() -> None:
    running = TaskState(submission_id=SID, task_id=TID, status=TaskStatus.RUNNING, attempt=1)
    failed = task_events()["TaskFailed"]
    a = task_transition(running, failed, NOW).follow_ups[0]
    b = task_transition(running, failed, NOW).follow_ups[0]
    assert a.event_id == b.event_id


def test_events_of_a_stale_attempt_are_refused() -> None:
    second = TaskState(submission_id=SID, task_id=TID, status=TaskStatus.ASSIGNED, attempt=2)
    with pytest.raises(IllegalTransition, match="attempt 1"):
        task_transition(second, task_events(1)["ContainerLaunched"], NOW)


@pytest.mark.parametrize(
    ("current", "tasks", "expected"),
    [
        (SubmissionStatus.SCHEDULED, [TaskStatus.QUEUED, TaskStatus.QUEUED], SubmissionStatus.SCHEDULED),
        (SubmissionStatus.SCHEDULED, [TaskStatus.RUNNING, TaskStatus.QUEUED], SubmissionStatus.RUNNING),
        (SubmissionStatus.RUNNING, [TaskStatus.SUCCEEDED, TaskStatus.SUCCEEDED], SubmissionStatus.COMPLETED),
        (SubmissionStatus.RUNNING, [TaskStatus.SUCCEEDED, TaskStatus.ERROR], SubmissionStatus.ERROR),
        (SubmissionStatus.RUNNING, [TaskStatus.SUCCEEDED, TaskStatus.CANCELLED], SubmissionStatus.CANCELLED),
        (SubmissionStatus.RUNNING, [TaskStatus.SUCCEEDED, TaskStatus.FAILED], SubmissionStatus.RUNNING),
        (SubmissionStatus.ACCEPTED, [TaskStatus.SUCCEEDED], SubmissionStatus.ACCEPTED),
    ],
)
def test_rollup(current: SubmissionStatus, tasks: list[TaskStatus], expected: SubmissionStatus) -> None:
    assert rollup_submission(current, tasks) == expected


def test_a_deferred_launch_goes_back_to_the_queue_on_the_same_attempt() -> None:
    assigned = TaskState(submission_id=SID, task_id=TID, status=TaskStatus.ASSIGNED, attempt=2, placement="gpu")
    later = NOW + timedelta(seconds=30)
    deferred = ev.LaunchDeferred(aggregate_id=AGG, correlation_id=SID, submission_id=SID, task_id=TID,
                                 attempt=2, reason="no stock", not_before=later)
    moved = task_transition(assigned, deferred, NOW)
    assert moved.state.status == TaskStatus.QUEUED and moved.follow_ups == ()
    assert moved.state.attempt == 2 and moved.state.not_before == later and moved.state.placement is None
    stale = deferred.model_copy(update={"attempt": 1})
    with pytest.raises(IllegalTransition):
        task_transition(assigned, stale, NOW)
