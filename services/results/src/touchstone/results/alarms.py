"""Alarms that reach a person without Prometheus: every ``AlarmRaised`` event and every dead
letter goes to the configured webhooks (Slack or Lark) and by email.

Two durable consumers feed one reaction, ``notify``: ``alarms`` reads ``AlarmRaised`` from the
events stream, ``alarm-dead-letters`` reads the dead-letter stream (what a consumer gave up on,
with its reason in the headers). Dead letters of these two consumers are not announced: a
channel that fails for good must not feed itself.

Deduplication: an alarm's *fingerprint* is what it is about (a service's alarm kind; one
consumer's dead letters of one message type). ``decide`` sends the first one, holds back the
same fingerprint for ``alarm_repeat_interval_s`` (counting them), and then sends again, saying
how many were held back. The record of each fingerprint lives in the ``{ns}_alarms`` key-value
bucket, written with its revision, so two replicas never both send one.

Channels are independent: each is tried at the same time, a failing webhook does not hold the
email back, and a redelivery sends only to the channels that have not taken the alarm yet. A
channel that refuses for good (a 4xx, a refused login) is given up for that alarm and logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from pydantic import BaseModel, ConfigDict
from touchstone.results.domain import Message
from touchstone.shared import events as ev
from touchstone.shared import metrics
from touchstone.shared.consumer import ConsumerLoop, ConsumerSpec, Delivery
from touchstone.shared.errors import ConcurrencyConflict, PermanentError, UnavailableError
from touchstone.shared.jetstream import open_bucket
from touchstone.shared.reactions import Reactions
from touchstone.shared.subjects import Bucket, Subjects

log = logging.getLogger(__name__)

NOTIFICATIONS = metrics.counter(
    "alarm_notifications_total",
    "Alarm notifications by channel and outcome (sent, failed, given_up, suppressed, stale)",
    ("channel", "outcome"),
)
EVENTS_CONSUMER = "alarms"
DEAD_LETTER_CONSUMER = "alarm-dead-letters"


# --- what an alarm is ---------------------------------------------------------------------


class DeadLetter(BaseModel):
    """One message of the dead-letter stream, as ``ConsumerLoop._dead_letter`` wrote it."""

    model_config = ConfigDict(frozen=True)

    type: Literal["DeadLetter"] = "DeadLetter"
    consumer: str
    reason: str
    original_subject: str
    original_seq: str
    stream_seq: int
    dead_lettered_at: datetime

    @classmethod
    def of(cls, msg: Msg) -> DeadLetter:
        headers = msg.headers or {}
        return cls(
            consumer=headers.get("Touchstone-Consumer", "unknown"), reason=headers.get("Touchstone-Reason", ""),
            original_subject=headers.get("Touchstone-Original-Subject", msg.subject),
            original_seq=headers.get("Touchstone-Original-Sequence", "?"), stream_seq=msg.metadata.sequence.stream,
            dead_lettered_at=msg.metadata.timestamp,
        )

    @property
    def message_type(self) -> str:
        return self.original_subject.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class Alarm:
    """One thing a person must hear about (a ``Message``: title, lines, no link)."""

    id: str
    fingerprint: str
    title: str
    lines: tuple[str, ...]
    occurred_at: datetime
    link: str | None = None


def alarm_of_event(event: ev.AlarmRaised, namespace: str) -> Alarm:
    return Alarm(
        id=f"event:{event.event_id}", fingerprint=f"alarm|{event.service}|{event.kind}",
        title=f"{namespace}: {event.service} alarm {event.kind}",
        lines=(event.message, f"raised {event.occurred_at.isoformat(timespec='seconds')} by {event.service}"),
        occurred_at=event.occurred_at,
    )


def alarm_of_dead_letter(letter: DeadLetter, namespace: str, stream: str) -> Alarm:
    return Alarm(
        id=f"dlq:{stream}:{letter.stream_seq}", fingerprint=f"dlq|{letter.consumer}|{letter.message_type}",
        title=f"{namespace}: {letter.consumer} dead-lettered a {letter.message_type}",
        lines=(f"reason: {letter.reason}", f"subject: {letter.original_subject} (sequence {letter.original_seq})",
               f"kept in stream {stream} at sequence {letter.stream_seq}"),
        occurred_at=letter.dead_lettered_at,
    )


# --- deciding -------------------------------------------------------------------------------


class SentRecord(BaseModel):
    """The last alarm of one fingerprint that was sent, and how it went."""

    model_config = ConfigDict(frozen=True)

    fingerprint: str
    alarm_id: str
    sent_at: datetime
    delivered: tuple[str, ...] = ()
    given_up: tuple[str, ...] = ()
    held_back: int = 0
    """Alarms of this fingerprint not sent since ``sent_at`` (within the repeat interval)."""


@dataclass(frozen=True)
class Decision:
    action: Literal["send", "hold", "stale", "done"]
    record: SentRecord | None
    channels: tuple[str, ...] = ()
    held_before: int = 0
    """How many were held back before this one (the message says so)."""


def decide(record: SentRecord | None, alarm: Alarm, channels: Sequence[str], now: datetime,
           repeat: timedelta, max_age: timedelta) -> Decision:
    """Send, hold back, or drop one alarm, given what was last sent for its fingerprint."""
    if record is not None and record.alarm_id == alarm.id:  # a redelivery: finish what is left
        todo = tuple(c for c in channels if c not in record.delivered and c not in record.given_up)
        return Decision("send" if todo else "done", record, todo, 0)
    if now - alarm.occurred_at > max_age:
        return Decision("stale", record)
    if record is not None and now - record.sent_at < repeat:
        return Decision("hold", record.model_copy(update={"held_back": record.held_back + 1}))
    held = record.held_back if record is not None else 0
    fresh = SentRecord(fingerprint=alarm.fingerprint, alarm_id=alarm.id, sent_at=now)
    return Decision("send", fresh, tuple(channels), held)


def with_held_back(alarm: Alarm, held: int, since: datetime | None) -> Alarm:
    if not held:
        return alarm
    when = f" since {since.isoformat(timespec='seconds')}" if since else ""
    return replace(alarm, lines=(*alarm.lines, f"{held} more like this were held back{when}"))


# --- I/O --------------------------------------------------------------------------------------


class Sender(Protocol):
    async def send(self, message: Message) -> None: ...


@dataclass(frozen=True)
class Channel:
    name: str
    sender: Sender


class AlarmLedger:
    """``SentRecord``s in the ``{ns}_alarms`` bucket, read and written with their revision."""

    def __init__(self, kv: Any) -> None:
        self.kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext, subjects: Subjects) -> AlarmLedger:
        kv = await open_bucket(js, subjects, api.KeyValueConfig(
            bucket=subjects.bucket(Bucket.ALARMS), description="Touchstone alarms: what was sent when", history=1,
            storage=api.StorageType.FILE,
        ))
        return cls(kv)

    @staticmethod
    def key(fingerprint: str) -> str:
        return hashlib.sha256(fingerprint.encode()).hexdigest()[:40]

    async def get(self, fingerprint: str) -> tuple[SentRecord | None, int]:
        """The record and its revision (0: none yet)."""
        try:
            entry = await self.kv.get(self.key(fingerprint))
        except KeyNotFoundError:
            return None, 0
        if not entry.value:
            return None, entry.revision or 0
        return SentRecord.model_validate_json(entry.value), entry.revision or 0

    async def put(self, record: SentRecord, revision: int) -> int:
        """Write ``record`` if nobody wrote since ``revision``; ``ConcurrencyConflict`` if somebody did."""
        body = record.model_dump_json().encode()
        try:
            if revision == 0:
                return int(await self.kv.create(self.key(record.fingerprint), body))
            return int(await self.kv.update(self.key(record.fingerprint), body, last=revision))
        except KeyWrongLastSequenceError as e:
            raise ConcurrencyConflict(f"alarm record {record.fingerprint}", revision) from e


@dataclass
class AlarmDeps:
    ledger: AlarmLedger
    channels: tuple[Channel, ...]
    namespace: str
    dead_letter_stream: str
    repeat: timedelta = timedelta(hours=1)
    max_age: timedelta = timedelta(days=1)
    ignore_consumers: frozenset[str] = frozenset()
    """Durable names whose dead letters are not announced (the alarm consumers themselves)."""
    clock: Callable[[], datetime] = ev.utcnow
    sent: list[Alarm] = field(default_factory=list)
    """Alarms this process sent to at least one channel (for status and tests)."""


async def notify(deps: AlarmDeps, alarm: Alarm) -> None:
    """Send ``alarm`` to every channel that has not taken it, unless it is held back."""
    record, revision = await deps.ledger.get(alarm.fingerprint)
    now = deps.clock()
    decision = decide(record, alarm, [c.name for c in deps.channels], now, deps.repeat, deps.max_age)
    if decision.action in ("stale", "hold"):
        NOTIFICATIONS.labels("all", "stale" if decision.action == "stale" else "suppressed").inc()
        log.info("alarm %s %s", alarm.fingerprint, "too old to send" if decision.action == "stale" else "held back")
        if decision.action == "hold" and decision.record is not None:
            await deps.ledger.put(decision.record, revision)  # a conflict: decide again on redelivery
        return
    if decision.action == "done" or decision.record is None:
        return
    if decision.record is not record:  # a new send: claim it before anything goes out
        revision = await deps.ledger.put(decision.record, revision)
    message = with_held_back(alarm, decision.held_before, record.sent_at if record else None)
    todo = [c for c in deps.channels if c.name in decision.channels]
    outcomes = await asyncio.gather(*(c.sender.send(message) for c in todo), return_exceptions=True)
    delivered, given_up = list(decision.record.delivered), list(decision.record.given_up)
    failed = []
    for channel, outcome in zip(todo, outcomes, strict=True):
        if outcome is None:
            delivered.append(channel.name)
            NOTIFICATIONS.labels(channel.name, "sent").inc()
        elif isinstance(outcome, PermanentError):
            given_up.append(channel.name)
            NOTIFICATIONS.labels(channel.name, "given_up").inc()
            log.error("alarm %s: %s refused it for good: %s", alarm.fingerprint, channel.name, outcome)
        else:
            failed.append(f"{channel.name}: {outcome!r}")
            NOTIFICATIONS.labels(channel.name, "failed").inc()
    if len(delivered) > len(decision.record.delivered):
        deps.sent.append(message)
    done = decision.record.model_copy(update={"delivered": tuple(delivered), "given_up": tuple(given_up)})
    await deps.ledger.put(done, revision)
    if failed:
        raise UnavailableError(f"alarm {alarm.fingerprint} not yet sent to {'; '.join(failed)}")


async def on_alarm_raised(event: ev.AlarmRaised, deps: AlarmDeps, delivery: Delivery) -> None:
    await notify(deps, alarm_of_event(event, deps.namespace))


async def on_dead_letter(letter: DeadLetter, deps: AlarmDeps, delivery: Delivery) -> None:
    if letter.consumer in deps.ignore_consumers:
        log.error("not announcing a dead letter of %s (an alarm consumer): %s", letter.consumer, letter.reason)
        return
    await notify(deps, alarm_of_dead_letter(letter, deps.namespace, deps.dead_letter_stream))


EVENT_REACTIONS = Reactions[AlarmDeps]({ev.AlarmRaised: on_alarm_raised})
# not events: the consumer reads the whole dead-letter stream; the table only dispatches
DEAD_LETTER_REACTIONS = Reactions[AlarmDeps]({DeadLetter: on_dead_letter})


def consumers(js: JetStreamContext, subjects: Subjects, deps: AlarmDeps, *, ack_wait_s: float = 60.0,
              max_deliver: int = 8) -> list[ConsumerLoop[Any]]:
    """The two alarm consumers; a failed channel is retried with a growing delay up to 30 s."""
    events = EVENT_REACTIONS.event_consumer(EVENTS_CONSUMER, subjects, ack_wait_s=ack_wait_s, max_deliver=max_deliver)
    letters = ConsumerSpec(name=DEAD_LETTER_CONSUMER, stream=subjects.dead_letter_stream,
                           filter_subjects=[subjects.all_dead_letters], ack_wait_s=ack_wait_s, max_deliver=max_deliver)
    return [
        ConsumerLoop(js, subjects, events, EVENT_REACTIONS.bind(deps), ev.decode_event),
        ConsumerLoop(js, subjects, letters, DEAD_LETTER_REACTIONS.bind(deps), None, decode_message=DeadLetter.of),
    ]


def ignored_consumers(subjects: Subjects) -> frozenset[str]:
    return frozenset({subjects.durable(EVENTS_CONSUMER), subjects.durable(DEAD_LETTER_CONSUMER)})

