"""The invariant checker on hand-made records (no cluster): what counts as a double run."""

from __future__ import annotations

from touchstone.shared import events as ev

from touchstone.chaos import invariants

BASE = dict(aggregate_id="s1-pi-15", correlation_id="s1", submission_id="s1", task_id="pi-15")


def record(*middle: ev.TaskEvent) -> list[ev.Event]:
    queued = ev.TaskQueued(**BASE, spec=ev.TaskSpec(git_url="https://example.com/r.git"), platform="onprem")
    return [queued, *middle, ev.TrainingFinished(**BASE, attempt=1)]


def assigned(placement: str) -> ev.TaskAssigned:
    return ev.TaskAssigned(**BASE, attempt=1, platform="onprem", placement=placement)


def test_an_assignment_handed_back_before_the_next_one_is_no_double_run() -> None:
    back = ev.LaunchDeferred(**BASE, attempt=1, reason="slot 0 on h1 is held by touchstone-s2-pi-60-1",
                             not_before=ev.utcnow())
    verdict = invariants.check(record(assigned("h1/0"), back, assigned("h1/1")), [])
    assert verdict.holds and verdict.double_assigned == [] and verdict.attempts_burned == 0, verdict
    twice = invariants.check(record(assigned("h1/0"), assigned("h1/1")), [])
    assert twice.double_assigned == ["s1-pi-15"] and not twice.holds
