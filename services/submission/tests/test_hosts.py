"""The hosts view hears agents as hosts and the RunPod provider only as the attempts it drives
(its ``LiveAttempts``): RunPod shows in no host list, and its running pods have a heartbeat."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

from touchstone.shared.agents import AgentHeartbeat, encode_report
from touchstone.shared.providers import LiveAttempts, encode_live
from touchstone.shared.system import Server
from touchstone.submission.hosts import Hosts


async def test_a_providers_live_attempts_have_heartbeats_and_no_host(nc, subjects) -> None:
    hosts = Hosts(nc, subjects)
    stop = asyncio.Event()
    listening = asyncio.create_task(hosts.run(stop))
    try:
        await asyncio.sleep(0.1)  # subscribed
        pod, container = "touchstone-s-1-pi-60-1", "touchstone-s-1-pi-15-1"
        await nc.publish(subjects.provider_live("runpod"),
                         encode_live(LiveAttempts(platform="runpod", replica="r-1", running=(pod,))))
        await nc.publish(subjects.provider_live("runpod"), b'{"type": "AgentHeartbeat", "host": "x"}')  # refused
        await nc.publish(subjects.agent_reports("gpu1"), encode_report(
            AgentHeartbeat(host="gpu1", slots_total=2, slots_free=1, running=(container,))))
        async with asyncio.timeout(5):
            while hosts.heartbeat_age(pod, datetime.now(UTC)) is None or "gpu1" not in hosts.seen:
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(listening, 5)
    now = datetime.now(UTC)
    assert hosts.heartbeat_age(pod, now) < 5 and hosts.heartbeat_age(container, now) < 5
    assert [row["name"] for row in hosts.rows([Server(name="gpu1", num_slots=2)], now)] == ["gpu1"]
    assert "x" not in hosts.seen
