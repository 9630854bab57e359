"""``touchstone projections rebuild``: every read model again from the events.

The projector's read models (submissions, tasks) are dropped and replayed by
``Projector.rebuild``. Evaluations are written by the results service rather than folded by
the projector, so they are derived here from the same facts it uses (each training
``TrainingFinished`` with metrics, its ``TaskQueued`` and its ``SubmissionCreated``) and put by
key, which replaces a row the results service wrote with the same row.
"""

from __future__ import annotations

from dataclasses import dataclass

from nats.js import JetStreamContext
from pydantic import ValidationError
from touchstone.shared import events as ev
from touchstone.shared.evaluations import Evaluation, rows_from_metrics
from touchstone.shared.jetstream import stream_messages
from touchstone.shared.projector import Projector
from touchstone.shared.store.protocol import ProjectionStore
from touchstone.shared.subjects import Subjects

BATCH = 500


@dataclass(frozen=True)
class Rebuilt:
    events: int
    evaluations: int


async def rebuild_projections(js: JetStreamContext, subjects: Subjects, store: ProjectionStore) -> Rebuilt:
    """Drop and replay the projections, then put every evaluation the events imply."""
    events = await Projector(js, subjects, store).rebuild()
    return Rebuilt(events, await rebuild_evaluations(js, subjects, store))


async def rebuild_evaluations(js: JetStreamContext, subjects: Subjects, store: ProjectionStore) -> int:
    last = (await js.stream_info(subjects.events_stream)).state.last_seq
    created: dict[str, ev.SubmissionCreated] = {}
    queued: dict[str, ev.TaskQueued] = {}
    pending: list[Evaluation] = []
    written = 0
    async for msg in stream_messages(js, subjects.events_stream, subjects.all_events, last):
        try:
            event = ev.decode_event(msg.data)
        except (ValidationError, ValueError):
            continue  # the projector logs and skips it too
        if isinstance(event, ev.SubmissionCreated):
            created[event.aggregate_id] = event
        elif isinstance(event, ev.TaskQueued):
            queued[event.aggregate_id] = event
        elif (isinstance(event, ev.TrainingFinished) and event.metrics
              and event.task_id != ev.VALIDATION_TASK_ID):
            pending += evaluation_rows(event, queued.get(event.aggregate_id), created.get(event.submission_id))
            if len(pending) >= BATCH:
                await store.put_evaluations(pending)
                written += len(pending)
                pending = []
    if pending:
        await store.put_evaluations(pending)
        written += len(pending)
    return written


def evaluation_rows(event: ev.TrainingFinished, queued: ev.TaskQueued | None,
          created: ev.SubmissionCreated | None) -> list[Evaluation]:
    """The rows the results service writes for this event (``results.handlers.record_evaluations``)."""
    assert event.metrics is not None
    return rows_from_metrics(
        event.metrics, submission_id=event.submission_id, task_id=event.task_id, attempt=event.attempt,
        finished_at=event.occurred_at, event_id=event.event_id,
        owner=created.owner if created else "", feature_set=created.name if created else "",
        trainer_ref=queued.spec.trainer_ref if queued else "",
        config_file=queued.spec.config_file if queued else "",
        prediction_interval=queued.prediction_interval if queued else None,
    )
