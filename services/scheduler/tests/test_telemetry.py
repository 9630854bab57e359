"""What each folded event adds to the scheduler's counters: pure, no I/O."""

from __future__ import annotations

from datetime import timedelta

from schedkit import T0, task_event
from touchstone.scheduler.telemetry import Observation, observe
from touchstone.shared import events as ev
from touchstone.shared.lifecycle import TaskState, TaskStatus


def state(status: TaskStatus, since_s: float = 0, **kw: object) -> TaskState:
    return TaskState("s1", "pi-60", status, phase_since=T0 + timedelta(seconds=since_s), **kw)  # type: ignore[arg-type]


def at(cls: type[ev.TaskEvent], seconds: float, **kw: object) -> ev.TaskEvent:
    return task_event(cls, "s1", "pi-60", occurred_at=T0 + timedelta(seconds=seconds), **kw)


def test_a_placement_counts_and_measures_the_wait_from_the_back_off_end() -> None:
    queued = state(TaskStatus.QUEUED, platform="any", not_before=T0 + timedelta(seconds=30))
    assigned = at(ev.TaskAssigned, 100, attempt=2, platform="runpod", placement="RTX 4090")
    assert observe(assigned, queued, None) == [Observation("placement", ("runpod",)),
                                               Observation("wait", ("any",), 70.0)]


def test_each_phase_is_timed_and_the_end_counted_by_result() -> None:
    assert observe(at(ev.ContainerReady, 50, attempt=1), state(TaskStatus.PROVISIONING, 20), "onprem") == [
        Observation("phase", ("onprem", "provisioning"), 30.0)]
    assert observe(at(ev.TrainingFinished, 500, attempt=1), state(TaskStatus.RUNNING, 100), "onprem") == [
        Observation("phase", ("onprem", "running"), 400.0), Observation("attempt", ("onprem", "succeeded", ""))]


def test_a_stuck_failure_counts_as_failed_and_stuck_in_its_phase() -> None:
    failed = at(ev.TaskFailed, 2000, attempt=1, reason="stuck: preparing overran its deadline by 10s",
                failure_class="infrastructure")
    out = observe(failed, state(TaskStatus.PREPARING, 100), "runpod")
    assert Observation("attempt", ("runpod", "failed", "infrastructure")) in out
    assert Observation("stuck", ("runpod", "preparing")) in out
    plain = observe(at(ev.TaskFailed, 2000, attempt=1, reason="trainer exited 1", failure_class="trainer"),
                    state(TaskStatus.RUNNING, 100), "runpod")
    assert not [o for o in plain if o.metric == "stuck"]


def test_a_cancel_counts_only_a_live_attempt_and_nothing_counts_twice_from_a_final_state() -> None:
    assert observe(at(ev.TaskCancelled, 10), state(TaskStatus.QUEUED), None) == []
    assert Observation("attempt", ("onprem", "cancelled", "")) in observe(
        at(ev.TaskCancelled, 10), state(TaskStatus.RUNNING), "onprem")
    assert observe(at(ev.TrainingFinished, 10, attempt=1), state(TaskStatus.SUCCEEDED), "onprem") == []
    assert observe(at(ev.TrainingFinished, 10, attempt=1), None, "onprem") == []
