"""One way to change an aggregate: load its history, decide, append with the expected sequence,
and on a conflict (someone else appended first) load and decide again.

Every service that changes an aggregate from a request or a reaction goes through ``change``:
the same number of tries, the same deduplication (an event already stored, by its id, is not
appended twice: a redelivered decision is a success) and the same error when the aggregate
keeps changing under us (``UnavailableError``, which handlers retry and the API answers 503).
The scheduler's plans are the one exception: a plan stopped by a conflict is dropped and its
aggregate queued for a fresh look rather than retried in place (``scheduler/service.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from touchstone.shared.errors import ConcurrencyConflict, UnavailableError
from touchstone.shared.events import Event
from touchstone.shared.publisher import EventPublisher, Recorded, last_seq

CONFLICT_TRIES = 8

Decide = Callable[[list[Recorded]], Sequence[Event]]


@dataclass(frozen=True)
class Changed:
    """What the decision saw (``history``) and what this change appended (nothing when the
    decision was to do nothing or every event was already stored)."""

    history: list[Recorded]
    appended: list[Recorded]

    @property
    def records(self) -> list[Recorded]:
        return [*self.history, *self.appended]


async def change(publisher: EventPublisher, aggregate: str, aggregate_id: str, decide: Decide, *,
                 tries: int = CONFLICT_TRIES,
                 load: Callable[[], Awaitable[list[Recorded]]] | None = None) -> Changed:
    """Load ``aggregate_id``'s history, ask ``decide`` for the events to append (in order; an
    empty sequence for none) and append them after what was loaded. ``decide`` may raise to
    refuse; it is called again, on fresh history, after each conflict."""
    for _ in range(tries):
        history = await (load() if load else publisher.load(aggregate, aggregate_id))
        stored = {r.event.event_id for r in history}
        events = [e for e in decide(history) if e.event_id not in stored]
        appended: list[Recorded] = []
        seq = last_seq(history)
        try:
            for event in events:
                seq = await publisher.append(event, expected_last_seq=seq)
                appended.append(Recorded(seq, event))
        except ConcurrencyConflict:
            continue
        return Changed(history, appended)
    raise UnavailableError(f"{aggregate} {aggregate_id} is changing too fast; try again")
