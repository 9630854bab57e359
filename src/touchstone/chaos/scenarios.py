"""Faults of the broker, each while appends are in flight, and the figures they leave.

Every scenario runs against a fresh three-node cluster with R3 streams, under ``AppendLoad``,
and returns a ``Figures``: acknowledged appends lost (must be 0), whether the three nodes agree
on every stream's last sequence and count afterwards, the longest pause in acknowledgements
after the fault (the time until event writes resume), and the appends that were refused.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from touchstone.shared.jetstream import connect, provision
from touchstone.shared.subjects import Subjects

from touchstone.chaos.appends import Ack, AppendLoad
from touchstone.chaos.cluster import SERVICES_USER, NatsCluster
from touchstone.chaos.netns import Network


@dataclass(frozen=True)
class Timing:
    """How long each part of a scenario lasts (the short version in ``make test`` scales down)."""

    warmup_s: float = 2.0
    pause_s: float = 30.0  # SIGSTOP of a node in the combined fault
    settle_s: float = 5.0
    leader_kills: int = 1  # scenario 1: how many times the events stream's leader is killed
    leader_stops: int = 0  # scenario 1, then: how many times it is stopped with SIGTERM (planned)


@dataclass
class Figures:
    scenario: str
    acked: int
    lost: int
    refused: int
    nodes_agree: bool
    writes_resume_s: float
    acked_after_fault: int
    resume_by_fault_s: list[float] = field(default_factory=list)
    detail: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


async def missing(js: JetStreamContext, stream: str, acked: list[Ack]) -> list[Ack]:
    """Acknowledged appends the stream no longer holds at the sequence it acknowledged."""
    gone = []
    for ack in acked:
        try:
            msg = await js.get_msg(stream, seq=ack.seq)
        except NotFoundError:
            gone.append(ack)
            continue
        if (msg.headers or {}).get("Nats-Msg-Id") != ack.event_id:
            gone.append(ack)
    return gone


Fault = Callable[[NatsCluster, Subjects, Timing, list[float]], Awaitable[str]]


async def kill_leaders(cluster: NatsCluster, subjects: Subjects, timing: Timing, marks: list[float]) -> str:
    """Scenario 1: SIGKILL the meta leader, bring it back with its data; then the same for the
    events stream's leader, ``timing.leader_kills`` times (each pause after such a kill is one
    draw of nats-server's election timeout, so several give its spread); then stop the events
    leader with SIGTERM ``timing.leader_stops`` times, as a planned restart does. Each kill or
    stop is a mark: writes must resume soon after it."""
    said = []
    events_leader = lambda: cluster.stream_leader(subjects.events_stream)  # noqa: E731
    roles = [("meta leader", cluster.meta_leader, signal.SIGKILL)]
    roles += [("events leader", events_leader, signal.SIGKILL)] * timing.leader_kills
    roles += [("events leader (SIGTERM)", events_leader, signal.SIGTERM)] * timing.leader_stops
    for role, find, sig in roles:
        victim = find()
        marks.append(time.monotonic())
        cluster.kill(victim, sig)
        await asyncio.sleep(timing.settle_s)
        await asyncio.to_thread(cluster.restart, victim)
        await asyncio.sleep(timing.settle_s)
        said.append(f"{role} {victim}")
    return "killed and restarted with its data: " + ", then ".join(said)


async def pause_one_kill_another(cluster: NatsCluster, subjects: Subjects, timing: Timing,
                                 marks: list[float]) -> str:
    """Scenario 8 (Jepsen, NATS 2.12.1): SIGSTOP one node for ``pause_s`` while another, the
    events stream's leader, is SIGKILLed and restarted. Two of three nodes are out at once, so
    writes stop until the killed node is back: the mark is its restart."""
    leader = cluster.stream_leader(subjects.events_stream)
    paused = next(n.name for n in cluster.nodes if n.name != leader)
    cluster.pause(paused)
    started = time.monotonic()
    cluster.kill(leader)
    await asyncio.sleep(min(timing.settle_s, timing.pause_s / 2))
    marks.append(time.monotonic())
    cluster.start_node(leader)  # not waited for: its peer is still paused
    await asyncio.sleep(max(0.0, timing.pause_s - (time.monotonic() - started)))
    cluster.resume(paused)
    await asyncio.to_thread(cluster.wait_ready, 60.0)
    return f"paused {paused} for {timing.pause_s:.0f}s while {leader} (events leader) was killed and restarted"


async def run(fault: Fault, name: str, root: Path, timing: Timing, writers: int = 4) -> Figures:
    """One scenario on a fresh cluster; the cluster and its hosts are gone afterwards."""
    network = Network()
    cluster = NatsCluster(network, root / name)
    try:
        cluster.start()
        subjects = Subjects("chaos")
        nc = await connect(cluster.url, f"chaos-{name}", user=SERVICES_USER, password=cluster.password,
                           tls=cluster.client_tls())
        js = nc.jetstream(timeout=2.0)
        await provision(js, subjects, replicas=3)
        load = AppendLoad(js, subjects, writers=writers)
        load.start()
        await asyncio.sleep(timing.warmup_s)
        marks: list[float] = []
        detail = await fault(cluster, subjects, timing, marks)
        await asyncio.sleep(timing.settle_s)
        await load.stop()
        streams = [subjects.events_stream]
        states = await asyncio.to_thread(cluster.wait_agreement, streams, 60.0)
        agree = all(len({(s["last_seq"], s["messages"]) for s in states[x].values()}) == 1
                    and len(states[x]) == len(cluster.nodes) for x in streams)
        resumes = [round(load.longest_pause_after(m, timing.settle_s), 3) for m in marks]
        lost = await missing(js, subjects.events_stream, load.acked)
        await nc.close()
        return Figures(scenario=name, acked=len(load.acked), lost=len(lost), refused=load.failed,
                       nodes_agree=agree, writes_resume_s=max(resumes),
                       resume_by_fault_s=resumes,
                       acked_after_fault=load.acked_after(marks[0]), detail=detail)
    finally:
        cluster.close()
        network.close()
