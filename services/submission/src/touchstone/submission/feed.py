"""The live feed behind ``GET /api/v1/events``: status changes, fanned out to subscribers.

The projector calls ``on_applied`` after each batch is in the store, so a subscriber that
re-reads a submission on a change sees the new state. Each change is resolved once (owner and
status from the store) and offered to every subscriber allowed to see it; a subscriber that
falls behind loses its oldest changes rather than slowing anyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Iterator

from touchstone.shared import events as ev
from touchstone.shared.store import ProjectionStore
from touchstone.submission.domain import Principal, may_see
from touchstone.submission.schemas import StatusChange

log = logging.getLogger(__name__)


class Subscription:
    def __init__(self, who: Principal, submission_id: str | None, size: int = 1000) -> None:
        self.who = who
        self.submission_id = submission_id
        self.queue: asyncio.Queue[StatusChange] = asyncio.Queue(maxsize=size)

    def offer(self, change: StatusChange, owner: str) -> None:
        if not may_see(owner, self.who):
            return
        if self.submission_id and change.submission_id != self.submission_id:
            return
        if self.queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
        self.queue.put_nowait(change)


class Feed:
    def __init__(self, store: ProjectionStore, *, owners_cached: int = 10_000) -> None:
        self.store = store
        self._incoming: asyncio.Queue[list[ev.Event]] = asyncio.Queue()
        self._subscribers: set[Subscription] = set()
        self._owners: OrderedDict[str, str] = OrderedDict()
        self._owners_cached = owners_cached
        self._seq = 0

    def on_applied(self, events: list[ev.Event]) -> None:
        """The projector's hook (synchronous): queue the batch for ``run``."""
        if self._subscribers:
            self._incoming.put_nowait(events)

    @contextlib.contextmanager
    def subscribe(self, who: Principal, submission_id: str | None = None) -> Iterator[Subscription]:
        sub = Subscription(who, submission_id)
        self._subscribers.add(sub)
        try:
            yield sub
        finally:
            self._subscribers.discard(sub)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                batch = await asyncio.wait_for(self._incoming.get(), timeout=0.5)
            except TimeoutError:
                continue
            for event in batch:
                try:
                    await self._publish(event)
                except Exception:
                    log.exception("live feed could not publish %s", event.event_type)

    async def _publish(self, event: ev.Event) -> None:
        if not self._subscribers:
            return
        submission_id = event.correlation_id
        owner = await self._owner(submission_id, event)
        if owner is None:
            return
        self._seq += 1
        task_id = event.task_id if isinstance(event, ev.TaskEvent) else None
        status: str | None = None
        if task_id is not None:
            task = await self.store.get_task(submission_id, task_id)
            status = task.status.value if task else None
        else:
            view = await self.store.get_submission(submission_id)
            status = view.status.value if view else None
        change = StatusChange(
            type=event.event_type,
            submission_id=submission_id,
            task_id=task_id,
            status=status,
            occurred_at=event.occurred_at,
            seq=self._seq,
        )
        for sub in list(self._subscribers):
            sub.offer(change, owner)

    async def _owner(self, submission_id: str, event: ev.Event) -> str | None:
        owner = self._owners.get(submission_id)
        if owner is None:
            if isinstance(event, ev.SubmissionCreated):
                owner = event.owner
            else:
                view = await self.store.get_submission(submission_id)
                if view is None:
                    return None
                owner = view.owner
            self._owners[submission_id] = owner
            if len(self._owners) > self._owners_cached:
                self._owners.popitem(last=False)
        return owner
