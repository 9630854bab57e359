"""The one consumer loop: pull, decode, dispatch through a handler table, settle.

Settling is decided here and nowhere else:

| outcome of the handler            | JetStream action                                  |
|-----------------------------------|---------------------------------------------------|
| returned                          | ack                                               |
| no handler for this type          | ack (not ours)                                    |
| payload does not decode           | dead-letter with the reason, term                 |
| ``PermanentError``                | dead-letter with the reason, term                 |
| ``RetryableError`` / conflict /   | nak with a growing delay (``retry_after`` wins);  |
| any other exception               | after ``max_deliver`` tries: dead-letter, term    |

While a handler runs longer than ``progress_every`` seconds, ``in_progress`` keeps the message
from being redelivered.

Every outcome is counted (``touchstone_consumer_messages_total``, ``touchstone_handler_errors_total``,
``touchstone_consumer_redeliveries_total``, ``touchstone_dead_letters_total``) and the messages
still pending for the consumer are a gauge (``touchstone_consumer_pending_messages``): its lag.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext, api
from nats.js.errors import FetchTimeoutError, NotFoundError
from pydantic import BaseModel, ValidationError
from touchstone.shared import metrics
from touchstone.shared.errors import ConcurrencyConflict, NotYet, PermanentError, RetryableError
from touchstone.shared.health import LOOPS
from touchstone.shared.logs import task_context
from touchstone.shared.subjects import Subjects

log = logging.getLogger(__name__)

MESSAGES = metrics.counter(
    "consumer_messages_total",
    "Messages each durable consumer settled, by outcome: acked, ignored (not its type), retried, dead_lettered",
    ("consumer", "outcome"),
)
HANDLER_ERRORS = metrics.counter(
    "handler_errors_total",
    "Handler failures by consumer, message type and error kind (permanent, retryable, not_yet, unexpected)",
    ("consumer", "type", "kind"),
)
REDELIVERIES = metrics.counter(
    "consumer_redeliveries_total", "Messages delivered to a consumer more than once", ("consumer",)
)
DEAD_LETTERS = metrics.counter(
    "dead_letters_total", "Messages a consumer moved to the dead-letter stream", ("consumer",)
)
PENDING = metrics.gauge(
    "consumer_pending_messages", "Messages in the stream not yet delivered to the consumer (its lag)", ("consumer",)
)
HANDLER_SECONDS = metrics.histogram("handler_duration_seconds", "Time a handler took, by consumer and type",
                                    ("consumer", "type"))

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Delivery:
    """Where a message came from; handlers that need the stream sequence read it here."""

    subject: str
    stream_seq: int
    num_delivered: int
    num_pending: int


Handler = Callable[[Any, Delivery], Awaitable[None]]


@dataclass(frozen=True)
class ConsumerSpec:
    """A durable pull consumer on one stream."""

    name: str
    stream: str
    filter_subjects: Sequence[str]
    ack_wait_s: float = 30.0
    max_deliver: int = 5
    batch: int = 128
    deliver_policy: api.DeliverPolicy = api.DeliverPolicy.ALL


class ConsumerLoop(Generic[M]):
    """Runs one durable consumer until ``stop`` is set."""

    def __init__(
        self,
        js: JetStreamContext,
        subjects: Subjects,
        spec: ConsumerSpec,
        handlers: Mapping[str, Handler],
        decode: Callable[[bytes], M] | None,
        *,
        decode_message: Callable[[Msg], M] | None = None,
        type_of: Callable[[M], str] = lambda m: str(getattr(m, "type", type(m).__name__)),
        base_delay_s: float = 0.5,
        max_delay_s: float = 30.0,
        progress_every_s: float | None = None,
        idle_wait_s: float = 1.0,
    ) -> None:
        self.js = js
        self.subjects = subjects
        self.spec = spec
        self.handlers = dict(handlers)
        if decode is None and decode_message is None:
            raise ValueError("a consumer needs decode or decode_message")
        self.decode = decode
        self.decode_message = decode_message
        """Decodes the whole message (its headers too), for streams whose facts sit in headers."""
        self.type_of = type_of
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.progress_every_s = progress_every_s or spec.ack_wait_s / 3
        self.idle_wait_s = idle_wait_s
        self.durable = subjects.durable(spec.name)
        self.processed = 0
        self.dead_lettered = 0
        PENDING.labels(spec.name).set(0)

    async def ensure(self) -> None:
        """Create the durable consumer when missing (idempotent)."""
        filters = list(self.spec.filter_subjects)
        config = api.ConsumerConfig(
            durable_name=self.durable,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self.spec.ack_wait_s,
            max_deliver=self.spec.max_deliver + 1,
            deliver_policy=self.spec.deliver_policy,
            max_ack_pending=max(1000, self.spec.batch * 4),
            filter_subject=filters[0] if len(filters) == 1 else None,
            filter_subjects=filters if len(filters) > 1 else None,
        )
        try:
            await self.js.consumer_info(self.spec.stream, self.durable)
        except NotFoundError:
            await self.js.add_consumer(self.spec.stream, config)

    async def run(self, stop: asyncio.Event) -> None:
        await self.ensure()
        sub = await self.js.pull_subscribe_bind(durable=self.durable, stream=self.spec.stream)
        try:
            with LOOPS.running(f"consumer:{self.durable}"):  # the process's readiness (/readyz)
                while not stop.is_set():
                    msgs = await self._next_batch(sub)
                    for msg in msgs:
                        await self.process(msg)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _next_batch(self, sub: JetStreamContext.PullSubscription) -> list[Msg]:
        """Wait for one message (returns the moment it arrives), then take whatever else is
        already pending without waiting for a full batch."""
        try:
            first = await sub.fetch(1, timeout=self.idle_wait_s)
        except (TimeoutError, NatsTimeoutError, FetchTimeoutError):
            PENDING.labels(self.spec.name).set(0)
            return []
        except Exception as e:  # connection trouble: back off, the client reconnects
            log.warning("fetch failed on %s: %r", self.durable, e)
            await asyncio.sleep(0.2)
            return []
        pending = first[-1].metadata.num_pending if first else 0
        PENDING.labels(self.spec.name).set(max(0, pending))
        if pending <= 0:
            return first
        try:
            more = await sub.fetch(min(pending, self.spec.batch), timeout=self.idle_wait_s)
        except (TimeoutError, NatsTimeoutError, FetchTimeoutError):
            more = []
        return first + more

    async def process(self, msg: Msg) -> None:
        meta = msg.metadata
        delivery = Delivery(
            subject=msg.subject,
            stream_seq=meta.sequence.stream,
            num_delivered=meta.num_delivered,
            num_pending=meta.num_pending,
        )
        if delivery.num_delivered > 1:
            REDELIVERIES.labels(self.spec.name).inc()
        try:
            model = self.decode_message(msg) if self.decode_message is not None else self._decode(msg.data)
        except (ValidationError, ValueError) as e:
            await self._dead_letter(msg, delivery, f"malformed payload: {_short(e)}")
            return
        kind = self.type_of(model)
        handler = self.handlers.get(kind)
        if handler is None:
            await msg.ack()
            MESSAGES.labels(self.spec.name, "ignored").inc()
            return
        with task_context(model):
            await self._handle(msg, delivery, model, kind, handler)

    async def _handle(self, msg: Msg, delivery: Delivery, model: M, kind: str, handler: Handler) -> None:
        started = time.perf_counter()
        try:
            await self._run_with_progress(msg, handler(model, delivery))
        except PermanentError as e:
            HANDLER_ERRORS.labels(self.spec.name, kind, "permanent").inc()
            await self._dead_letter(msg, delivery, f"{type(e).__name__}: {e}")
            return
        except Exception as e:  # retryable, a conflict, or a bug: try again later
            HANDLER_ERRORS.labels(self.spec.name, kind, _error_kind(e)).inc()
            if delivery.num_delivered >= self.spec.max_deliver:
                await self._dead_letter(
                    msg, delivery, f"gave up after {delivery.num_delivered} tries: {type(e).__name__}: {e}"
                )
                return
            delay = self._delay(delivery.num_delivered, e)
            log.log(
                logging.DEBUG if isinstance(e, NotYet) else logging.WARNING,
                "handler %s failed on %s (try %d), retrying in %.1fs: %r",
                kind, delivery.subject, delivery.num_delivered, delay, e,
            )
            await msg.nak(delay=delay)
            MESSAGES.labels(self.spec.name, "retried").inc()
            return
        finally:
            HANDLER_SECONDS.labels(self.spec.name, kind).observe(time.perf_counter() - started)
        await msg.ack()
        MESSAGES.labels(self.spec.name, "acked").inc()
        self.processed += 1

    def _decode(self, data: bytes) -> M:
        assert self.decode is not None
        return self.decode(data)

    def _delay(self, num_delivered: int, error: BaseException) -> float:
        retry_after = getattr(error, "retry_after", None)
        if retry_after:
            return float(retry_after)
        return float(min(self.max_delay_s, self.base_delay_s * 2 ** (num_delivered - 1)))

    async def _run_with_progress(self, msg: Msg, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        while True:
            done, _ = await asyncio.wait({task}, timeout=self.progress_every_s)
            if done:
                task.result()
                return
            with contextlib.suppress(Exception):
                await msg.in_progress()

    async def _dead_letter(self, msg: Msg, delivery: Delivery, reason: str) -> None:
        log.error("dead-lettering %s seq %d: %s", delivery.subject, delivery.stream_seq, reason)
        headers = {
            "Touchstone-Reason": reason[:1000].replace("\r", " ").replace("\n", " "),
            "Touchstone-Original-Subject": delivery.subject,
            "Touchstone-Original-Sequence": str(delivery.stream_seq),
            "Touchstone-Consumer": self.durable,
            "Nats-Msg-Id": f"dlq-{self.durable}-{delivery.stream_seq}",
        }
        await self.js.publish(
            self.subjects.dead_letter(self.spec.name),
            msg.data,
            headers=headers,
            stream=self.subjects.dead_letter_stream,
        )
        await msg.term()
        self.dead_lettered += 1
        MESSAGES.labels(self.spec.name, "dead_lettered").inc()
        DEAD_LETTERS.labels(self.spec.name).inc()


def _error_kind(e: Exception) -> str:
    if isinstance(e, NotYet):
        return "not_yet"
    if isinstance(e, RetryableError | ConcurrencyConflict):
        return "retryable"
    return "unexpected"


def _short(e: Exception) -> str:
    """A one-line reason: for a validation error, each bad field and what is wrong with it."""
    if isinstance(e, ValidationError):
        parts = []
        for err in e.errors()[:8]:
            where = ".".join(str(p) for p in err["loc"][1:] or err["loc"]) or "body"
            parts.append(f"{where}: {err['msg']}")
        return "; ".join(parts)[:600]
    return str(e).replace("\n", " ")[:600]
