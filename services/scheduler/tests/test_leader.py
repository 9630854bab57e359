"""The leader lease: one scheduler acts, a standby takes over when it stops or is killed."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter

from schedkit import (
    count,
    created,
    declare_servers,
    events,
    eventually,
    of_type,
    provider,
    queued,
    running,
    until,
)
from touchstone.scheduler.adapters import LEASE_KEY
from touchstone.shared.jetstream import connect
from touchstone.shared.publisher import EventPublisher
from touchstone.shared.subjects import Bucket


async def test_only_the_lease_holder_acts_and_a_standby_takes_over(nats_server, nc, sjs, subjects) -> None:
    js = sjs
    pub = EventPublisher(js, subjects)
    other = await connect(nats_server.url, "standby")
    leader = running(nc, js, subjects, lease_ttl_s=1.0, instance_id="first")
    first = await leader.__aenter__()
    leader_stopped = False
    try:
        async with running(other, other.jetstream(), subjects, lease_ttl_s=1.0, instance_id="second",
                           wait_active=False) as second:
            await pub.append(created("s-1"))
            await until(lambda: count(js, subjects, "TaskQueued"), lambda n: n == 1)
            assert first.active and not second.active
            # the standby follows the stream although it does not act
            await eventually(lambda: "s-1-validation" in second.view.tasks)
            assert await _lease_holder(js, subjects) == b"first"

            await leader.__aexit__(None, None, None)  # a clean stop gives the lease up
            leader_stopped = True
            await eventually(lambda: second.active)
            assert not first.active
            assert await _lease_holder(js, subjects) == b"second"
            await pub.append(created("s-2"))
            await until(lambda: count(js, subjects, "TaskQueued"), lambda n: n == 2)
    finally:
        if not leader_stopped:
            await leader.__aexit__(None, None, None)
        await other.close()


FLEET_TASKS = 500


async def test_a_sigkilled_leader_is_replaced_and_every_task_runs_exactly_once(
    nats_server, nc, sjs, subjects, tmp_path
) -> None:
    """500 tasks queued on a simulated fleet (100 RunPod slots, a fake provider running each
    launch to the end); the active scheduler, a separate process, is SIGKILLed mid-flight."""
    js = sjs
    pub = EventPublisher(js, subjects)
    await declare_servers(js, subjects, runpod_max_running_tasks=100)
    env = {
        **os.environ,
        "TOUCHSTONE_NAMESPACE": subjects.ns,
        "TOUCHSTONE_NATS_URL": nats_server.url,
        "TOUCHSTONE_DATA_DIR": str(tmp_path),
        "TOUCHSTONE_LEASE_TTL_S": "1.5",
        "TOUCHSTONE_INSTANCE_ID": "doomed",
        "TOUCHSTONE_LOG_JSON": "false",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "touchstone.scheduler", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await until(lambda: _lease_holder(js, subjects), lambda holder: holder == b"doomed", timeout=30)
        async with (
            provider(js, subjects, run_s=0.05) as fleet,
            running(nc, js, subjects, lease_ttl_s=1.5, instance_id="standby", wait_active=False) as standby,
        ):
            batch = [queued(f"s-{i % 25}", f"pi-{i}", platform="runpod") for i in range(FLEET_TASKS)]
            await asyncio.gather(*(pub.append(e, expected_last_seq=0) for e in batch))
            await until(lambda: count(js, subjects, "TrainingFinished"), lambda n: n >= 50)
            proc.send_signal(signal.SIGKILL)  # the lease is held, tasks are queued, running and finishing
            await asyncio.wait_for(proc.wait(), 10)
            assert await count(js, subjects, "TrainingFinished") < FLEET_TASKS, "killed mid-flight"
            await eventually(lambda: standby.active, timeout=20)
            await until(lambda: count(js, subjects, "TrainingFinished"), lambda n: n >= FLEET_TASKS, timeout=60)
            await standby.sweep()
    finally:
        if proc.returncode is None:
            proc.kill()
            await asyncio.wait_for(proc.wait(), 10)
    all_events = await events(js, subjects)
    per_task = Counter(e.aggregate_id for e in of_type(all_events, "TaskAssigned"))
    assert len(per_task) == FLEET_TASKS and set(per_task.values()) == {1}
    assert {e.attempt for e in of_type(all_events, "TaskAssigned")} == {1}, "the crash cost no attempt"
    assert not of_type(all_events, "TaskFailed") and not of_type(all_events, "TaskRetried")
    assert len(fleet.launched) == FLEET_TASKS and set(fleet.launched.values()) == {1}, "one launch each"


async def _lease_holder(js, subjects) -> bytes | None:
    try:
        kv = await js.key_value(subjects.bucket(Bucket.LEASE))
        return (await kv.get(LEASE_KEY)).value
    except Exception:
        return None
