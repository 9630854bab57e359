"""Scenario 3: SIGKILL the scheduler leader while it places a queue of 500 tasks.

Two real scheduler processes (``python -m touchstone.scheduler``, leader election by lease) run
on the control host against the three-node cluster. A simulated fleet of on-prem servers
heartbeats from the machine (enough slots for every task), and a stand-in provider takes the
launch commands off the on-prem work queue, counting each (task, attempt) it is asked to start.
Tasks arrive while the leader places them; once a fifth are assigned the leader is SIGKILLed.

The record is then read back: every task assigned exactly once, no attempt launched twice, and
the longest pause in placements (the standby's takeover) against the lease's time to live.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from touchstone.shared import events as ev
from touchstone.shared.agents import AgentHeartbeat, encode_report
from touchstone.shared.commands import decode_command
from touchstone.shared.jetstream import connect, provision, stream_messages, system_bucket
from touchstone.shared.publisher import EventPublisher
from touchstone.shared.subjects import Bucket, Subjects, task_aggregate_id
from touchstone.shared.system import Server, SystemSettings, write_system

from touchstone.chaos.cluster import SERVICES_USER, NatsCluster
from touchstone.chaos.netns import Host, Network

SERVERS, SLOTS = 80, 8
SPEC = ev.TaskSpec(git_url="https://git.example/fs.git")
LEASE_TTL_S = 6.0


@dataclass
class PlacementFigures:
    scenario: str
    tasks: int
    assigned: int
    double_assigned: int
    double_launched: int
    lost: int
    placements_resume_s: float
    lease_ttl_s: float
    killed: str
    took_over: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def services_url(cluster: NatsCluster) -> str:
    return ",".join(f"nats://{SERVICES_USER}:{cluster.password}@{n.host.address}:4222" for n in cluster.nodes)


def start_scheduler(host: Host, cluster: NatsCluster, name: str, ns: str, logs: Path):
    env = {**os.environ, "TOUCHSTONE_NATS_URL": services_url(cluster), "TOUCHSTONE_NAMESPACE": ns,
           "TOUCHSTONE_INSTANCE_ID": name, "TOUCHSTONE_LEASE_TTL_S": str(LEASE_TTL_S),
           "TOUCHSTONE_DATA_DIR": str(logs / name), "TOUCHSTONE_LOG_JSON": "false",
           "TOUCHSTONE_NATS_TLS_CA_FILE": cluster.ca_file}
    return host.spawn([sys.executable, "-m", "touchstone.scheduler"], env=env, log=logs / f"{name}.log")


async def fleet(nc: NATS, subjects: Subjects, stop: asyncio.Event) -> None:
    while not stop.is_set():
        for i in range(SERVERS):
            hb = AgentHeartbeat(host=f"gpu-{i}", namespace=subjects.ns, slots_total=SLOTS, slots_free=SLOTS)
            await nc.publish(subjects.agent_reports(hb.host), encode_report(hb))
        await nc.flush()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 2)


async def lease_holder(js: JetStreamContext, subjects: Subjects) -> str:
    with contextlib.suppress(Exception):
        kv = await js.key_value(subjects.bucket(Bucket.LEASE))
        entry = await kv.get("leader")
        return (entry.value or b"").decode()
    return ""


async def assignments(js: JetStreamContext, subjects: Subjects) -> list[tuple[ev.TaskAssigned, float]]:
    last = (await js.stream_info(subjects.events_stream)).state.last_seq
    out = []
    async for msg in stream_messages(js, subjects.events_stream, subjects.all_events, last, timeout=10):
        event = ev.decode_event(msg.data)
        if isinstance(event, ev.TaskAssigned):
            out.append((event, msg.metadata.timestamp.timestamp()))
    return out


async def kill_scheduler_leader(root: Path, tasks: int = 500) -> PlacementFigures:
    network = Network()
    cluster = NatsCluster(network, root / "nats")
    control = network.add_host("control")
    ns = "chaos"
    try:
        cluster.start()
        nc = await connect(cluster.url, "chaos-placement", user=SERVICES_USER, password=cluster.password,
                           tls=cluster.client_tls())
        js = nc.jetstream(timeout=5.0)
        subjects = Subjects(ns)
        await provision(js, subjects, replicas=3)
        await write_system(await system_bucket(js, subjects), SystemSettings(
            servers=[Server(name=f"gpu-{i}", num_slots=SLOTS) for i in range(SERVERS)]))
        launches: Counter[tuple[str, int]] = Counter()

        async def provider(msg) -> None:  # type: ignore[no-untyped-def]
            command = decode_command(msg.data)
            launches[(task_aggregate_id(command.submission_id, command.task_id), command.attempt)] += 1
            await msg.ack()

        await js.subscribe(subjects.service_commands("onprem-provider"), stream=subjects.commands_stream,
                           durable=subjects.durable("standin_onprem"), cb=provider, manual_ack=True)
        schedulers = {name: start_scheduler(control, cluster, name, ns, root / "services")
                      for name in ("sched-a", "sched-b")}
        stop = asyncio.Event()
        beats = asyncio.create_task(fleet(nc, subjects, stop))
        deadline = time.monotonic() + 60
        while not (leader := await lease_holder(js, subjects)):
            if time.monotonic() > deadline:
                raise TimeoutError("no scheduler took the lease")
            await asyncio.sleep(0.2)
        await asyncio.sleep(3)  # the leader has heard the fleet

        publisher = EventPublisher(js, subjects)
        killed_at = 0.0
        for i in range(tasks):
            sid, tid = f"s-{i % 50}", f"pi-{i}"
            await publisher.append(ev.TaskQueued(
                aggregate_id=task_aggregate_id(sid, tid), correlation_id=sid, submission_id=sid, task_id=tid,
                spec=SPEC, platform="onprem"), expected_last_seq=0)
            if i == tasks // 5:
                await asyncio.sleep(1.0)  # the leader is placing what has arrived so far
                schedulers[leader].kill()
                killed_at = time.time()
        deadline = time.monotonic() + 60
        while len(launches) < tasks and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        stop.set()
        await beats
        took_over = await lease_holder(js, subjects)
        placed = await assignments(js, subjects)
        per_attempt = Counter((a.aggregate_id, a.attempt) for a, _ in placed)
        after = [killed_at, *sorted(t for _, t in placed if t > killed_at)]
        await nc.close()
        return PlacementFigures(
            scenario="kill-scheduler-leader", tasks=tasks, assigned=len(per_attempt),
            double_assigned=sum(1 for n in per_attempt.values() if n > 1),
            double_launched=sum(1 for n in launches.values() if n > 1),
            lost=tasks - len(per_attempt),
            placements_resume_s=round(max(b - a for a, b in itertools.pairwise(after)), 3)
            if len(after) > 1 else float("inf"),
            lease_ttl_s=LEASE_TTL_S, killed=leader, took_over=took_over,
        )
    finally:
        control.kill_all()
        cluster.close()
        network.close()

