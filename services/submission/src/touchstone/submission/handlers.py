"""The service's reactions to events: one table, bound to a small ``Deps`` at bootstrap.

The table is the one place that says what the ``submission-retract`` consumer reads; its
filter subjects are derived from it (``shared.reactions``)."""

from __future__ import annotations

from dataclasses import dataclass

from touchstone.shared import events as ev
from touchstone.shared.aggregate import change
from touchstone.shared.consumer import ConsumerSpec, Delivery
from touchstone.shared.publisher import EventPublisher, Recorded
from touchstone.shared.reactions import Reactions
from touchstone.shared.subjects import Subjects
from touchstone.submission import domain

CONSUMER = "submission-retract"  # the durable's name: deployed consumers keep it


@dataclass(frozen=True)
class Deps:
    """What the reactions use: the record, nothing of the HTTP side."""

    publisher: EventPublisher


async def on_submission_settled(event: ev.SubmissionEvent, deps: Deps, delivery: Delivery) -> None:
    """Finish an admin's DELETE of a live submission once it is no longer live."""

    def decision(history: list[Recorded]) -> list[ev.Event]:
        state = domain.fold(history)
        follow_up = domain.decide_retract_after(state, event) if state else None
        return [] if follow_up is None else [follow_up]

    await change(deps.publisher, "submission", event.aggregate_id, decision)


# A submission stops being live with one of these; a pending DELETE then retracts it.
REACTIONS = Reactions[Deps]({
    ev.SubmissionCancelled: on_submission_settled,
    ev.SubmissionCompleted: on_submission_settled,
    ev.SubmissionFailed: on_submission_settled,
    ev.SubmissionValidated: on_submission_settled,
})


def consumer_spec(subjects: Subjects) -> ConsumerSpec:
    return REACTIONS.event_consumer(CONSUMER, subjects)
