"""A steady load of appends through Touchstone's own publisher, and what it was promised.

Each writer creates submissions and their first task, every append with the aggregate's
expected sequence, exactly as the services write. Every acknowledged append is remembered with
its stream sequence and the time of its acknowledgement: the record the checks hold the cluster
to. A failed append (the publisher gave up) promised nothing and is only counted.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from dataclasses import dataclass, field

from nats.js import JetStreamContext
from touchstone.shared.errors import ConcurrencyConflict, UnavailableError
from touchstone.shared.publisher import EventPublisher
from touchstone.shared.subjects import Subjects
from touchstone.shared.testing import created, queued


@dataclass(frozen=True)
class Ack:
    event_id: str
    seq: int
    at: float


@dataclass
class AppendLoad:
    js: JetStreamContext
    subjects: Subjects
    writers: int = 4
    acked: list[Ack] = field(default_factory=list)
    failed: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        publisher = EventPublisher(self.js, self.subjects, timeout=2.0, retry_for=60.0)
        self._tasks = [asyncio.create_task(self._write(publisher)) for _ in range(self.writers)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _write(self, publisher: EventPublisher) -> None:
        while not self._stop.is_set():
            sid = "c" + uuid.uuid4().hex[:12]
            for event in (created(sid), queued(sid, "pi-60")):
                try:
                    seq = await publisher.append(event, expected_last_seq=0)
                except (UnavailableError, ConcurrencyConflict):
                    self.failed += 1
                    break
                self.acked.append(Ack(event.event_id, seq, time.monotonic()))
            await asyncio.sleep(0.005)

    def longest_pause_after(self, since: float, window: float) -> float:
        """The longest time without an acknowledgement in the ``window`` seconds after ``since``
        (writes that never resumed count as the whole time to the end of the load)."""
        times = [since, *sorted(a.at for a in self.acked if since < a.at <= since + window)]
        later = [a.at for a in self.acked if a.at > since + window]
        if later:
            times.append(min(later))
        return max((b - a for a, b in itertools.pairwise(times)), default=float("inf"))

    def acked_after(self, since: float) -> int:
        return sum(1 for a in self.acked if a.at > since)
