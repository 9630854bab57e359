"""``debug_step``: one task's decision explained, and carried out for that task only."""

from __future__ import annotations

import asyncio
import contextlib

from schedkit import count, declare_servers, events, heartbeat, of_type, queued, settings
from touchstone.scheduler.debug import debug_step
from touchstone.shared.publisher import EventPublisher
from touchstone.shared.system import Server


@contextlib.asynccontextmanager
async def agent_beating(nc, subjects, host: str, slots: int):
    async def beat() -> None:
        while True:
            await heartbeat(nc, subjects, host, slots=slots)
            await asyncio.sleep(0.05)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_debug_step_explains_and_applies_one_task_only(nats_server, nc, sjs, subjects) -> None:
    js = sjs
    pub = EventPublisher(js, subjects)
    await declare_servers(js, subjects, Server(name="gpu-a", num_slots=4))
    await pub.append(queued("s-a", "pi-15", platform="onprem"))
    await pub.append(queued("s-b", "pi-60", platform="onprem"))
    cfg = settings(subjects, nats_url=nats_server.url)

    async with agent_beating(nc, subjects, "gpu-a", slots=4):
        text = await asyncio.to_thread(debug_step, "touchstone-s-b-pi-60-1", cfg, listen_s=30)
        assert "task s-b-pi-60 (training): QUEUED, attempt 1" in text
        assert "server gpu-a: online" in text
        assert "decision: assign attempt 1 to onprem gpu-a/1" in text  # s-a-pi-15 goes first
        assert "dry run" in text
        assert await count(js, subjects, "TaskAssigned") == 0

        text = await asyncio.to_thread(debug_step, "touchstone-s-b-pi-60-1", cfg, listen_s=30, apply=True)
        assert text.endswith("applied.")
    (assigned,) = of_type(await events(js, subjects), "TaskAssigned")
    assert assigned.aggregate_id == "s-b-pi-60"  # the other queued task was not touched

    text = await asyncio.to_thread(debug_step, "touchstone-s-b-pi-60-1", cfg, listen_s=0.0)
    assert "ASSIGNED" in text and "phase 'launch'" in text and "within its deadline" in text


async def test_debug_step_names_what_blocks_a_task(nats_server, sjs, subjects) -> None:
    js = sjs
    await declare_servers(js, subjects, Server(name="gpu-a", num_slots=2), Server(name="gpu-b", num_slots=0))
    await EventPublisher(js, subjects).append(queued("s-a", "pi-15", platform="onprem"))
    cfg = settings(subjects, nats_url=nats_server.url)
    text = await asyncio.to_thread(debug_step, "touchstone-s-a-pi-15-1", cfg, listen_s=0.0)
    assert "server gpu-a: never heard from" in text
    assert "server gpu-b: paused (num_slots 0)" in text
    assert "runpod: 0/0 running (paused: cap 0)" in text
    assert "decision: keep waiting" in text
    text = await asyncio.to_thread(debug_step, "touchstone-s-zz-pi-1-1", cfg, listen_s=0.0)
    assert "no task of this namespace" in text
