"""The scheduler's edges: the event feed, agent reports, commands out, the leader lease."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext, api
from nats.js.kv import KeyValue
from pydantic import ValidationError
from touchstone.scheduler.pipeline import Pipeline
from touchstone.shared import events as ev
from touchstone.shared.agents import AgentHeartbeat
from touchstone.shared.agents import listen_to_agents as agent_reports
from touchstone.shared.commands import Command
from touchstone.shared.consumer import Delivery
from touchstone.shared.jetstream import open_bucket, ordered_feed
from touchstone.shared.publisher import publish_retrying
from touchstone.shared.subjects import Bucket, Subjects, reporting_host

log = logging.getLogger(__name__)

LEASE_KEY = "leader"


class EventFeed:
    """Follows the whole events stream in order (an ordered consumer from the first event):
    rebuilds the view at start, then keeps it current. ``caught_up`` is set once every event
    stored when it started has been handed over. ``is_echo(subject, seq, msg_id)`` may claim a
    message before it is parsed (an own append the view already holds)."""

    def __init__(
        self,
        js: JetStreamContext,
        subjects: Subjects,
        on_event: Callable[[int, ev.Event], Awaitable[None]],
        is_echo: Callable[[str, int, str], bool] | None = None,
    ) -> None:
        self.js = js
        self.subjects = subjects
        self.on_event = on_event
        self.is_echo = is_echo
        self.caught_up = asyncio.Event()
        self.last_seq = 0
        self.skipped = 0

    async def run(self, stop: asyncio.Event) -> None:
        info = await self.js.stream_info(self.subjects.events_stream)
        target = info.state.last_seq
        if target == 0:
            self.caught_up.set()
        async with ordered_feed(self.js, self.subjects.events_stream, self.subjects.all_events) as queue:
            while (msg := await _next_or_stop(queue, stop)) is not None:
                seq = msg.metadata.sequence.stream
                msg_id = msg.headers.get("Nats-Msg-Id") if msg.headers else None
                if not (msg_id and self.is_echo is not None and self.is_echo(msg.subject, seq, msg_id)):
                    await self._hand_over(msg, seq)
                self.last_seq = seq
                if seq >= target:
                    self.caught_up.set()

    async def _hand_over(self, msg: Msg, seq: int) -> None:
        try:
            event = ev.decode_event(msg.data)
        except (ValidationError, ValueError) as e:
            self.skipped += 1
            log.error("skipping malformed event at seq %d on %s: %s", seq, msg.subject, e)
        else:
            await self.on_event(seq, event)


async def _next_or_stop(queue: asyncio.Queue[Msg], stop: asyncio.Event) -> Msg | None:
    """The next message, or ``None`` once ``stop`` is set."""
    if stop.is_set():
        return None
    getting = asyncio.ensure_future(queue.get())
    stopping = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait({getting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if getting in done:
        return getting.result()
    getting.cancel()
    return None


async def listen_to_agents(
    nc: NATS, subjects: Subjects, on_heartbeat: Callable[[AgentHeartbeat], None]
) -> Subscription:
    """Every agent's heartbeats (``shared.agents.listen_to_agents``); one whose host differs from
    its subject's (an agent may only publish on its own) is dropped. One that names another
    namespace is passed on: placement must stop using that host at once (``domain.foreign``)."""

    async def on_agent_heartbeat(heartbeat: AgentHeartbeat, delivery: Delivery) -> None:
        if heartbeat.host != reporting_host(delivery.subject):
            log.warning("dropping heartbeat of %s on %s", heartbeat.host, delivery.subject)
            return
        on_heartbeat(heartbeat)

    return await agent_reports(nc, subjects, {"AgentHeartbeat": on_agent_heartbeat})


class CommandBus:
    """Publishes commands to their service's work queue, deduplicated by message id."""

    def __init__(
        self, js: JetStreamContext, subjects: Subjects, *, pipeline: Pipeline, timeout: float = 2.0,
        retry_for: float = 10.0,
    ) -> None:
        self.js = js
        self.pipeline = pipeline
        self.subjects = subjects
        self.timeout = timeout
        self.retry_for = retry_for
        """How long one send is retried through a broker's trouble (a leader election, a 503);
        a launch still unsent then is sent again by the next sweep."""
        self.sent = 0

    async def send_many(self, commands: list[tuple[str, Command, str]]) -> None:
        """Send many commands before awaiting any acknowledgement; those that got none are sent
        again one at a time (the stream's duplicate window keeps one copy)."""
        futures = []
        for service, command, msg_id in commands:
            headers = {"Nats-Msg-Id": msg_id, "Nats-Expected-Stream": self.subjects.commands_stream}
            data = command.model_dump_json().encode()
            futures.append(await self.pipeline.publish(self._subject(service, command), data, headers))
        outcomes = await self.pipeline.acks(futures, self.timeout)
        for (service, command, msg_id), outcome in zip(commands, outcomes, strict=True):
            if isinstance(outcome, int):
                self.sent += 1
            else:
                await self.send(service, command, msg_id)

    def _subject(self, service: str, command: Command) -> str:
        return self.subjects.command(service, str(getattr(command, "type", type(command).__name__)))

    async def send(self, service: str, command: Command, msg_id: str) -> None:
        subject = self._subject(service, command)
        await publish_retrying(
            self.js, subject, command.model_dump_json().encode(), stream=self.subjects.commands_stream,
            headers={"Nats-Msg-Id": msg_id}, timeout=self.timeout, retry_for=self.retry_for, what=f"send {subject}",
        )
        self.sent += 1


class LeaderLease:
    """One key in a key-value bucket whose entries expire after ``ttl_s``: whoever creates the
    key leads and renews it every third of the TTL with a compare-and-set. A leader that dies
    stops renewing, the key expires, and a standby's next create succeeds."""

    def __init__(self, js: JetStreamContext, subjects: Subjects, owner: str, ttl_s: float) -> None:
        self.js = js
        self.subjects = subjects
        self.bucket = subjects.bucket(Bucket.LEASE)
        self.owner = owner
        self.ttl_s = ttl_s
        self.revision = 0
        self._valid_until = 0.0
        self.kv: KeyValue | None = None

    @property
    def held(self) -> bool:
        return self.revision > 0 and time.monotonic() < self._valid_until

    async def ensure(self) -> KeyValue:
        if self.kv is None:
            self.kv = await open_bucket(self.js, self.subjects, api.KeyValueConfig(
                bucket=self.bucket, description="Touchstone scheduler leader lease",
                ttl=self.ttl_s, history=1, storage=api.StorageType.FILE,
            ))
        return self.kv

    async def try_hold(self) -> bool:
        """Acquire or renew once; ``True`` while this process leads."""
        started = time.monotonic()
        try:
            kv = await self.ensure()  # two replicas starting together race to create the bucket
            if self.revision:
                self.revision = await kv.update(LEASE_KEY, self.owner.encode(), last=self.revision)
            else:
                self.revision = await kv.create(LEASE_KEY, self.owner.encode())
            self._valid_until = started + self.ttl_s * 0.8
        except nats.js.errors.KeyWrongLastSequenceError:
            self.revision = 0
        except (TimeoutError, NatsTimeoutError, NoRespondersError, nats.js.errors.NoStreamResponseError,
                nats.js.errors.APIError) as e:
            # a new three-replica bucket answers nothing until its stream has a leader
            log.warning("lease renewal failed: %r", e)
        if not self.held:
            self.revision = 0
        return self.held

    async def run(self, stop: asyncio.Event, on_change: Callable[[bool], None]) -> None:
        was = False
        try:
            while not stop.is_set():
                now_held = await self.try_hold()
                if now_held != was:
                    log.info("%s leadership: %s", self.owner, "acquired" if now_held else "lost")
                    on_change(now_held)
                    was = now_held
                # the leader renews every third of the TTL; a standby asks far more often, so it
                # takes over moments after the lease expires, not up to a third of a TTL later
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.ttl_s / (3 if now_held else 12))
        finally:
            if was:
                on_change(False)
            await self.release()

    async def release(self) -> None:
        """Give the lease up at once so a standby need not wait for it to expire."""
        if self.kv is not None and self.revision:
            with contextlib.suppress(Exception):
                await self.kv.delete(LEASE_KEY, last=self.revision)
        self.revision = 0
