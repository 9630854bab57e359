"""Pure decisions of the submission service: who may see what, and which event a request
becomes. No I/O and no clock reads (``now`` is passed in); the caller loads the submission's
history, calls a ``decide_*`` function, and appends what it returns.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from touchstone.shared import events as ev
from touchstone.shared.errors import IllegalTransition, NotFoundError
from touchstone.shared.lifecycle import SUBMISSION_LIVE, SubmissionStatus, submission_transition
from touchstone.shared.publisher import Recorded
from touchstone.shared.views import SubmissionView, project_submission
from touchstone.submission import rules
from touchstone.submission.schemas import PlannedTask, ScheduleCreate, SubmissionCreate

S = SubmissionStatus
ADMIN = "admin"
DELETE_CAUSE = ev.DELETE_CAUSE  # causation_id prefix of a cancel that an admin's DELETE asked for
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user name and a role (``user`` or ``admin``)."""

    name: str
    role: str
    via: str = "token"

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN


class Refused(IllegalTransition):
    """A request the submission's lifecycle does not allow now (HTTP 409), with a clear reason."""

    def __init__(self, state: str | None, event_type: str, detail: str) -> None:
        super().__init__("submission", state, event_type)
        self.detail = detail

    def __str__(self) -> str:
        return self.detail


@dataclass(frozen=True)
class SubmissionState:
    """What a decision needs to know about one submission, folded from its events."""

    id: str
    owner: str
    status: SubmissionStatus
    cancel_requested: bool = False
    delete_requested: bool = False


def fold(history: Iterable[Recorded]) -> SubmissionState | None:
    """The submission's state after its events (events the lifecycle refuses are skipped)."""
    state: SubmissionState | None = None
    for record in history:
        event = record.event
        if not isinstance(event, ev.SubmissionEvent):
            continue
        try:
            status = submission_transition(state.status if state else None, event)
        except IllegalTransition:
            continue
        if isinstance(event, ev.SubmissionCreated):
            state = SubmissionState(event.aggregate_id, event.owner, status)
            continue
        assert state is not None
        cancel = state.cancel_requested or isinstance(event, ev.SubmissionCancelRequested)
        delete = state.delete_requested or (
            isinstance(event, ev.SubmissionCancelRequested) and (event.causation_id or "").startswith(DELETE_CAUSE)
        )
        state = SubmissionState(state.id, state.owner, status, cancel, delete)
    return state


def valid_id(value: str) -> bool:
    return bool(_ID.match(value))


def may_see(owner: str, who: Principal) -> bool:
    return who.is_admin or owner == who.name


def visible(state: SubmissionState | None, who: Principal, submission_id: str) -> SubmissionState:
    """The state, or ``NotFoundError`` when it does not exist or belongs to someone else."""
    if state is None or not may_see(state.owner, who):
        raise NotFoundError(f"no submission {submission_id}")
    return state


def replay(view: SubmissionView | None, records: Iterable[Recorded]) -> SubmissionView | None:
    """Bring a (possibly stale or missing) view up to date with the given records."""
    for record in records:
        if isinstance(record.event, ev.SubmissionEvent):
            view = project_submission(view, record.event, record.seq) or view
    return view


# --- decisions ----------------------------------------------------------------------------


def decide_create(
    body: SubmissionCreate,
    policy: rules.SourcePolicy,
    who: Principal,
    submission_id: str,
    now: datetime,
) -> ev.SubmissionCreated:
    url = rules.check_git_url(body.git_url, policy)
    return ev.SubmissionCreated(
        aggregate_id=submission_id,
        correlation_id=submission_id,
        occurred_at=now,
        owner=who.name,
        name=rules.check_name(body.name) if body.name is not None else rules.name_from_url(url),
        git_url=url,
        git_ref=rules.check_git_ref(body.git_ref, "git_ref"),
        feature_set_path=rules.check_relative_path(body.feature_set_path, "feature_set_path"),
    )


def build_schedule(body: ScheduleCreate) -> ev.Schedule:
    """The schedule a request asks for, every input rule checked."""
    return ev.Schedule(
        config_file=rules.check_relative_path(body.config_file, "config_file"),
        trainer_ref=rules.check_git_ref(body.trainer_ref, "trainer_ref"),
        prediction_intervals=rules.check_intervals(body.prediction_intervals),
        fetched_data_end_to=rules.as_utc(body.fetched_data_end_to),
        passthrough_args=rules.split_args(body.passthrough_args),
        platform=body.platform,
        gpu_type=rules.check_gpu_type(body.gpu_type),
        priority=body.priority,
        run_timeout_s=body.run_timeout_s,
    )


def decide_schedule(
    state: SubmissionState, schedule: ev.Schedule, who: Principal, now: datetime
) -> ev.SubmissionScheduled:
    event = ev.SubmissionScheduled(
        aggregate_id=state.id,
        correlation_id=state.id,
        occurred_at=now,
        schedule=schedule,
        scheduled_by=who.name,
    )
    if state.status != S.ACCEPTED:
        raise Refused(
            state.status,
            event.event_type,
            f"only an ACCEPTED submission can be scheduled; {state.id} is {state.status}",
        )
    return event


def decide_cancel(
    state: SubmissionState, who: Principal, now: datetime, *, cause: str | None = None
) -> ev.SubmissionCancelRequested | None:
    """A cancel request, or ``None`` when one is already pending (cancelling is idempotent)."""
    event = ev.SubmissionCancelRequested(
        aggregate_id=state.id,
        correlation_id=state.id,
        occurred_at=now,
        requested_by=who.name,
        causation_id=cause,
    )
    if state.status not in SUBMISSION_LIVE:
        raise Refused(
            state.status,
            event.event_type,
            f"{state.id} is {state.status}; there is nothing to cancel",
        )
    if state.cancel_requested and cause is None:
        return None
    return event


def decide_retract(state: SubmissionState, who: Principal, now: datetime, request_id: str) -> ev.SubmissionEvent | None:
    """Retract (delete) a submission.

    A finished submission is retracted at once. A live one must be cancelled first (409),
    unless an admin deletes it: then its tasks are cancelled and the retraction follows when
    the cancellation is done. ``None``: nothing left to do (already retracted or pending).
    """
    if state.status == S.RETRACTED:
        return None
    if state.status in SUBMISSION_LIVE:
        if not who.is_admin:
            raise Refused(
                state.status,
                "SubmissionRetracted",
                f"{state.id} is {state.status}: it must be cancelled before it can be deleted "
                "(ask an admin to cancel it, or wait until it finishes)",
            )
        if state.delete_requested:
            return None
        return decide_cancel(state, who, now, cause=f"{DELETE_CAUSE}{request_id}")
    return ev.SubmissionRetracted(
        aggregate_id=state.id, correlation_id=state.id, occurred_at=now, retracted_by=who.name
    )


def decide_retract_after(state: SubmissionState, cause: ev.SubmissionEvent) -> ev.SubmissionRetracted | None:
    """The retraction an admin's DELETE of a live submission left pending, once it is no
    longer live; ``None`` when there is none to make. Its id derives from ``cause``, so a
    redelivered cause cannot retract twice."""
    if not state.delete_requested or state.status in SUBMISSION_LIVE or state.status == S.RETRACTED:
        return None
    return ev.SubmissionRetracted(
        event_id=ev.derived_id(cause.event_id, "retract-after-delete"),
        aggregate_id=state.id,
        correlation_id=state.id,
        causation_id=cause.event_id,
        occurred_at=cause.occurred_at,
        retracted_by="touchstone",
    )


def planned_tasks(schedule: ev.Schedule) -> list[PlannedTask]:
    return [PlannedTask(task_id=ev.training_task_id(i), prediction_interval=i) for i in schedule.prediction_intervals]
