"""Builders and probes shared by the scheduler's tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from touchstone.scheduler.config import SchedulerSettings
from touchstone.scheduler.service import Scheduler
from touchstone.shared import events as ev
from touchstone.shared.agents import AgentHeartbeat, encode_report
from touchstone.shared.commands import LaunchTask, TerminateTask, command_consumer, decode_command
from touchstone.shared.consumer import Delivery
from touchstone.shared.jetstream import system_bucket
from touchstone.shared.publisher import EventPublisher
from touchstone.shared.subjects import Bucket, Subjects, task_aggregate_id
from touchstone.shared.system import Server, SystemSettings, write_system

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def settings(subjects: Subjects, **kw: object) -> SchedulerSettings:
    defaults: dict[str, object] = {
        "namespace": subjects.ns, "lease_ttl_s": 2.0, "sweep_interval_s": 3600.0, "retry_base_delay_s": 0.0,
    }
    return SchedulerSettings(**{**defaults, **kw})


@contextlib.asynccontextmanager
async def running(
    nc: NATS, js: JetStreamContext, subjects: Subjects, *, clock: Callable[[], datetime] = ev.utcnow,
    wait_active: bool = True, **kw: object,
) -> AsyncIterator[Scheduler]:
    """A scheduler running until the block ends (active and caught up when the block starts,
    unless ``wait_active`` is off)."""
    scheduler = Scheduler(settings(subjects, **kw), nc, js, subjects, clock=clock)
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    try:
        if wait_active:
            await eventually(lambda: scheduler.active)
        else:
            await eventually(lambda: scheduler.feed.caught_up.is_set())
        yield scheduler
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def drop_lease_bucket(js: JetStreamContext, subjects: Subjects) -> None:
    with contextlib.suppress(NotFoundError):
        await js.delete_stream(f"KV_{subjects.bucket(Bucket.LEASE)}")


async def eventually(predicate: Callable[[], object], timeout: float = 15.0) -> None:
    """Wait for a condition; fails the test when it does not come (a liveness bound, not a timing check)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def until(probe: Callable[[], object], predicate: Callable[[object], bool], timeout: float = 15.0) -> object:
    """Await ``probe()`` until ``predicate`` holds for its result; returns that result."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await probe()  # type: ignore[misc]
        if predicate(value):
            return value
        assert loop.time() < deadline, f"condition not reached; last value: {value!r}"[:2000]
        await asyncio.sleep(0.02)


async def stored(js: JetStreamContext, stream: str, subject: str) -> list[tuple[int, bytes, dict[str, str]]]:
    """Every message of ``stream`` on ``subject`` (wildcards allowed), without consuming any."""
    out = []
    seq = 1
    while True:
        try:
            msg = await js.get_msg(stream, seq=seq, subject=subject, next=True)
        except NotFoundError:
            return out
        assert msg.seq is not None
        out.append((msg.seq, msg.data or b"", dict(msg.headers or {})))
        seq = msg.seq + 1


async def count(js: JetStreamContext, subjects: Subjects, event_type: str) -> int:
    """How many events of one type the stream holds (cheap: one stream-info request)."""
    info = await js.stream_info(subjects.events_stream, subjects_filter=subjects.events_of_type("*", event_type))
    return sum((info.state.subjects or {}).values())


async def events(js: JetStreamContext, subjects: Subjects) -> list[ev.Event]:
    return [ev.decode_event(data) for _, data, _ in await stored(js, subjects.events_stream, subjects.all_events)]


async def commands(js: JetStreamContext, subjects: Subjects, service: str) -> list[tuple[object, str]]:
    """Commands queued for ``service``, with their ``Nats-Msg-Id``."""
    msgs = await stored(js, subjects.commands_stream, subjects.service_commands(service))
    return [(decode_command(data), headers.get("Nats-Msg-Id", "")) for _, data, headers in msgs]


def of_type(all_events: list[ev.Event], name: str, task_id: str | None = None) -> list[ev.Event]:
    return [e for e in all_events
            if e.event_type == name and (task_id is None or getattr(e, "task_id", None) == task_id)]


async def declare_servers(js: JetStreamContext, subjects: Subjects, *servers: Server, **kw: object) -> None:
    kv = await system_bucket(js, subjects)
    await write_system(kv, SystemSettings(servers=list(servers), **kw))  # type: ignore[arg-type]


async def heartbeat(nc: NATS, subjects: Subjects, host: str, *, slots: int = 4, free: int | None = None,
                    running: tuple[str, ...] = (), namespace: str | None = None) -> None:
    report = AgentHeartbeat(host=host, version="test", slots_total=slots, namespace=namespace,
                            slots_free=slots if free is None else free, running=running)
    await nc.publish(subjects.agent_reports(host), encode_report(report))
    await nc.flush()


def created(sid: str) -> ev.SubmissionCreated:
    return ev.SubmissionCreated(aggregate_id=sid, correlation_id=sid, owner="alice", name=f"fs {sid}",
                                git_url="https://git.example/fs.git", git_ref="v1", feature_set_path="fs")


def sub_event(cls: type[ev.SubmissionEvent], sid: str, **kw: object) -> ev.SubmissionEvent:
    return cls(aggregate_id=sid, correlation_id=sid, **kw)  # type: ignore[arg-type]


def task_event(cls: type[ev.TaskEvent], sid: str, tid: str, **kw: object) -> ev.TaskEvent:
    return cls(aggregate_id=task_aggregate_id(sid, tid), correlation_id=sid, submission_id=sid, task_id=tid, **kw)  # type: ignore[arg-type]


def queued(sid: str, tid: str, **kw: object) -> ev.TaskQueued:
    spec = ev.TaskSpec(git_url="https://git.example/fs.git")
    return task_event(ev.TaskQueued, sid, tid, spec=spec, **kw)  # type: ignore[return-value]


async def provider_runs(pub: EventPublisher, sid: str, tid: str, attempt: int, *, finish: bool = True,
                        report: dict[str, object] | None = None, at: datetime | None = None,
                        commit: str | None = None) -> None:
    """What a provider appends while it runs one attempt to the end."""
    stamp = {"occurred_at": at} if at else {}
    name = f"touchstone-{sid}-{tid}-{attempt}"
    await pub.append(task_event(ev.ContainerLaunched, sid, tid, attempt=attempt, container_name=name, **stamp))
    await pub.append(task_event(ev.ContainerReady, sid, tid, attempt=attempt, **stamp))
    await pub.append(task_event(ev.TrainingStarted, sid, tid, attempt=attempt, **stamp))
    if finish:
        await pub.append(task_event(ev.TrainingFinished, sid, tid, attempt=attempt, report=report, commit=commit,
                                    **stamp))


class FakeProvider:
    """Stands in for a provider: takes its commands off the work queue and runs every launched
    attempt to the end (launched, ready, started, finished), each after ``run_s`` seconds."""

    def __init__(self, js: JetStreamContext, subjects: Subjects, service: str = "runpod-provider",
                 run_s: float = 0.0) -> None:
        self.js, self.subjects, self.service, self.run_s = js, subjects, service, run_s
        self.pub = EventPublisher(js, subjects)
        self.launched: Counter[tuple[str, str, int]] = Counter()
        self.terminated: Counter[tuple[str, str, int]] = Counter()
        self._runs: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        handlers = {"LaunchTask": self.on_launch, "TerminateTask": self.on_terminate}
        loop = command_consumer(self.js, self.subjects, self.service, handlers, ack_wait_s=30, max_deliver=5)
        await loop.run(stop)
        for task in list(self._runs):
            task.cancel()

    async def on_launch(self, command: LaunchTask, delivery: Delivery) -> None:
        key = (command.submission_id, command.task_id, command.attempt)
        self.launched[key] += 1
        if self.launched[key] == 1:
            task = asyncio.create_task(self._attempt(command))
            self._runs.add(task)
            task.add_done_callback(self._runs.discard)

    async def on_terminate(self, command: TerminateTask, delivery: Delivery) -> None:
        self.terminated[(command.submission_id, command.task_id, command.attempt)] += 1

    async def _attempt(self, command: LaunchTask) -> None:
        await asyncio.sleep(self.run_s)
        await provider_runs(self.pub, command.submission_id, command.task_id, command.attempt)


@contextlib.asynccontextmanager
async def provider(js: JetStreamContext, subjects: Subjects, **kw: object) -> AsyncIterator[FakeProvider]:
    fake = FakeProvider(js, subjects, **kw)  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(fake.run(stop))
    try:
        yield fake
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
