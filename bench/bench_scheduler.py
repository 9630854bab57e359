"""Scheduler benchmark (``make bench`` contract: ``async def run() -> dict``).

A simulated fleet through a real nats-server (``sync_interval: always``): 500 agents x 8 slots
heartbeating, a RunPod pool, and a fake provider that takes launches off its work queue.
Figures come from the events' own timestamps.

* placement throughput: 10,000 tasks already queued when the scheduler starts, placed onto
  500 x 8 on-prem slots plus a 1,000-task RunPod pool (so 5,000 placements);
* queued -> assigned latency with free capacity while 1,000 / 10,000 other tasks wait in the
  queue (they ask for RunPod, which is paused), arrivals paced at 50/s;
* the same arrivals through a model of the old design (a lifecycle handler that advances each
  task one phase per 2-minute tick), on a simulated clock: orchestration overhead per task
  before training starts, for both designs, and the ratio. Phase work (provisioning, preparing)
  is the same scripted time in both and is not counted as overhead.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import ssl
import time
from datetime import UTC, datetime

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext, api
from touchstone.scheduler.config import SchedulerSettings
from touchstone.scheduler.service import Scheduler
from touchstone.shared import events as ev
from touchstone.shared.agents import AgentHeartbeat, encode_report
from touchstone.shared.commands import decode_command
from touchstone.shared.jetstream import connect, provision, system_bucket
from touchstone.shared.publisher import EventPublisher
from touchstone.shared.subjects import Subjects, task_aggregate_id
from touchstone.shared.system import Server, SystemSettings, write_system

from touchstone.bench.harness import broker, percentile

SCALE = float(os.environ.get("TOUCHSTONE_BENCH_SCALE", "1"))  # < 1 for a quick look
# another broker than the one this bench starts: `make chaos` runs it on its R3 cluster
NATS_URL = os.environ.get("TOUCHSTONE_BENCH_NATS_URL", "")
NATS_CA = os.environ.get("TOUCHSTONE_BENCH_NATS_CA_FILE", "")  # a TLS cluster (the chaos harness's)
REPLICAS = int(os.environ.get("TOUCHSTONE_BENCH_REPLICAS", "1"))
SERVERS, SLOTS, RUNPOD_POOL = max(1, int(500 * SCALE)), 8, max(1, int(1000 * SCALE))
TASKS = max(10, int(10_000 * SCALE))
TICK_S = 120.0
WORK_S = {"provisioning": 20.0, "preparing": 30.0}  # scripted, identical in both designs
SPEC = ev.TaskSpec(git_url="https://git.example/fs.git")


def queued(i: int, platform: str) -> ev.TaskQueued:
    sid, tid = f"s-{i % 100}", f"pi-{i}"
    return ev.TaskQueued(aggregate_id=task_aggregate_id(sid, tid), correlation_id=sid, submission_id=sid,
                         task_id=tid, spec=SPEC, platform=platform)  # type: ignore[arg-type]


async def fleet(nc: NATS, subjects: Subjects, stop: asyncio.Event) -> None:
    """500 agents heartbeating every 5 s (all slots free: the fake provider runs nothing)."""
    while not stop.is_set():
        for i in range(SERVERS):
            hb = AgentHeartbeat(host=f"gpu-{i}", slots_total=SLOTS, slots_free=SLOTS)
            await nc.publish(subjects.agent_reports(hb.host), encode_report(hb))
        await nc.flush()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 5)


async def read_all(js: JetStreamContext, subjects: Subjects) -> list[tuple[ev.Event, datetime]]:
    """Every event with the time the stream stored it."""
    last = (await js.stream_info(subjects.events_stream)).state.last_seq
    out: list[tuple[ev.Event, datetime]] = []
    sub = await js.subscribe(subjects.all_events, stream=subjects.events_stream, ordered_consumer=True,
                             config=api.ConsumerConfig(deliver_policy=api.DeliverPolicy.ALL))
    while len(out) < last:
        msg = await sub.next_msg(timeout=10)
        out.append((ev.decode_event(msg.data), msg.metadata.timestamp))
    await sub.unsubscribe()
    return out


async def assigned_count(js: JetStreamContext, subjects: Subjects) -> int:
    info = await js.stream_info(subjects.events_stream, subjects_filter=subjects.events_of_type("*", "TaskAssigned"))
    return sum((info.state.subjects or {}).values())


async def setup(nc: NATS, ns: str, runpod: int) -> tuple[JetStreamContext, Subjects]:
    js = nc.jetstream(timeout=10)
    subjects = Subjects(ns)
    await provision(js, subjects, replicas=REPLICAS)
    servers = [Server(name=f"gpu-{i}", num_slots=SLOTS) for i in range(SERVERS)]
    await write_system(await system_bucket(js, subjects),
                       SystemSettings(servers=servers, runpod_max_running_tasks=runpod))
    return js, subjects


async def preload(js: JetStreamContext, subjects: Subjects, count: int, platform: str) -> None:
    pub = EventPublisher(js, subjects)
    for start in range(0, count, 500):
        await asyncio.gather(*(pub.append(queued(i, platform)) for i in range(start, min(count, start + 500))))


@contextlib.asynccontextmanager
async def scheduler_running(nc: NATS, js: JetStreamContext, subjects: Subjects):
    cfg = SchedulerSettings(namespace=subjects.ns, leader_election=False, sweep_interval_s=3600)
    scheduler = Scheduler(cfg, nc, js, subjects)
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    while not scheduler.active:
        await asyncio.sleep(0.01)
    beats = asyncio.create_task(fleet(nc, subjects, stop))  # now the scheduler listens
    try:
        yield scheduler
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(task, beats), 30)


async def throughput(nc: NATS) -> list[dict[str, object]]:
    js, subjects = await setup(nc, "bench-tp", RUNPOD_POOL)
    await preload(js, subjects, TASKS, "any")
    target = SERVERS * SLOTS + RUNPOD_POOL
    async with scheduler_running(nc, js, subjects):
        while await assigned_count(js, subjects) < target:
            await asyncio.sleep(0.2)
    stamps = sorted(at for e, at in await read_all(js, subjects) if isinstance(e, ev.TaskAssigned))
    span = (stamps[-1] - stamps[0]).total_seconds()
    rate = round(len(stamps) / span) if span > 0 else 0
    return [
        {"metric": f"placements ({TASKS} queued at start, {target} places)", "value": len(stamps), "unit": "tasks"},
        {"metric": "placement throughput", "value": rate, "unit": "placements/s", "target": ">= 1000",
         "met": rate >= 1000},
    ]


async def latency(nc: NATS, waiting: int, arrivals: int = 300) -> tuple[list[dict[str, object]], list[float]]:
    """Latency of paced on-prem arrivals while ``waiting`` RunPod tasks sit in the queue."""
    js, subjects = await setup(nc, f"bench-lat{waiting}", 0)
    await preload(js, subjects, waiting, "runpod")
    received: dict[str, float] = {}

    async def provider(msg) -> None:  # type: ignore[no-untyped-def]
        command = decode_command(msg.data)
        received[task_aggregate_id(command.submission_id, command.task_id)] = time.time()
        await msg.ack()

    sub = await js.subscribe(subjects.service_commands("onprem-provider"), stream=subjects.commands_stream,
                             durable=subjects.durable("fake_onprem"), cb=provider, manual_ack=True)
    pub = EventPublisher(js, subjects)
    async with scheduler_running(nc, js, subjects):
        for i in range(waiting, waiting + arrivals):
            await pub.append(queued(i, "onprem"))
            await asyncio.sleep(1 / 50)
        while len(received) < arrivals:  # a launch is sent only once its assignment is stored
            await asyncio.sleep(0.1)
    await sub.unsubscribe()
    events = [e for e, _ in await read_all(js, subjects)]
    queued_at = {e.aggregate_id: e.occurred_at for e in events if isinstance(e, ev.TaskQueued)}
    lat = [(e.occurred_at - queued_at[e.aggregate_id]).total_seconds() * 1000
           for e in events if isinstance(e, ev.TaskAssigned)]
    overhead = [received[k] - queued_at[k].timestamp() for k in received]
    p50, p99 = percentile(lat, 0.50), percentile(lat, 0.99)
    p99_target = 100 if waiting < TASKS else 250
    rows: list[dict[str, object]] = [
        {"metric": f"queued->assigned p50 at {waiting} queued", "value": round(p50, 1), "unit": "ms",
         **({"target": "<= 20", "met": p50 <= 20} if waiting < TASKS else {})},
        {"metric": f"queued->assigned p99 at {waiting} queued", "value": round(p99, 1), "unit": "ms",
         "target": f"<= {p99_target}", "met": p99 <= p99_target},
    ]
    return rows, overhead


def tick_model_overhead(arrivals: list[float], seed: int = 7) -> list[float]:
    """The old design on a simulated clock: every ``TICK_S`` a lifecycle handler takes one step
    per task: assign it; launch it (provisioning starts); once provisioned, start preparing; once
    prepared, start training. Overhead = time to training start - the phases' own work."""
    phase0 = random.Random(seed).uniform(0, TICK_S)

    def tick_at_or_after(t: float) -> float:
        return phase0 + math.ceil((t - phase0) / TICK_S) * TICK_S

    out = []
    for arrival in arrivals:
        assigned = tick_at_or_after(arrival)
        launched = assigned + TICK_S
        preparing = max(launched + TICK_S, tick_at_or_after(launched + WORK_S["provisioning"]))
        training = max(preparing + TICK_S, tick_at_or_after(preparing + WORK_S["preparing"]))
        out.append(training - arrival - sum(WORK_S.values()))
    return out


async def measure(url: str) -> tuple[list[dict[str, object]], list[float]]:
    nc = await connect(url, "bench-scheduler", tls=ssl.create_default_context(cafile=NATS_CA) if NATS_CA else None)
    rows = await throughput(nc)
    overhead_new: list[float] = []
    for waiting in (max(1, int(1000 * SCALE)), TASKS):
        more, overhead = await latency(nc, waiting)
        rows += more
        overhead_new += overhead
    await nc.close()
    return rows, overhead_new


async def run() -> dict[str, object]:
    if NATS_URL:
        rows, overhead_new = await measure(NATS_URL)
    else:
        async with broker("bench-scheduler", provisioned=False) as b:
            rows, overhead_new = await measure(b.url)
    arrivals = [i / 50 for i in range(300)]
    old = percentile(tick_model_overhead(arrivals), 0.5)
    new = percentile(overhead_new, 0.5)
    rows += [
        {"metric": "orchestration overhead before training, old 2-min tick (model)", "value": round(old, 1),
         "unit": "s"},
        {"metric": "orchestration overhead before training, event-driven (measured)",
         "value": round(new * 1000, 1), "unit": "ms"},
        {"metric": "overhead ratio old / new", "value": round(old / new) if new > 0 else 0, "unit": "x"},
    ]
    return {"name": "scheduler (simulated fleet: 500 agents x 8 slots, RunPod pool, real nats-server)",
            "rows": rows, "at_utc": datetime.now(UTC).isoformat()}


if __name__ == "__main__":
    import json

    print(json.dumps(asyncio.run(run()), indent=2))
