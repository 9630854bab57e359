"""Appending events to the record, and reading an aggregate's history back.

``EventPublisher.append`` sets ``Nats-Msg-Id`` (the event id) so a repeated publish is stored
once, and, when asked, the aggregate's expected last sequence so that two writers cannot both
move the same aggregate: the loser gets ``ConcurrencyConflict`` and must reload and re-decide.
Transport failures are retried with the same message id until ``retry_for`` runs out, which the
duplicate window turns into exactly-once storage.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from nats.errors import ConnectionClosedError, NoRespondersError, OutboundBufferLimitError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import APIError, BadRequestError, NoStreamResponseError, NotFoundError, ServiceUnavailableError
from touchstone.shared.errors import ConcurrencyConflict, UnavailableError
from touchstone.shared.events import Event, TaskEvent, decode_event, encode_event
from touchstone.shared.subjects import Subjects, task_aggregate_id

WRONG_LAST_SEQUENCE = 10071
# a retry that reaches the leader while the first publish of the same id is still being
# replicated (409): the first one's outcome is not known yet, so ask again
DUPLICATE_IN_PROCESS = 10158
# between retries of one append: short, so that writes resume moments after a new stream
# leader is elected (a cluster answers "no responders" at once while it has none)
MAX_RETRY_DELAY_S = 0.25
TRANSIENT = (  # a publish or read worth retrying as it is (the commands' senders use it too)
    NatsTimeoutError,
    asyncio.TimeoutError,
    NoRespondersError,
    ConnectionClosedError,
    OutboundBufferLimitError,
    ServiceUnavailableError,
    # no stream answered (503): a replicated stream between leaders, seen in the chaos suite
    NoStreamResponseError,
)


@dataclass(frozen=True)
class Recorded:
    """An event as stored: its stream sequence and the parsed model."""

    seq: int
    event: Event


class EventPublisher:
    """Appends events to the events stream of one namespace."""

    def __init__(
        self,
        js: JetStreamContext,
        subjects: Subjects,
        *,
        timeout: float = 2.0,
        retry_for: float = 30.0,
    ) -> None:
        self.js = js
        self.subjects = subjects
        self.timeout = timeout
        self.retry_for = retry_for

    def subject_of(self, event: Event) -> str:
        return self.subjects.event(event.aggregate, event.aggregate_id, event.event_type)

    async def append(self, event: Event, *, expected_last_seq: int | None = None) -> int:
        """Store ``event``; returns its stream sequence.

        ``expected_last_seq`` is the stream sequence of the aggregate's last event as the
        caller saw it (0 for a new aggregate); ``None`` appends unconditionally.
        """
        subject = self.subject_of(event)
        headers = {"Nats-Msg-Id": event.event_id}
        if expected_last_seq is not None:
            headers["Nats-Expected-Last-Subject-Sequence"] = str(expected_last_seq)
            headers["Nats-Expected-Last-Subject-Sequence-Subject"] = self.subjects.aggregate_events(
                event.aggregate, event.aggregate_id
            )
        try:
            ack = await publish_retrying(
                self.js, subject, encode_event(event), stream=self.subjects.events_stream, headers=headers,
                timeout=self.timeout, retry_for=self.retry_for, what=f"append {event.event_type}",
            )
        except BadRequestError as e:
            if e.err_code != WRONG_LAST_SEQUENCE:
                raise
            # the same event may already be stored: a publish whose ack was lost and is
            # now retried, or a redelivered decision. That is success, not a conflict.
            stored = await self._stored_seq(event)
            if stored is not None:
                return stored
            raise ConcurrencyConflict(subject, expected_last_seq or 0) from e
        return int(ack.seq)

    async def _stored_seq(self, event: Event) -> int | None:
        """The stream sequence of ``event`` when its aggregate already holds it."""
        for recorded in reversed(await self.load(event.aggregate, event.aggregate_id)):
            if recorded.event.event_id == event.event_id:
                return recorded.seq
        return None

    async def load(self, aggregate: str, aggregate_id: str) -> list[Recorded]:
        """Every event of one aggregate, in order, with its stream sequence.

        Read from the stream's leader, never a direct get: any replica answers those, and a
        follower that has not yet applied an acknowledged append answers without it (a handler
        would decide on a history that lacks the event it is reacting to). A leader's answer
        holds every append acknowledged before the read."""
        filter_subject = self.subjects.aggregate_events(aggregate, aggregate_id)
        recorded: list[Recorded] = []
        seq = 1
        while True:
            try:
                msg = await self.js.get_msg(self.subjects.events_stream, seq=seq, subject=filter_subject, next=True)
            except NotFoundError:
                return recorded
            except TRANSIENT as e:
                raise UnavailableError(f"could not load {aggregate} {aggregate_id}: {e!r}") from e
            assert msg.seq is not None and msg.data is not None
            recorded.append(Recorded(msg.seq, decode_event(msg.data)))
            seq = msg.seq + 1

    async def load_task(self, submission_id: str, task_id: str) -> list[Recorded]:
        return await self.load("task", task_aggregate_id(submission_id, task_id))


def last_seq(history: list[Recorded]) -> int:
    """The expected-last-sequence to append after ``history`` (0 for a new aggregate)."""
    return history[-1].seq if history else 0


def task_events(history: list[Recorded]) -> list[TaskEvent]:
    return [r.event for r in history if isinstance(r.event, TaskEvent)]


async def publish_retrying(
    js: JetStreamContext, subject: str, payload: bytes, *, stream: str, headers: dict[str, str],
    timeout: float, retry_for: float, what: str,
) -> PubAck:
    """Publish to ``stream`` until it acknowledges, retrying as it is (same message id, so the
    duplicate window stores it once) through the broker's trouble for ``retry_for`` seconds:
    ``TRANSIENT`` errors, then ``UnavailableError``; a busy stream (503) or a retry that meets
    its first copy still being replicated (10158), then that error. Any other refusal at once."""
    deadline = time.monotonic() + retry_for
    delay = 0.05
    while True:
        try:
            return await js.publish(subject, payload, timeout=timeout, stream=stream, headers=headers)
        except TRANSIENT as e:
            if time.monotonic() + delay > deadline:
                raise UnavailableError(f"could not {what}: {e!r}") from e
        except APIError as e:
            busy = e.code == 503 or e.err_code == DUPLICATE_IN_PROCESS
            if not busy or time.monotonic() + delay > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_RETRY_DELAY_S)
