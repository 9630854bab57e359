"""The event backbone's physical limit on this machine and how close Touchstone gets to it.

- raw nats-py JetStream publish, awaited one by one and pipelined (publish_async);
- our EventPublisher (dedupe id, and with the expected-sequence check), awaited;
- the projector: apply rate when replaying a backlog, and end-to-end lag at a steady 200 events/s.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from nats.js import JetStreamContext
from touchstone.shared import events as ev
from touchstone.shared.projector import Projector
from touchstone.shared.publisher import EventPublisher
from touchstone.shared.store.sqlite import SqliteStore
from touchstone.shared.subjects import Subjects

from touchstone.bench.harness import broker, percentile, row

N = 5_000
BACKLOG = 20_000
STEADY_RATE = 200
STEADY_SECONDS = 10
SPEC = ev.TaskSpec(git_url="https://example.com/fs.git")


def queued(i: int, prefix: str) -> ev.TaskQueued:
    sid = f"{prefix}{i}"
    return ev.TaskQueued(aggregate_id=f"{sid}-pi-60", correlation_id=sid, submission_id=sid,
                         task_id="pi-60", spec=SPEC, prediction_interval=60)


async def run() -> dict:
    async with broker("bench") as b:
        return await measure(b.js, b.subjects, b.tmp)


async def measure(js: JetStreamContext, subjects: Subjects, tmp: Path) -> dict:
    payload = ev.encode_event(queued(0, "raw"))
    rows = []
    # raw awaited
    t = time.perf_counter()
    for i in range(N):
        await js.publish(f"bench.evt.task.raw{i}-pi-60.TaskQueued", payload, stream=subjects.events_stream)
    raw_awaited = N / (time.perf_counter() - t)
    # raw pipelined
    t = time.perf_counter()
    futures = [await js.publish_async(f"bench.evt.task.pipe{i}-pi-60.TaskQueued", payload)
               for i in range(N)]
    await asyncio.gather(*futures)
    raw_pipelined = N / (time.perf_counter() - t)
    # ours
    pub = EventPublisher(js, subjects)
    events = [queued(i, "ours") for i in range(N)]
    t = time.perf_counter()
    for e in events:
        await pub.append(e)
    ours = N / (time.perf_counter() - t)
    events = [queued(i, "occ") for i in range(N)]
    t = time.perf_counter()
    for e in events:
        await pub.append(e, expected_last_seq=0)
    ours_occ = N / (time.perf_counter() - t)

    # projector: replay a backlog of real task events
    for i in range(BACKLOG - 4 * N):
        await js.publish_async(f"bench.evt.task.bk{i}-pi-60.TaskQueued",
                               ev.encode_event(queued(i, "bk")))
    await js.publish_async_completed()
    total = (await js.stream_info(subjects.events_stream)).state.messages
    store = SqliteStore(tmp / "replay.db")
    t = time.perf_counter()
    applied = await Projector(js, subjects, store).rebuild()
    replay_rate = applied / (time.perf_counter() - t)

    # projector lag at a steady rate: time from an event's creation to its write in the store
    lags: list[float] = []

    def record(applied_events: list[ev.Event]) -> None:
        now = time.time()
        lags.extend(now - e.occurred_at.timestamp() for e in applied_events
                    if e.aggregate_id.startswith("steady"))

    projector = Projector(js, subjects, store, on_applied=record)
    stop = asyncio.Event()
    runner = asyncio.create_task(projector.run(stop))
    await projector.catch_up()
    interval = 1 / STEADY_RATE
    start = time.perf_counter()
    for i in range(STEADY_RATE * STEADY_SECONDS):
        await asyncio.sleep(max(0.0, start + i * interval - time.perf_counter()))
        await pub.append(queued(i, "steady"))
    await projector.catch_up()
    stop.set()
    await runner

    ratio = ours / raw_awaited
    p50, p99 = percentile(lags, 0.50) * 1000, percentile(lags, 0.99) * 1000
    rows += [
        row("raw nats-py publish, awaited", round(raw_awaited), "events/s"),
        row("raw nats-py publish, pipelined (publish_async)", round(raw_pipelined), "events/s"),
        row("EventPublisher.append, awaited", round(ours), "events/s"),
        row("EventPublisher.append / raw awaited", round(ratio, 3), "ratio", ">= 0.80", ratio >= 0.8),
        row("EventPublisher.append with expected sequence", round(ours_occ), "events/s"),
        row(f"projector replay of {total} events", round(replay_rate), "events/s", ">= 2000",
            replay_rate >= 2000),
        row(f"projector lag p50 at {STEADY_RATE} events/s", round(p50, 1), "ms"),
        row(f"projector lag p99 at {STEADY_RATE} events/s", round(p99, 1), "ms", "<= 50", p99 <= 50),
        row("projector lag samples", len(lags), "events"),
    ]
    return {"name": "event backbone (nats-server 2.15.1, sync_interval: always, file storage)",
            "rows": rows}
