"""Stuck detection with a fake clock, table-driven: every phase just before and just after its
deadline, heartbeats, re-queued tasks, and a second sweep after the first one's events."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from schedkit import T0, queued, task_event
from touchstone.scheduler.policy import stuck_plan
from touchstone.scheduler.stuck import Deadlines, TaskClock, find_stuck, overdue
from touchstone.scheduler.view import SchedulerView
from touchstone.shared import events as ev
from touchstone.shared.lifecycle import TaskStatus

D = Deadlines(launch_s=60, provisioning_s=300, preparing_s=600, running_silence_s=90)
S = TaskStatus
CASES = [  # status, its limit, the phase named in the reason
    (S.ASSIGNED, 60, "launch"),
    (S.PROVISIONING, 300, "provisioning"),
    (S.PREPARING, 600, "preparing"),
    (S.RUNNING, 90, "running without heartbeat"),
]


def clock_of(status: TaskStatus, since=T0, attempt: int = 1) -> TaskClock:
    return TaskClock("s-a-pi-60", status, attempt, since, f"touchstone-s-a-pi-60-{attempt}")


@pytest.mark.parametrize(("status", "limit", "phase"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize(("offset_s", "stuck"), [(-1, False), (0, False), (0.001, True), (1, True)])
def test_each_phase_around_its_deadline(status, limit, phase, offset_s, stuck) -> None:
    now = T0 + timedelta(seconds=limit + offset_s)
    verdict = overdue(clock_of(status), D, now)
    assert (verdict is not None) == stuck
    if verdict:
        assert verdict.phase == phase and verdict.attempt == 1
        assert verdict.overdue == timedelta(seconds=offset_s)


@pytest.mark.parametrize("status", [S.QUEUED, S.FAILED, S.SUCCEEDED, S.ERROR, S.CANCELLED])
def test_queued_failed_and_finished_tasks_are_never_stuck(status) -> None:
    assert overdue(clock_of(status), D, T0 + timedelta(days=30)) is None


def test_a_heartbeat_naming_the_container_restarts_the_running_clock() -> None:
    task = clock_of(S.RUNNING)
    now = T0 + timedelta(seconds=500)
    assert find_stuck([task], D, now, last_seen={}) != []
    assert find_stuck([task], D, now, last_seen={task.container: now - timedelta(seconds=89)}) == []
    assert find_stuck([task], D, now, last_seen={task.container: now - timedelta(seconds=91)}) != []
    # another attempt's container does not count
    other = "touchstone-s-a-pi-60-2"
    assert find_stuck([task], D, now, last_seen={other: now}) != []


def test_a_scheduler_that_just_started_listening_gives_running_tasks_a_full_period() -> None:
    task = clock_of(S.RUNNING)
    now = T0 + timedelta(hours=5)
    assert find_stuck([task], D, now, last_seen={}, watch_since=now - timedelta(seconds=60)) == []
    assert find_stuck([task], D, now, last_seen={}, watch_since=now - timedelta(seconds=91)) != []
    # other phases are measured from their events, which the stream keeps
    assert find_stuck([clock_of(S.PROVISIONING)], D, now, last_seen={}, watch_since=now) != []


def test_a_requeued_task_is_untouched_and_a_second_sweep_finds_nothing() -> None:
    """Sweep, apply the sweep's events to the view as the stream would, sweep again."""
    view = SchedulerView()
    sid, tid = "s-a", "pi-60"
    history = [
        queued(sid, tid, occurred_at=T0),
        task_event(ev.TaskAssigned, sid, tid, attempt=1, platform="onprem", placement="h/0", occurred_at=T0),
    ]
    for seq, event in enumerate(history, start=1):
        view.apply(seq, event, T0)
    other = queued("s-b", tid, occurred_at=T0 - timedelta(days=1))  # queued for a day: not stuck
    view.apply(3, other, T0)

    def sweep(now):
        clocks = [TaskClock(t.key, t.status, t.attempt, t.state.phase_since, t.container) for t in view.tasks.values()]
        return find_stuck(clocks, D, now, last_seen={})

    now = T0 + timedelta(seconds=61)
    (stuck,) = sweep(now)
    assert stuck.key == "s-a-pi-60"
    plan = stuck_plan(view.tasks["s-a-pi-60"], stuck, now)
    failed, terminate = plan
    assert failed.event.failure_class == "infrastructure" and failed.expected_seq == 2
    assert terminate.service == "onprem-provider" and terminate.command.attempt == 1
    view.apply(4, failed.event, now)
    (retry,) = view.tasks["s-a-pi-60"].follow_ups
    view.apply(5, retry, now)
    assert view.tasks["s-a-pi-60"].status == S.QUEUED and view.tasks["s-a-pi-60"].attempt == 2
    assert sweep(now + timedelta(days=1)) == []
    # the same decision taken twice is the same event: the stream's dedupe stores it once
    assert stuck_plan(view.tasks["s-a-pi-60"], stuck, now)[0].event.event_id == failed.event.event_id


def test_runpod_tasks_are_held_to_heartbeats_only_once_a_report_names_their_pod() -> None:
    task = replace(clock_of(S.RUNNING), platform="runpod")
    now = T0 + timedelta(hours=5)
    assert find_stuck([task], D, now, last_seen={}) == []
    assert find_stuck([task], D, now, last_seen={task.container: now - timedelta(seconds=91)}) != []
    assert find_stuck([replace(task, status=S.PROVISIONING)], D, now, last_seen={}) != []
