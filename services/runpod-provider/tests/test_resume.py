"""A provider that (re)starts: which pods it adopts, the launch it rebuilds, how long it holds a
launch that cannot start. Pure decisions, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from touchstone.runpod_provider import domain, resume
from touchstone.shared import events as ev
from touchstone.shared.commands import LaunchTask
from touchstone.shared.lifecycle import TaskStatus, fold_task

NOW = datetime(2026, 12, 4, 12, tzinfo=UTC)
SPEC = ev.TaskSpec(git_url="/src", trainer_ref="v1")
COMMON = {"aggregate_id": "s1-pi-60", "correlation_id": "s1", "submission_id": "s1", "task_id": "pi-60"}


def history(*steps: str, attempt: int = 1) -> list[ev.TaskEvent]:
    """The task's events up to the given steps of ``attempt`` (attempts before it failed)."""
    events: list[ev.TaskEvent] = [ev.TaskQueued(**COMMON, spec=SPEC, prediction_interval=60, platform="runpod",
                                                occurred_at=NOW)]
    for n in range(1, attempt + 1):
        at = NOW + timedelta(minutes=10 * n)
        events.append(ev.TaskAssigned(**COMMON, attempt=n, platform="runpod", placement="NVIDIA A40",
                                      gpu_type="NVIDIA A40", occurred_at=at))
        if n < attempt:
            events += [ev.TaskFailed(**COMMON, attempt=n, reason="x", occurred_at=at),
                       ev.TaskRetried(**COMMON, attempt=n + 1, not_before=at, occurred_at=at)]
            continue
        made = {"ContainerLaunched": ev.ContainerLaunched(**COMMON, attempt=n, container_name="c",
                                                          occurred_at=at + timedelta(seconds=1)),
                "ContainerReady": ev.ContainerReady(**COMMON, attempt=n, occurred_at=at + timedelta(seconds=2)),
                "TrainingStarted": ev.TrainingStarted(**COMMON, attempt=n, occurred_at=at + timedelta(seconds=3))}
        events += [made[s] for s in steps]
    return events


@pytest.mark.parametrize(
    ("steps", "adopt"),
    [
        ((), False),  # assigned: its launch command brings it back
        (("ContainerLaunched",), True),
        (("ContainerLaunched", "ContainerReady"), True),
        (("ContainerLaunched", "ContainerReady", "TrainingStarted"), True),
    ],
)
def test_only_attempts_live_past_their_launch_are_adopted(steps: tuple[str, ...], adopt: bool) -> None:
    state = fold_task(history(*steps), NOW)
    assert resume.resumable(state, 1) is adopt
    assert not resume.resumable(state, 2)  # another attempt's pod


def test_finished_cancelled_or_onprem_attempts_are_not_adopted() -> None:
    running = history("ContainerLaunched", "ContainerReady", "TrainingStarted")
    done = [*running, ev.TrainingFinished(**COMMON, attempt=1)]
    cancelled = [*running, ev.TaskCancelled(**COMMON)]
    assert fold_task(done, NOW).status is TaskStatus.SUCCEEDED  # type: ignore[union-attr]
    assert not resume.resumable(fold_task(done, NOW), 1)
    assert not resume.resumable(fold_task(cancelled, NOW), 1)
    onprem = [history()[0], ev.TaskAssigned(**COMMON, attempt=1, platform="onprem", placement="h/0"),
              ev.ContainerLaunched(**COMMON, attempt=1, container_name="c")]
    assert not resume.resumable(fold_task(onprem, NOW), 1)


def test_the_launch_is_rebuilt_as_the_scheduler_sent_it() -> None:
    events = history("ContainerLaunched", "ContainerReady", "TrainingStarted", attempt=2)
    found = resume.launch_from_history(events, 2)

    assert found is not None
    assigned = [e for e in events if isinstance(e, ev.TaskAssigned)][-1]
    assert found.command == LaunchTask(
        command_id=ev.derived_id(assigned.event_id, "launch"), submission_id="s1", task_id="pi-60", attempt=2,
        kind="training", spec=SPEC, prediction_interval=60, placement="NVIDIA A40", gpu_type="NVIDIA A40",
    )
    assert found.launched_at == NOW + timedelta(minutes=20, seconds=1)
    assert found.running_since == NOW + timedelta(minutes=20, seconds=3)
    assert resume.launch_from_history(events, 3) is None
    assert resume.launch_from_history(events[1:], 2) is None  # no TaskQueued


def test_a_launch_is_held_for_what_is_left_of_the_hold_since_its_assignment() -> None:
    assert domain.hold_left(NOW, NOW + timedelta(seconds=20), 60.0) == 40.0
    assert domain.hold_left(NOW, NOW + timedelta(seconds=90), 60.0) == 0.0
    assert domain.hold_left(None, NOW, 60.0) == 60.0  # past its assignment: a redelivery


def test_a_deferral_keeps_the_attempt_and_is_one_event_per_launch() -> None:
    command = LaunchTask(command_id="launch-1", submission_id="s1", task_id="pi-60", attempt=2, spec=SPEC,
                         prediction_interval=60, placement="NVIDIA A40")
    first = domain.launch_deferred(command, "no stock", NOW, 10.0, NOW)
    again = domain.launch_deferred(command, "no stock", NOW + timedelta(seconds=5), 10.0, NOW)

    assert first.attempt == 2 and first.not_before == NOW + timedelta(seconds=10)
    assert first.event_id == again.event_id  # a repeat of the same hand-back is the same event
    other = domain.launch_deferred(command.model_copy(update={"command_id": "launch-2"}), "x", NOW, 10.0, NOW)
    assert other.event_id != first.event_id  # the next assignment's hand-back is a new one
    later = domain.launch_deferred(command, "x", NOW, 10.0, NOW + timedelta(seconds=30))
    assert later.event_id != first.event_id  # a stale launch answering a later assignment, too
