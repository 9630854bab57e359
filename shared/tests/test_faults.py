"""Fault injection on the backbone: the broker dies mid-burst and comes back."""

from __future__ import annotations

import asyncio
import contextlib

from touchstone.shared import events as ev
from touchstone.shared.jetstream import connect, provision
from touchstone.shared.publisher import EventPublisher
from touchstone.shared.subjects import Subjects
from touchstone.shared.testing import queued

BURST = 5_000


async def test_sigkill_during_a_burst_loses_no_acknowledged_event(own_nats_server) -> None:
    subjects = Subjects("fault")
    nc = await connect(own_nats_server.url, "burst")
    js = nc.jetstream()
    await provision(js, subjects)
    pub = EventPublisher(js, subjects, timeout=1.0, retry_for=60.0)
    acked: dict[str, int] = {}
    reconnects_before = nc.stats["reconnects"]

    async def burst() -> None:
        for i in range(BURST):
            event = queued(f"s-{i}", "validation")
            acked[event.event_id] = await pub.append(event)

    runner = asyncio.create_task(burst())
    while len(acked) < BURST // 5:
        await asyncio.sleep(0.005)
    own_nats_server.kill()
    killed_at = len(acked)
    await asyncio.sleep(0.5)
    own_nats_server.start()  # same port, same store
    await asyncio.wait_for(runner, 120)

    assert killed_at < BURST, "the kill must land inside the burst"
    assert nc.stats["reconnects"] > reconnects_before, "the client reconnected by itself"
    assert len(acked) == BURST

    # read the whole stream back on a fresh connection
    reader = await connect(own_nats_server.url, "reader")
    rjs = reader.jetstream()
    stored: dict[str, int] = {}
    sub = await rjs.subscribe(subjects.all_events, stream=subjects.events_stream, ordered_consumer=True)
    with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
        while len(stored) < BURST + 10:
            msg = await sub.next_msg(timeout=2)
            event = ev.decode_event(msg.data)
            assert event.event_id not in stored, "an event was stored twice"
            stored[event.event_id] = msg.metadata.sequence.stream
    missing = set(acked) - set(stored)
    assert not missing, f"{len(missing)} acknowledged events are not in the stream"
    assert stored == acked
    await reader.close()
    await nc.close()
