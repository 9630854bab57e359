"""The write side: each request is load → decide (pure, ``domain``) → append, with the
aggregate's expected last sequence. A conflict means another writer moved the submission
first: reload and decide again, never overwrite."""

from __future__ import annotations

import time
from collections.abc import Callable

from touchstone.shared import events as ev
from touchstone.shared.aggregate import change
from touchstone.shared.errors import NotFoundError
from touchstone.shared.lifecycle import SubmissionStatus
from touchstone.shared.publisher import EventPublisher, Recorded
from touchstone.shared.store import ProjectionStore
from touchstone.shared.store.protocol import view_json
from touchstone.shared.views import SubmissionView, project_submission
from touchstone.submission import domain
from touchstone.submission.domain import Principal, SubmissionState
from touchstone.submission.quotas import Quotas
from touchstone.submission.rules import SourcePolicy
from touchstone.submission.schemas import ScheduleAccepted, ScheduleCreate, SubmissionCreate

# how a stored view (compact JSON from ``view_json``) says an admin's DELETE is pending
_DELETE_REQUESTED = b'"delete_requested":true'

Decide = Callable[[SubmissionState], ev.SubmissionEvent | None]


class SubmissionCommands:
    def __init__(
        self, publisher: EventPublisher, store: ProjectionStore, policy: SourcePolicy, quotas: Quotas | None = None
    ) -> None:
        self.publisher = publisher
        self.store = store
        self.policy = policy
        # read-your-deletes: ids this process deleted (insertion order, bounded)
        self.deleted: dict[str, None] = {}
        self.quotas = quotas

    async def create(self, body: SubmissionCreate, who: Principal) -> SubmissionView:
        """A new submission (its validation starts); counted against the user's quotas."""
        event = domain.decide_create(body, self.policy, who, ev.new_id("s-"), ev.utcnow())
        if self.quotas is not None and not who.is_admin:
            await self.quotas.reserve(who.name, event.aggregate_id, time.time())
        seq = await self.publisher.append(event, expected_last_seq=0)
        view = project_submission(None, event, seq)
        assert view is not None
        return view

    async def schedule(self, submission_id: str, body: ScheduleCreate, who: Principal) -> ScheduleAccepted:
        schedule = domain.build_schedule(body)
        view = await self._change(
            submission_id,
            who,
            lambda state: domain.decide_schedule(state, schedule, who, ev.utcnow()),
        )
        return ScheduleAccepted(submission=view, tasks=domain.planned_tasks(schedule))

    async def cancel(self, submission_id: str, who: Principal) -> SubmissionView:
        return await self._change(submission_id, who, lambda state: domain.decide_cancel(state, who, ev.utcnow()))

    async def retract(self, submission_id: str, who: Principal, request_id: str) -> SubmissionView:
        view = await self._change(
            submission_id,
            who,
            lambda state: domain.decide_retract(state, who, ev.utcnow(), request_id),
        )
        self.deleted[submission_id] = None
        while len(self.deleted) > 10_000:  # the projector has long caught up with the oldest
            del self.deleted[next(iter(self.deleted))]
        return view

    async def view(self, submission_id: str, who: Principal) -> SubmissionView:
        """The submission as the store has it; if the projector has not caught up yet, as its
        events say (so a caller always sees its own writes)."""
        if not domain.valid_id(submission_id):
            raise NotFoundError(f"no submission {submission_id}")
        view = await self.store.get_submission(submission_id)
        if view is None:
            history = await self.publisher.load("submission", submission_id)
            view = domain.replay(None, history)
        if view is None or not domain.may_see(view.owner, who):
            raise NotFoundError(f"no submission {submission_id}")
        return view

    async def view_json(self, submission_id: str, who: Principal) -> bytes:
        """``view`` as JSON, served as the store keeps it (no parse, no re-serialisation). A
        deleted submission (retracted, or deleted live by an admin and being cancelled) is gone:
        404, at once in the process that deleted it, whatever the projector's lag."""
        if not domain.valid_id(submission_id) or submission_id in self.deleted:
            raise NotFoundError(f"no submission {submission_id}")
        stored = await self.store.get_submission_json(submission_id)
        if stored is None:
            view = await self.view(submission_id, who)
            if view.status == SubmissionStatus.RETRACTED or view.delete_requested:
                raise NotFoundError(f"no submission {submission_id} (deleted)")
            return view_json(view)
        if not domain.may_see(stored.owner, who):
            raise NotFoundError(f"no submission {submission_id}")
        if stored.status == SubmissionStatus.RETRACTED or _DELETE_REQUESTED in stored.json:
            raise NotFoundError(f"no submission {submission_id} (deleted)")
        return stored.json

    async def _change(self, submission_id: str, who: Principal, decide: Decide) -> SubmissionView:
        if not domain.valid_id(submission_id):
            raise NotFoundError(f"no submission {submission_id}")

        def decision(history: list[Recorded]) -> list[ev.Event]:
            event = decide(domain.visible(domain.fold(history), who, submission_id))
            return [] if event is None else [event]

        changed = await change(self.publisher, "submission", submission_id, decision)
        view = domain.replay(await self.store.get_submission(submission_id), changed.records)
        assert view is not None
        return view
