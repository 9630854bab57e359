"""The one service shape: a reaction table drives dispatch and the consumer's filter."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from touchstone.shared import events as ev
from touchstone.shared.commands import LaunchTask, TerminateTask
from touchstone.shared.consumer import ConsumerLoop, Delivery
from touchstone.shared.publisher import EventPublisher
from touchstone.shared.reactions import Reactions
from touchstone.shared.testing import created, queued, task_event


class Deps:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, int]] = []


async def on_created(event: ev.SubmissionCreated, deps: Deps, delivery: Delivery) -> None:
    deps.seen.append(("created", event.aggregate_id, delivery.num_delivered))


async def on_queued(event: ev.TaskQueued, deps: Deps, delivery: Delivery) -> None:
    deps.seen.append(("queued", event.aggregate_id, delivery.num_delivered))


REACTIONS = Reactions[Deps]({ev.SubmissionCreated: on_created, ev.TaskQueued: on_queued})


async def test_the_consumer_gets_exactly_the_events_of_its_table_with_the_deps_bound(js, subjects) -> None:
    deps = Deps()
    loop = ConsumerLoop(js, subjects, REACTIONS.event_consumer("shape", subjects), REACTIONS.bind(deps),
                        ev.decode_event)
    publisher = EventPublisher(js, subjects)
    await loop.ensure()
    await publisher.append(created("s-1"))
    await publisher.append(task_event(ev.TaskCancelled, "s-1", "t-1"))  # not in the table
    await publisher.append(queued("s-1", "t-1"))
    stop = asyncio.Event()
    runner = asyncio.create_task(loop.run(stop))
    try:
        deadline = asyncio.get_running_loop().time() + 10
        while len(deps.seen) < 2:
            assert asyncio.get_running_loop().time() < deadline, deps.seen
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(runner, 5)
    assert [kind for kind, _, _ in deps.seen] == ["created", "queued"]
    info = await js.consumer_info(subjects.events_stream, subjects.durable("shape"))
    assert info.num_pending == 0  # the cancelled event was never delivered: the filter left it out


def test_filters_are_derived_from_the_table(subjects) -> None:
    assert REACTIONS.event_filters(subjects) == [
        subjects.events_of_type("submission", "SubmissionCreated"),
        subjects.events_of_type("task", "TaskQueued"),
    ]

    async def on_launch(command: LaunchTask, deps: Deps, delivery: Delivery) -> None: ...

    commands = Reactions[Deps]({LaunchTask: on_launch, TerminateTask: on_launch})
    assert commands.command_filters(subjects, "onprem-provider") == [
        subjects.command("onprem-provider", "LaunchTask"), subjects.command("onprem-provider", "TerminateTask"),
    ]
    assert list(commands) == ["LaunchTask", "TerminateTask"]


def test_a_command_is_not_an_event_and_a_type_has_one_reaction(subjects) -> None:
    async def on_launch(command: LaunchTask, deps: Deps, delivery: Delivery) -> None: ...

    with pytest.raises(TypeError, match="not an event"):
        Reactions[Deps]({LaunchTask: on_launch}).event_filters(subjects)
    with pytest.raises(ValueError, match="two reactions to SubmissionCreated"):
        REACTIONS.merged(Reactions[Deps]({ev.SubmissionCreated: on_created}))
