"""The one aggregate writer against a real nats-server: a decision taken on stale history is
taken again on fresh history, a decision already stored is not stored twice, and an aggregate
that never stops changing ends in one error."""

from __future__ import annotations

import pytest
from touchstone.shared import events as ev
from touchstone.shared.aggregate import change
from touchstone.shared.errors import UnavailableError
from touchstone.shared.publisher import EventPublisher, Recorded
from touchstone.shared.testing import queued, task_event


def failed(sid: str, attempt: int) -> ev.TaskEvent:
    return task_event(ev.TaskFailed, sid, "pi-60", attempt=attempt, reason="lost")


async def test_a_decision_on_stale_history_is_taken_again_on_fresh_history(js, subjects) -> None:
    pub = EventPublisher(js, subjects)
    await pub.append(queued("s-agg1", "pi-60"), expected_last_seq=0)
    seen: list[int] = []

    async def someone_else_appends() -> None:
        await pub.append(failed("s-agg1", 1))

    def decide(history: list[Recorded]) -> list[ev.Event]:
        seen.append(len(history))
        return [failed("s-agg1", len(history) + 1)]

    first = True

    async def load() -> list[Recorded]:
        nonlocal first
        history = await pub.load_task("s-agg1", "pi-60")
        if first:  # between this load and our append, another writer gets in
            first = False
            await someone_else_appends()
        return history

    changed = await change(pub, "task", "s-agg1-pi-60", decide, load=load)
    assert seen == [1, 2]  # decided on one event, conflicted, decided again on two
    assert [r.event.type for r in changed.records] == ["TaskQueued", "TaskFailed", "TaskFailed"]
    stored = await pub.load_task("s-agg1", "pi-60")
    assert [r.seq for r in stored] == [r.seq for r in changed.records]


async def test_an_event_already_stored_is_not_appended_again(js, subjects) -> None:
    pub = EventPublisher(js, subjects)
    await pub.append(queued("s-agg2", "pi-60"), expected_last_seq=0)
    decided = failed("s-agg2", 1)
    one = await change(pub, "task", "s-agg2-pi-60", lambda history: [decided])
    again = await change(pub, "task", "s-agg2-pi-60", lambda history: [decided])  # a redelivered decision
    assert len(one.appended) == 1 and again.appended == []
    assert len(await pub.load_task("s-agg2", "pi-60")) == 2


async def test_nothing_to_do_appends_nothing_and_a_refusal_propagates(js, subjects) -> None:
    pub = EventPublisher(js, subjects)
    await pub.append(queued("s-agg3", "pi-60"), expected_last_seq=0)
    assert (await change(pub, "task", "s-agg3-pi-60", lambda history: [])).appended == []

    def refuse(history: list[Recorded]) -> list[ev.Event]:
        raise PermissionError("not yours")

    with pytest.raises(PermissionError):
        await change(pub, "task", "s-agg3-pi-60", refuse)


async def test_an_aggregate_that_never_stops_changing_ends_in_one_error(js, subjects) -> None:
    pub = EventPublisher(js, subjects)
    await pub.append(queued("s-agg4", "pi-60"), expected_last_seq=0)
    attempt = 0

    async def load() -> list[Recorded]:
        nonlocal attempt
        history = await pub.load_task("s-agg4", "pi-60")
        attempt += 1
        await pub.append(failed("s-agg4", 100 + attempt))  # always someone faster
        return history

    with pytest.raises(UnavailableError, match="changing too fast"):
        await change(pub, "task", "s-agg4-pi-60", lambda history: [failed("s-agg4", 1)], tries=3, load=load)
    assert attempt == 3
