"""Every log line about a task carries its ids as fields, in the handler and in what it starts."""

from __future__ import annotations

import asyncio
import io
import json
import logging

from touchstone.shared import events as ev
from touchstone.shared.consumer import ConsumerLoop, ConsumerSpec
from touchstone.shared.logs import setup_logging, task_context
from touchstone.shared.publisher import EventPublisher
from touchstone.shared.testing import queued, task_event

log = logging.getLogger("touchstone.test.logs")


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


async def test_lines_logged_while_a_task_event_is_handled_carry_its_ids(js, subjects) -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    setup_logging("test", stream=stream)
    background: list[asyncio.Task[None]] = []

    async def later(note: str) -> None:
        await asyncio.sleep(0.05)
        log.info("background %s", note)

    async def on_failed(event: ev.TaskFailed, delivery: object) -> None:
        log.info("handling %s", event.task_id)
        log.info("a call's own field wins", extra={"attempt": 99})
        background.append(asyncio.create_task(later(event.task_id)))

    spec = ConsumerSpec(name="logs", stream=subjects.events_stream,
                        filter_subjects=[f"{subjects.ns}.evt.task.*.TaskFailed"])
    loop = ConsumerLoop(js, subjects, spec, {"TaskFailed": on_failed}, ev.decode_event)
    pub = EventPublisher(js, subjects)
    await pub.append(queued("s-log", "pi-60"))
    await pub.append(task_event(ev.TaskFailed, "s-log", "pi-60", attempt=2, reason="oom"))
    stop = asyncio.Event()
    runner = asyncio.create_task(loop.run(stop))
    try:
        async with asyncio.timeout(15):
            while not background:
                await asyncio.sleep(0.01)
            await asyncio.gather(*background)
        log.info("outside any task")
    finally:
        stop.set()
        await asyncio.wait_for(runner, 10)
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])

    by_msg = {line["msg"]: line for line in lines(stream)}
    ids = {"submission_id": "s-log", "task_id": "pi-60", "attempt": 2, "correlation_id": "s-log"}
    for msg in ("handling pi-60", "background pi-60"):
        assert {k: by_msg[msg].get(k) for k in ids} == ids, msg
    assert by_msg["a call's own field wins"]["attempt"] == 99
    assert not {"submission_id", "task_id", "attempt"} & set(by_msg["outside any task"])


def test_task_context_nests_and_restores() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    setup_logging("test", stream=stream)
    try:
        command = task_event(ev.TrainingStarted, "s-1", "validation", attempt=1)
        with task_context(command):
            with task_context(attempt=2):
                log.warning("inner")
            log.warning("outer")
        log.warning("after")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    inner, outer, after = lines(stream)
    assert (inner["task_id"], inner["attempt"], outer["attempt"]) == ("validation", 2, 1)
    assert "task_id" not in after


def test_plain_lines_name_the_task_at_their_end() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    setup_logging("test", json_lines=False, stream=stream)
    try:
        with task_context(task_event(ev.TrainingStarted, "s-1", "pi-60", attempt=3)):
            log.warning("pulling the image")
        log.warning("idle")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    first, second = stream.getvalue().splitlines()
    assert first.endswith("pulling the image [s-1/pi-60#3]")
    assert second.endswith("idle")
