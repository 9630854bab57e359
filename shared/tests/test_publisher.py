"""The publisher against a real nats-server: dedupe, optimistic concurrency, history."""

from __future__ import annotations

import asyncio

import pytest
from touchstone.shared import events as ev
from touchstone.shared.errors import ConcurrencyConflict
from touchstone.shared.publisher import EventPublisher, last_seq
from touchstone.shared.testing import created, queued, task_event


async def stream_count(js, subjects) -> int:
    return (await js.stream_info(subjects.events_stream)).state.messages


async def test_the_same_event_published_twice_is_stored_once(js, subjects) -> None:
    pub = EventPublisher(js, subjects)
    event = created("s-dup")
    first = await pub.append(event)
    second = await pub.append(event)
    assert first == second
    assert await stream_count(js, subjects) == 1


async def test_the_same_event_appended_again_with_its_expected_sequence_is_not_a_conflict(js, subjects) -> None:
    """A retry after a lost ack repeats the expected sequence the first try already moved."""
    pub = EventPublisher(js, subjects)
    event = queued("s-retry", "pi-60")
    first = await pub.append(event, expected_last_seq=0)
    assert await pub.append(event, expected_last_seq=0) == first
    assert await stream_count(js, subjects) == 1


async def test_subject_carries_namespace_aggregate_and_type(js, subjects) -> None:
    pub = EventPublisher(js, subjects)
    event = queued("s-7f3a", "pi-60")
    assert pub.subject_of(event) == f"{subjects.ns}.evt.task.s-7f3a-pi-60.TaskQueued"


async def test_two_concurrent_writers_on_one_task_exactly_one_wins(js, subjects) -> None:
    pub = EventPublisher(js, subjects)
    await pub.append(queued("s-1", "pi-60"), expected_last_seq=0)
    history = await pub.load_task("s-1", "pi-60")
    seen = last_seq(history)

    async def assign(host: str) -> str:
        event = task_event(ev.TaskAssigned, "s-1", "pi-60", attempt=1, platform="onprem", placement=host)
        try:
            await pub.append(event, expected_last_seq=seen)
            return "won"
        except ConcurrencyConflict:
            return "conflict"

    results = await asyncio.gather(*(assign(f"h{i}/0") for i in range(8)))
    assert sorted(results) == ["conflict"] * 7 + ["won"]
    history = await pub.load_task("s-1", "pi-60")
    assert [r.event.event_type for r in history] == ["TaskQueued", "TaskAssigned"]


async def test_first_event_of_an_aggregate_expects_zero(js, subjects) -> None:
    pub = EventPublisher(js, subjects)
    await pub.append(queued("s-2", "validation"), expected_last_seq=0)
    with pytest.raises(ConcurrencyConflict, match="another writer"):
        await pub.append(queued("s-2", "validation"), expected_last_seq=0)


async def test_other_aggregates_do_not_disturb_the_expected_sequence(js, subjects) -> None:
    pub = EventPublisher(js, subjects)
    a = await pub.append(queued("s-3", "pi-15"), expected_last_seq=0)
    await pub.append(queued("s-3", "pi-60"), expected_last_seq=0)
    await pub.append(created("s-3"))
    event = task_event(ev.TaskAssigned, "s-3", "pi-15", attempt=1, platform="onprem", placement="h/0")
    assert await pub.append(event, expected_last_seq=a) > a


async def test_load_returns_one_aggregates_events_in_order(js, subjects) -> None:
    pub = EventPublisher(js, subjects)
    await pub.append(queued("s-4", "pi-1"))
    await pub.append(queued("s-4", "pi-10"))  # a prefix-sharing neighbour must not leak in
    await pub.append(task_event(ev.TaskCancelled, "s-4", "pi-1"))
    history = await pub.load_task("s-4", "pi-1")
    assert [r.event.event_type for r in history] == ["TaskQueued", "TaskCancelled"]
    assert history[0].seq < history[1].seq
