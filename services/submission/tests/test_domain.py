"""The submission service's decisions, over every submission status, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from touchstone.shared import events as ev
from touchstone.shared.errors import IllegalTransition, NotFoundError
from touchstone.shared.lifecycle import SUBMISSION_LIVE, SubmissionStatus
from touchstone.shared.publisher import Recorded
from touchstone.submission import domain
from touchstone.submission.domain import Principal, SubmissionState

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ALICE = Principal("alice", "user")
BOB = Principal("bob", "user")
ADMIN = Principal("root", "admin")
SCHEDULE = ev.Schedule(prediction_intervals=(15, 60))
S = SubmissionStatus


def state(status: S, **kw: bool) -> SubmissionState:
    return SubmissionState("s-1", "alice", status, **kw)


def created(sid: str = "s-1") -> ev.SubmissionCreated:
    return ev.SubmissionCreated(aggregate_id=sid, correlation_id=sid, owner="alice", name="fs", git_url="https://x/y")


def history(*events: ev.Event) -> list[Recorded]:
    return [Recorded(i + 1, e) for i, e in enumerate(events)]


def test_fold_follows_the_lifecycle_and_remembers_a_pending_delete() -> None:
    sid = "s-1"
    common = {"aggregate_id": sid, "correlation_id": sid}
    assert domain.fold([]) is None
    folded = domain.fold(history(created(), ev.SubmissionValidated(**common, passed=True)))
    assert folded == SubmissionState(sid, "alice", S.ACCEPTED)
    folded = domain.fold(
        history(
            created(),
            ev.SubmissionScheduled(**common, schedule=SCHEDULE),  # refused in VALIDATING: skipped
            ev.SubmissionCancelRequested(**common, causation_id="delete:abc"),
        )
    )
    assert folded == SubmissionState(sid, "alice", S.VALIDATING, cancel_requested=True, delete_requested=True)


@pytest.mark.parametrize("status", list(S))
def test_schedule_only_when_accepted(status: S) -> None:
    if status == S.ACCEPTED:
        event = domain.decide_schedule(state(status), SCHEDULE, ADMIN, NOW)
        assert event.schedule == SCHEDULE and event.scheduled_by == "root"
        return
    with pytest.raises(IllegalTransition, match="only an ACCEPTED submission"):
        domain.decide_schedule(state(status), SCHEDULE, ADMIN, NOW)


@pytest.mark.parametrize("status", list(S))
def test_cancel_only_live_submissions_and_only_once(status: S) -> None:
    if status in SUBMISSION_LIVE:
        assert isinstance(domain.decide_cancel(state(status), ADMIN, NOW), ev.SubmissionCancelRequested)
        assert domain.decide_cancel(state(status, cancel_requested=True), ADMIN, NOW) is None
        return
    with pytest.raises(IllegalTransition, match="nothing to cancel"):
        domain.decide_cancel(state(status), ADMIN, NOW)


@pytest.mark.parametrize("status", list(S))
@pytest.mark.parametrize("who", [ALICE, ADMIN], ids=["owner", "admin"])
def test_retract(status: S, who: Principal) -> None:
    current = state(status)
    if status == S.RETRACTED:
        assert domain.decide_retract(current, who, NOW, "r1") is None
    elif status not in SUBMISSION_LIVE:
        assert isinstance(domain.decide_retract(current, who, NOW, "r1"), ev.SubmissionRetracted)
    elif who is ALICE:
        with pytest.raises(IllegalTransition, match="must be cancelled before it can be deleted"):
            domain.decide_retract(current, who, NOW, "r1")
    else:
        event = domain.decide_retract(current, who, NOW, "r1")
        assert isinstance(event, ev.SubmissionCancelRequested)
        assert event.causation_id == "delete:r1"
        assert domain.decide_retract(state(status, delete_requested=True), who, NOW, "r2") is None


@pytest.mark.parametrize("status", list(S))
def test_retract_after_a_pending_delete_once_the_submission_settles(status: S) -> None:
    cause = ev.SubmissionCancelled(aggregate_id="s-1", correlation_id="s-1")
    follow_up = domain.decide_retract_after(state(status, delete_requested=True), cause)
    if status in SUBMISSION_LIVE or status == S.RETRACTED:
        assert follow_up is None
    else:
        assert follow_up is not None and follow_up.event_id == ev.derived_id(cause.event_id, "retract-after-delete")
    assert domain.decide_retract_after(state(status), cause) is None


def test_visibility_hides_other_peoples_submissions() -> None:
    assert domain.visible(state(S.ACCEPTED), ALICE, "s-1").owner == "alice"
    assert domain.visible(state(S.ACCEPTED), ADMIN, "s-1").owner == "alice"
    with pytest.raises(NotFoundError):
        domain.visible(state(S.ACCEPTED), BOB, "s-1")
    with pytest.raises(NotFoundError):
        domain.visible(None, ADMIN, "s-1")


def test_planned_tasks_one_per_interval() -> None:
    assert [t.task_id for t in domain.planned_tasks(SCHEDULE)] == ["pi-15", "pi-60"]


def test_ids_are_short_url_safe_and_dot_free() -> None:
    sid = ev.new_id("s-")
    assert domain.valid_id(sid) and "." not in sid and len(sid) <= 16
    assert not domain.valid_id("a.b") and not domain.valid_id("../x") and not domain.valid_id("")
