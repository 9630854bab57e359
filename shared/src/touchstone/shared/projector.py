"""The projector: keeps the submission and task read models up to date from the stream.

It reads the events stream with an ordered consumer from its checkpoint, folds each batch of
events into views in memory (``views.project_*``), and writes the batch in one store call that
also moves the checkpoint. ``rebuild`` drops every projection and replays from the start.

Its lag is exported: events in the stream not yet applied (``touchstone_projector_lag_events``)
and how old the last applied event was when it was applied while more were pending
(``touchstone_projector_lag_seconds``; 0 once caught up).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from pydantic import ValidationError
from touchstone.shared import events as ev
from touchstone.shared import metrics
from touchstone.shared.jetstream import ordered_feed, stream_messages
from touchstone.shared.lifecycle import TASK_FINAL
from touchstone.shared.store.protocol import Changes, ProjectionStore
from touchstone.shared.subjects import Subjects
from touchstone.shared.views import SubmissionView, project_submission, project_task

log = logging.getLogger(__name__)

CHECKPOINT = "projector"

APPLIED_SEQ = metrics.gauge("projector_applied_sequence", "Stream sequence of the last event the projector applied")
LAG_EVENTS = metrics.gauge("projector_lag_events", "Events in the stream the projector has not applied yet")
LAG_SECONDS = metrics.gauge(
    "projector_lag_seconds", "Age of the last applied event while the projector is behind (0 when caught up)"
)
SKIPPED = metrics.counter("projector_skipped_events_total", "Malformed events the projector skipped")


class Projector:
    def __init__(
        self,
        js: JetStreamContext,
        subjects: Subjects,
        store: ProjectionStore,
        *,
        max_batch: int = 500,
        on_applied: Callable[[list[ev.Event]], None] | None = None,
    ) -> None:
        self.js = js
        self.subjects = subjects
        self.store = store
        self.max_batch = max_batch
        self.on_applied = on_applied
        self.applied_seq = 0
        self.skipped = 0

    async def fold(self, changes: Changes, event: ev.Event, seq: int) -> None:
        """Fold one event into ``changes`` (reading a view from the store only the first time)."""
        if isinstance(event, ev.SubmissionEvent):
            sub = await self._submission(changes, event.aggregate_id)
            new = project_submission(sub, event, seq)
            if new is not None:
                changes.submissions[new.id] = new
            return
        if not isinstance(event, ev.TaskEvent):
            return
        key = event.aggregate_id
        task = changes.tasks.get(key) or await self.store.get_task(event.submission_id, event.task_id)
        new_task = project_task(task, event, seq)
        if new_task is None:
            return
        changes.tasks[key] = new_task
        # the submission's counters follow its training tasks
        if new_task.kind != "training":
            return
        sub = await self._submission(changes, event.submission_id)
        if sub is None:
            return
        update: dict[str, object] = {}
        if task is None:
            update["tasks_total"] = sub.tasks_total + 1
        was_final = task is not None and task.status in TASK_FINAL
        if new_task.status in TASK_FINAL and not was_final:
            update["tasks_done"] = sub.tasks_done + 1
        if isinstance(event, ev.TrainingFinished) and event.cost_usd:
            update["cost_usd"] = sub.cost_usd + event.cost_usd
        if update:
            changes.submissions[sub.id] = sub.model_copy(update={**update, "seq": max(sub.seq, seq)})

    async def _submission(self, changes: Changes, submission_id: str) -> SubmissionView | None:
        return changes.submissions.get(submission_id) or await self.store.get_submission(submission_id)

    async def apply_batch(self, msgs: list[Msg]) -> list[ev.Event]:
        changes = Changes()
        applied: list[ev.Event] = []
        last = 0
        for msg in msgs:
            seq = msg.metadata.sequence.stream
            last = seq
            try:
                event = ev.decode_event(msg.data)
            except (ValidationError, ValueError) as e:
                self.skipped += 1
                SKIPPED.inc()
                log.error("projector skips malformed event at seq %d on %s: %s", seq, msg.subject, e)
                continue
            await self.fold(changes, event, seq)
            applied.append(event)
        if last:
            await self.store.apply(changes, checkpoint=CHECKPOINT, seq=last)
            self.applied_seq = last
            _record_lag(msgs[-1], applied[-1] if applied else None)
        return applied

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        """Follow the stream until ``stop`` is set."""
        start = await self.store.checkpoint(CHECKPOINT) + 1
        self.applied_seq = start - 1

        async with ordered_feed(self.js, self.subjects.events_stream, self.subjects.all_events,
                                start_seq=start) as queue:
            if ready:
                ready.set()
            while not stop.is_set():
                try:
                    first = await asyncio.wait_for(queue.get(), timeout=0.5)
                except TimeoutError:
                    continue
                batch = [first]
                while len(batch) < self.max_batch and not queue.empty():
                    batch.append(queue.get_nowait())
                applied = await self.apply_batch(batch)
                if self.on_applied and applied:
                    self.on_applied(applied)

    async def catch_up(self, timeout: float = 30.0) -> None:
        """Wait until everything in the stream now has been applied."""
        info = await self.js.stream_info(self.subjects.events_stream)
        target = info.state.last_seq
        deadline = time.monotonic() + timeout
        while self.applied_seq < target:
            if time.monotonic() > deadline:
                raise TimeoutError(f"projector at {self.applied_seq}, stream at {target}")
            await asyncio.sleep(0.01)

    async def rebuild(self) -> int:
        """Drop every projection and replay the whole stream; returns the events applied."""
        await self.store.drop()
        info = await self.js.stream_info(self.subjects.events_stream)
        target = info.state.last_seq
        count = 0
        batch: list[Msg] = []
        async for msg in stream_messages(self.js, self.subjects.events_stream, self.subjects.all_events, target,
                                         timeout=10):
            batch.append(msg)
            if len(batch) == self.max_batch:
                await self.apply_batch(batch)
                count += len(batch)
                batch = []
        if batch:
            await self.apply_batch(batch)
            count += len(batch)
        return count


def _record_lag(last: Msg, event: ev.Event | None) -> None:
    meta = last.metadata
    pending = max(0, meta.num_pending or 0)
    APPLIED_SEQ.set(meta.sequence.stream)
    LAG_EVENTS.set(pending)
    if pending and event is not None:
        LAG_SECONDS.set(max(0.0, (ev.utcnow() - event.occurred_at).total_seconds()))
    else:
        LAG_SECONDS.set(0)
