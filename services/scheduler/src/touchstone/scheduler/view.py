"""The scheduler's own view of submissions and tasks, folded from the event stream.

Pure: no I/O, no clock reads. Each aggregate remembers the stream sequence of its last event
(the expected sequence of the next append) and which events it applied before the stream fed
them back (its own appends). ``admit`` decides per event: apply it, skip it (already applied,
a redelivery) or reload the aggregate from the stream (an append jumped over an event this
view has not seen yet).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from touchstone.shared import events as ev
from touchstone.shared.commands import CONTAINER_PREFIX, container_name
from touchstone.shared.errors import IllegalTransition
from touchstone.shared.lifecycle import (
    TASK_LIVE,
    RetryPolicy,
    SubmissionStatus,
    TaskState,
    TaskStatus,
    submission_transition,
    task_transition,
)

Admission = Literal["apply", "skip", "reload"]
Outcome = Literal["applied", "skipped", "reload", "ignored"]

CONTAINER_ACTIVITY = (ev.ContainerLaunched, ev.ContainerReady, ev.TrainingStarted)


@dataclass
class Sequenced:
    """Sequence bookkeeping of one aggregate."""

    seq: int = 0
    """The last applied event's stream sequence: the expected sequence of the next append."""
    confirmed_seq: int = 0
    """The last sequence the stream itself delivered for this aggregate."""
    unconfirmed: dict[int, str] = field(default_factory=dict)
    """Own appends applied ahead of the stream: sequence -> event id."""

    def admit(self, seq: int, event_id: str, *, local: bool) -> Admission:
        if local:
            if seq <= self.seq:
                return "skip"
            self.unconfirmed[seq] = event_id
            return "apply"
        if seq <= self.confirmed_seq:
            return "skip"
        if seq in self.unconfirmed:
            same = self.unconfirmed.pop(seq) == event_id
            self.confirmed_seq = seq
            return "skip" if same else "reload"
        if seq > self.seq:
            self.confirmed_seq = seq
            return "apply"
        return "reload"


@dataclass(frozen=True)
class OwedTerminate:
    msg_id: str
    since: datetime
    reason: str
    platform: str


@dataclass
class TaskRecord(Sequenced):
    queued: ev.TaskQueued | None = None
    state: TaskState | None = None
    queue_seq: int = 0
    """Stream sequence at which the task last entered the queue (FIFO order)."""
    queue_event_id: str = ""
    assigned: ev.TaskAssigned | None = None
    follow_ups: tuple[ev.TaskEvent, ...] = ()
    finished: ev.TrainingFinished | None = None
    platforms: dict[int, str] = field(default_factory=dict)
    """attempt -> the platform it was assigned to"""
    owed_terminates: dict[int, OwedTerminate] = field(default_factory=dict)
    """Attempts whose container must be stopped."""

    @property
    def key(self) -> str:
        assert self.queued is not None
        return self.queued.aggregate_id

    @property
    def submission_id(self) -> str:
        assert self.queued is not None
        return self.queued.submission_id

    @property
    def task_id(self) -> str:
        assert self.queued is not None
        return self.queued.task_id

    @property
    def status(self) -> TaskStatus:
        assert self.state is not None
        return self.state.status

    @property
    def attempt(self) -> int:
        assert self.state is not None
        return self.state.attempt

    @property
    def container(self) -> str:
        return container_name(self.submission_id, self.task_id, self.attempt)


@dataclass
class SubmissionRecord(Sequenced):
    id: str = ""
    status: SubmissionStatus | None = None
    created: ev.SubmissionCreated | None = None
    scheduled: ev.SubmissionScheduled | None = None
    commit: str | None = None
    cancel_request: ev.SubmissionCancelRequested | None = None
    task_keys: dict[str, str] = field(default_factory=dict)
    """task id -> task aggregate id"""


class SchedulerView:
    """Every submission and task the scheduler knows, with indexes for its hot paths."""

    def __init__(self, policy: RetryPolicy | None = None) -> None:
        self.policy = policy or RetryPolicy()
        self.tasks: dict[str, TaskRecord] = {}
        self.submissions: dict[str, SubmissionRecord] = {}
        self.queued: set[str] = set()
        self.queued_for: dict[str, set[str]] = {"onprem": set(), "runpod": set(), "any": set()}
        """The queued tasks by the platform they asked for (placement skips a full platform's)."""
        self.live: set[str] = set()
        self.attention: set[str] = set()
        """Tasks with follow-ups to append or containers to stop."""

    # --- reading ---------------------------------------------------------------------------

    def submission(self, submission_id: str) -> SubmissionRecord:
        sub = self.submissions.get(submission_id)
        if sub is None:
            sub = self.submissions[submission_id] = SubmissionRecord(id=submission_id)
        return sub

    def tasks_of(self, submission_id: str) -> Iterator[TaskRecord]:
        sub = self.submissions.get(submission_id)
        for key in sub.task_keys.values() if sub else ():
            task = self.tasks.get(key)
            if task is not None and task.state is not None:
                yield task

    def find_container(self, name: str) -> tuple[TaskRecord, int] | None:
        """The task and attempt a container name belongs to (names are ambiguous without the view)."""
        stem, _, attempt = name.rpartition("-")
        if not attempt.isdigit() or not stem.startswith(CONTAINER_PREFIX):
            return None
        task = self.tasks.get(stem.removeprefix(CONTAINER_PREFIX))
        return None if task is None else (task, int(attempt))

    # --- folding ---------------------------------------------------------------------------

    def confirm_own(self, aggregate: str, aggregate_id: str, seq: int, event_id: str) -> bool:
        """The stream fed back an own append this view applied already: confirm it without
        parsing it. ``False``: anything else, for ``apply`` to judge."""
        record: Sequenced | None = (
            self.tasks.get(aggregate_id) if aggregate == "task"
            else self.submissions.get(aggregate_id) if aggregate == "submission" else None
        )
        if record is None or seq <= record.confirmed_seq or record.unconfirmed.get(seq) != event_id:
            return False
        del record.unconfirmed[seq]
        record.confirmed_seq = seq
        return True

    def apply(self, seq: int, event: ev.Event, now: datetime, *, local: bool = False) -> Outcome:
        """Fold one stored event. ``local``: an own append, applied before the stream feeds it."""
        if isinstance(event, ev.TaskEvent):
            return self._apply_task(seq, event, now, local)
        if isinstance(event, ev.SubmissionEvent):
            return self._apply_submission(seq, event, local)
        return "ignored"

    def replace_task(self, history: list[tuple[int, ev.TaskEvent]], now: datetime) -> None:
        """Rebuild one task from its full history (after a conflict or a jumped-over event)."""
        if not history:
            return
        key = history[0][1].aggregate_id
        old = self.tasks.pop(key, None)
        record = TaskRecord()
        if old is not None:
            record.owed_terminates = dict(old.owed_terminates)
            record.platforms = dict(old.platforms)
        self.tasks[key] = record
        for seq, event in history:
            self._apply_task(seq, event, now, local=False)

    def replace_submission(self, history: list[tuple[int, ev.SubmissionEvent]]) -> None:
        if not history:
            return
        sid = history[0][1].aggregate_id
        old = self.submissions.get(sid)
        self.submissions[sid] = SubmissionRecord(id=sid, task_keys=dict(old.task_keys) if old else {})
        for seq, event in history:
            self._apply_submission(seq, event, local=False)

    def _apply_submission(self, seq: int, event: ev.SubmissionEvent, local: bool) -> Outcome:
        sub = self.submission(event.aggregate_id)
        verdict = sub.admit(seq, event.event_id, local=local)
        if verdict != "apply":
            return "skipped" if verdict == "skip" else "reload"
        sub.seq = seq
        try:
            sub.status = submission_transition(sub.status, event)
        except IllegalTransition:
            return "ignored"
        match event:
            case ev.SubmissionCreated():
                sub.created = event
            case ev.SubmissionValidated():
                sub.commit = event.commit
            case ev.SubmissionScheduled():
                sub.scheduled = event
            case ev.SubmissionCancelRequested():
                sub.cancel_request = event
        return "applied"

    def _apply_task(self, seq: int, event: ev.TaskEvent, now: datetime, local: bool) -> Outcome:
        key = event.aggregate_id
        task = self.tasks.get(key)
        if task is None:
            task = self.tasks[key] = TaskRecord()
        verdict = task.admit(seq, event.event_id, local=local)
        if verdict != "apply":
            return "skipped" if verdict == "skip" else "reload"
        task.seq = seq
        before = task.state
        try:
            moved = task_transition(before, event, now, self.policy)
        except IllegalTransition:
            self._stray(task, event)
            self._index(task)
            return "ignored"
        task.state = moved.state
        if moved.follow_ups or moved.state.status != (before.status if before else None):
            # an event that leaves the status alone (ContainerTerminated after TaskFailed)
            # must not drop the retry or error the failure still owes
            task.follow_ups = moved.follow_ups
        match event:
            case ev.TaskQueued():
                task.queued = event
                self.submission(event.submission_id).task_keys[event.task_id] = key
                task.queue_seq, task.queue_event_id = seq, event.event_id
            case ev.TaskRetried():
                task.queue_seq, task.queue_event_id, task.assigned = seq, event.event_id, None
            case ev.LaunchDeferred():  # keeps its place in the queue; the next assignment is a new one
                task.queue_event_id, task.assigned = event.event_id, None
            case ev.TaskAssigned():
                task.assigned = event
                task.platforms[event.attempt] = event.platform
            case ev.TrainingFinished():
                task.finished = event
            case ev.TaskCancelled() if before is not None and before.status in TASK_LIVE:
                task.owed_terminates[before.attempt] = OwedTerminate(
                    ev.derived_id(event.event_id, "terminate"),
                    event.occurred_at,
                    "task cancelled",
                    task.platforms.get(before.attempt, before.platform),
                )
            case ev.ContainerTerminated():
                task.owed_terminates.pop(event.attempt, None)
        self._index(task)
        return "applied"

    def _stray(self, task: TaskRecord, event: ev.TaskEvent) -> None:
        """A container reported activity for an attempt that is no longer live: stop it."""
        if task.state is None or not isinstance(event, CONTAINER_ACTIVITY):
            return
        current_live = task.state.status in TASK_LIVE and event.attempt == task.state.attempt
        platform = task.platforms.get(event.attempt)
        if not current_live and platform is not None:
            task.owed_terminates.setdefault(
                event.attempt,
                OwedTerminate(
                    ev.derived_id(event.event_id, "stray"),
                    event.occurred_at,
                    "attempt is no longer live",
                    platform,
                ),
            )

    def _index(self, task: TaskRecord) -> None:
        if task.state is None:
            return
        key = task.key
        status = task.state.status
        _toggle(self.queued, key, status == TaskStatus.QUEUED)
        if task.queued is not None:
            _toggle(self.queued_for.setdefault(task.queued.platform, set()), key, status == TaskStatus.QUEUED)
        _toggle(self.live, key, status in TASK_LIVE)
        _toggle(self.attention, key, bool(task.follow_ups) or bool(task.owed_terminates))

    def unfinished_submissions(self) -> Iterator[SubmissionRecord]:
        for sub in self.submissions.values():
            if sub.status in LIVE_SUBMISSION:
                yield sub


LIVE_SUBMISSION = frozenset(
    {SubmissionStatus.VALIDATING, SubmissionStatus.SCHEDULED, SubmissionStatus.RUNNING}
)


def _toggle(index: set[str], key: str, member: bool) -> None:
    if member:
        index.add(key)
    else:
        index.discard(key)
