"""The consumer loop against a real nats-server: dispatch, retries, dead letters."""

from __future__ import annotations

import asyncio
import contextlib

from touchstone.shared import events as ev
from touchstone.shared.consumer import ConsumerLoop, ConsumerSpec, Delivery
from touchstone.shared.errors import InvalidInputError, UnavailableError
from touchstone.shared.metrics import REGISTRY
from touchstone.shared.publisher import EventPublisher
from touchstone.shared.testing import created, queued


@contextlib.asynccontextmanager
async def running(loop: ConsumerLoop):
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def eventually(predicate, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def spec(subjects, **kw) -> ConsumerSpec:
    return ConsumerSpec(
        name="tester", stream=subjects.events_stream, filter_subjects=[subjects.all_events], **kw
    )


async def dead_letters(js, subjects) -> list:
    sub = await js.subscribe(subjects.all_dead_letters, stream=subjects.dead_letter_stream,
                             ordered_consumer=True)
    out = []
    with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
        while True:
            out.append(await sub.next_msg(timeout=0.5))
    await sub.unsubscribe()
    return out


async def test_malformed_payload_is_dead_lettered_and_nothing_else_is_lost(js, subjects) -> None:
    seen: list[str] = []

    async def on_created(event: ev.SubmissionCreated, d: Delivery) -> None:
        seen.append(event.aggregate_id)

    loop = ConsumerLoop(js, subjects, spec(subjects), {"SubmissionCreated": on_created}, ev.decode_event)
    pub = EventPublisher(js, subjects)
    async with running(loop):
        await pub.append(created("s-a"))
        await js.publish(f"{subjects.ns}.evt.submission.s-x.SubmissionCreated", b'{"type": "Submiss',
                         stream=subjects.events_stream)
        await js.publish(f"{subjects.ns}.evt.submission.s-y.SubmissionCreated",
                         b'{"type": "SubmissionCreated", "aggregate_id": "s-y"}',
                         stream=subjects.events_stream)
        await pub.append(created("s-b"))
        await eventually(lambda: len(seen) == 2 and loop.dead_lettered == 2)
    assert seen == ["s-a", "s-b"]
    letters = await dead_letters(js, subjects)
    assert len(letters) == 2
    reasons = [m.headers["Touchstone-Reason"] for m in letters]
    assert all(r.startswith("malformed payload") for r in reasons)
    assert "owner" in reasons[1]  # names the missing field
    assert letters[0].headers["Touchstone-Original-Subject"].endswith("s-x.SubmissionCreated")
    assert letters[0].data == b'{"type": "Submiss'


async def test_a_retryable_error_is_redelivered_until_it_succeeds(js, subjects) -> None:
    tries: list[int] = []

    async def flaky(event: ev.Event, d: Delivery) -> None:
        tries.append(d.num_delivered)
        if d.num_delivered < 3:
            raise UnavailableError("store is down", retry_after=0.05)

    loop = ConsumerLoop(js, subjects, spec(subjects, max_deliver=5), {"SubmissionCreated": flaky},
                        ev.decode_event)
    async with running(loop):
        await EventPublisher(js, subjects).append(created("s-r"))
        await eventually(lambda: loop.processed == 1)
    assert tries == [1, 2, 3]
    assert loop.dead_lettered == 0


async def test_a_permanent_error_goes_to_the_dead_letters_at_once(js, subjects) -> None:
    tries: list[int] = []

    async def refuse(event: ev.Event, d: Delivery) -> None:
        tries.append(d.num_delivered)
        raise InvalidInputError("feature set path escapes the repository")

    loop = ConsumerLoop(js, subjects, spec(subjects), {"SubmissionCreated": refuse}, ev.decode_event)
    async with running(loop):
        await EventPublisher(js, subjects).append(created("s-p"))
        await eventually(lambda: loop.dead_lettered == 1)
    assert tries == [1]
    (letter,) = await dead_letters(js, subjects)
    assert "escapes the repository" in letter.headers["Touchstone-Reason"]


async def test_a_message_failing_every_time_is_dead_lettered_after_max_deliver(js, subjects) -> None:
    async def broken(event: ev.Event, d: Delivery) -> None:
        raise RuntimeError("bug")

    loop = ConsumerLoop(js, subjects, spec(subjects, max_deliver=3), {"SubmissionCreated": broken},
                        ev.decode_event, base_delay_s=0.01)
    async with running(loop):
        await EventPublisher(js, subjects).append(created("s-bug"))
        await eventually(lambda: loop.dead_lettered == 1)
    (letter,) = await dead_letters(js, subjects)
    assert "gave up after 3 tries" in letter.headers["Touchstone-Reason"]


async def test_long_work_is_kept_alive_with_in_progress(js, subjects) -> None:
    tries: list[int] = []

    async def slow(event: ev.Event, d: Delivery) -> None:
        tries.append(d.num_delivered)
        await asyncio.sleep(2.5)  # longer than ack_wait: only in_progress prevents redelivery

    loop = ConsumerLoop(js, subjects, spec(subjects, ack_wait_s=1.0), {"TaskQueued": slow},
                        ev.decode_event, progress_every_s=0.3)
    async with running(loop):
        await EventPublisher(js, subjects).append(queued("s-l", "pi-5"))
        await eventually(lambda: loop.processed == 1)
    assert tries == [1]


async def test_types_without_a_handler_are_acknowledged_and_skipped(js, subjects) -> None:
    loop = ConsumerLoop(js, subjects, spec(subjects), {}, ev.decode_event)
    async with running(loop):
        await EventPublisher(js, subjects).append(created("s-skip"))
        await asyncio.sleep(0.3)
    info = await js.consumer_info(subjects.events_stream, loop.durable)
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def test_outcomes_errors_redeliveries_and_lag_are_counted(js, subjects) -> None:
    name = f"metrics-{subjects.ns}"
    tries: dict[str, int] = {}

    async def flaky(event: ev.Event, d: Delivery) -> None:
        tries[event.aggregate_id] = tries.get(event.aggregate_id, 0) + 1
        if event.aggregate_id == "s-flaky" and tries[event.aggregate_id] == 1:
            raise UnavailableError("object store down")
        if event.aggregate_id == "s-bad":
            raise InvalidInputError("no such bucket")

    def sample(metric: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(metric, {"consumer": name, **labels}) or 0.0

    pub = EventPublisher(js, subjects)
    for sid in ("s-ok", "s-flaky", "s-bad"):
        await pub.append(created(sid))
    await pub.append(queued("s-ok", "pi-60"))  # no handler for TaskQueued: ignored
    loop = ConsumerLoop(js, subjects, ConsumerSpec(name=name, stream=subjects.events_stream,
                                                   filter_subjects=[subjects.all_events]),
                        {"SubmissionCreated": flaky}, ev.decode_event, base_delay_s=0.05)
    async with running(loop):
        await eventually(lambda: sample("touchstone_consumer_messages_total", outcome="acked") == 2)
    assert sample("touchstone_consumer_messages_total", outcome="retried") == 1
    assert sample("touchstone_consumer_messages_total", outcome="dead_lettered") == 1
    assert sample("touchstone_consumer_messages_total", outcome="ignored") == 1
    assert sample("touchstone_handler_errors_total", type="SubmissionCreated", kind="retryable") == 1
    assert sample("touchstone_handler_errors_total", type="SubmissionCreated", kind="permanent") == 1
    assert sample("touchstone_consumer_redeliveries_total") == 1
    assert sample("touchstone_dead_letters_total") == 1
    assert sample("touchstone_handler_duration_seconds_count", type="SubmissionCreated") == 4
    assert sample("touchstone_consumer_pending_messages") == 0
