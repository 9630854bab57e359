"""Placement: which queued tasks go where, now. Pure: no I/O, ``now`` is passed in.

Rules, in order:

* nothing is placed while the scheduler is paused;
* a task waiting out its retry back-off (``not_before`` in the future) is not placed;
* higher priority first; within a priority, submissions take turns (round-robin, the one
  queued earliest first) and each submission's tasks go in FIFO order, so one big sweep cannot
  starve the others;
* ``onprem`` tasks take a free slot on an online server, ``runpod`` tasks one of the RunPod
  slots left under ``runpod_max_running_tasks``, ``any`` tasks on-prem first and RunPod when
  no server has room;
* a task that names a ``gpu_type`` takes only an on-prem GPU whose model matches it
  (``gpus.gpu_matches``): with ``any`` it overflows to RunPod when none is free, with
  ``onprem`` it waits;
* a task that cannot be placed does not block the tasks behind it from other platforms.

On-prem slots: a server declared in this namespace's settings with ``num_slots`` whose agent
sent a heartbeat within the timeout; ``num_slots`` 0 pauses it, a server never heard from gets
nothing, and so does one whose latest heartbeat names another namespace (a server is online in
one namespace only; heartbeats that name none, from older agents, count as ours). GPU tasks take a
GPU slot ``host/{i}``; tasks that need no GPU take a CPU slot ``host/cpu{i}``. The emptiest
server goes first, so load spreads. A GPU slot is free when no attempt live in the view sits
there *and* the agent's latest heartbeat does not name it busy (``slots_busy``): the view frees a
slot at the attempt's end (failed as stuck, cancelled, finished), while the agent holds it until
its container is gone, and the agent refuses a launch onto a held slot.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import groupby
from typing import Literal

from touchstone.scheduler.gpus import gpu_matches, slot_models, wants_gpu_type
from touchstone.shared.agents import AgentHeartbeat
from touchstone.shared.system import SystemSettings

Platform = Literal["onprem", "runpod", "any"]


@dataclass(frozen=True)
class QueuedTask:
    """A task waiting for a place, as placement sees it."""

    key: str
    submission_id: str
    attempt: int
    order: int
    """Its position in the queue: the stream sequence at which it was queued."""
    priority: int = 0
    platform: Platform = "any"
    gpu_type: str | None = None
    needs_gpu: bool = True
    not_before: datetime | None = None


@dataclass(frozen=True)
class ServerRoom:
    """Free slots on one online server."""

    name: str
    gpu_slots: tuple[int, ...] = ()
    cpu_slots: tuple[int, ...] = ()
    gpu_models: tuple[str, ...] = ()
    """The GPU model behind each slot index (``""`` or absent: unknown)."""


@dataclass(frozen=True)
class Capacity:
    paused: bool = False
    servers: tuple[ServerRoom, ...] = ()
    runpod_free: int = 0


@dataclass(frozen=True)
class Assignment:
    key: str
    attempt: int
    platform: Literal["onprem", "runpod"]
    placement: str
    gpu_type: str | None = None


@dataclass(frozen=True)
class HostReport:
    """An agent's last heartbeat and when this scheduler received it."""

    heartbeat: AgentHeartbeat
    received_at: datetime


@dataclass(frozen=True)
class LivePlacement:
    """Where a live attempt sits (the scheduler's own record)."""

    platform: str
    placement: str
    container: str


def online(report: HostReport | None, now: datetime, timeout_s: float) -> bool:
    return report is not None and now - report.received_at <= timedelta(seconds=timeout_s)


def foreign(report: HostReport, namespace: str | None) -> bool:
    """Whether the host's latest heartbeat says it serves another namespace."""
    claimed = report.heartbeat.namespace
    return namespace is not None and claimed is not None and claimed != namespace


def capacity_of(
    system: SystemSettings,
    hosts: Mapping[str, HostReport],
    live: Iterable[LivePlacement],
    now: datetime,
    *,
    heartbeat_timeout_s: float,
    cpu_slots_per_server: int,
    namespace: str | None = None,
) -> Capacity:
    """Free room per platform: declared servers that are online (in ``namespace``, when
    given), minus what runs there."""
    gpu_used: dict[str, set[int]] = {}
    cpu_used: dict[str, set[int]] = {}
    pending: dict[str, int] = {}
    runpod_used = 0
    for p in live:
        if p.platform == "runpod":
            runpod_used += 1
            continue
        host, _, slot = p.placement.partition("/")
        if slot.startswith("cpu"):
            cpu_used.setdefault(host, set()).add(int(slot[3:] or 0))
            continue
        gpu_used.setdefault(host, set()).add(int(slot) if slot.isdigit() else -1)
        report = hosts.get(host)
        if report is None or p.container not in report.heartbeat.running:
            pending[host] = pending.get(host, 0) + 1
    oldest = now - timedelta(seconds=heartbeat_timeout_s)
    all_cpu = range(cpu_slots_per_server)
    rooms = []
    for server in system.servers:
        report = hosts.get(server.name)
        if server.num_slots == 0 or report is None or report.received_at < oldest or foreign(report, namespace):
            continue
        hb = report.heartbeat
        slots = min(server.num_slots, hb.slots_total) if hb.slots_total else server.num_slots
        # a slot is taken while an attempt we count as live sits there, and while the agent says a
        # container holds it: an attempt that ended in our view may still be stopping on the host
        taken = gpu_used.get(server.name, set()) | set(hb.slots_busy)
        free_gpu = [i for i in range(slots) if i not in taken]
        # the agent's own count wins when something we did not place holds a GPU
        agent_free = max(0, hb.slots_free - pending.get(server.name, 0))
        taken_cpu = cpu_used.get(server.name, ())
        free_cpu = tuple(i for i in all_cpu if i not in taken_cpu) if taken_cpu else tuple(all_cpu)
        models = slot_models(slots, hb.gpus, server.gpus) if hb.gpus or server.gpus else ()
        rooms.append(ServerRoom(server.name, tuple(free_gpu[:agent_free]), free_cpu, models))
    return Capacity(
        paused=system.scheduler_paused,
        servers=tuple(rooms),
        runpod_free=max(0, system.runpod_max_running_tasks - runpod_used),
    )


def open_platforms(capacity: Capacity) -> tuple[str, ...]:
    """The platforms a queued task may ask for and still be placed now."""
    if capacity.paused:
        return ()
    onprem = any(s.gpu_slots or s.cpu_slots for s in capacity.servers)
    runpod = capacity.runpod_free > 0
    return (("onprem",) if onprem else ()) + (("runpod",) if runpod else ()) + (("any",) if onprem or runpod else ())


def fair_order(queue: Iterable[QueuedTask], now: datetime) -> list[QueuedTask]:
    """Eligible tasks in placement order: priority, then round-robin over submissions (the
    earliest queued first), FIFO within a submission."""
    eligible = sorted(
        (t for t in queue if t.not_before is None or t.not_before <= now),
        key=lambda t: (-t.priority, t.order),
    )
    ordered: list[QueuedTask] = []
    for _, level in groupby(eligible, key=lambda t: t.priority):
        lanes: dict[str, deque[QueuedTask]] = {}
        for task in level:  # in FIFO order, so lanes are created earliest-first
            lanes.setdefault(task.submission_id, deque()).append(task)
        turn = deque(lanes.values())
        while turn:
            lane = turn.popleft()
            ordered.append(lane.popleft())
            if lane:
                turn.append(lane)
    return ordered


class _Slots:
    """Free slots of one kind across servers. Each GPU type asked for draws through its own
    heap of the servers that have a matching slot, emptiest server first; a heap entry whose
    server lost slots to another type since is re-ranked when it comes up (counts only fall)."""

    def __init__(self, rooms: Iterable[ServerRoom], label: str = "") -> None:
        self.label = label
        self.free = {r.name: sorted(r.cpu_slots if label else r.gpu_slots) for r in rooms}
        self.free = {name: slots for name, slots in self.free.items() if slots}
        self.models = {r.name: r.gpu_models for r in rooms}
        self.left = sum(len(s) for s in self.free.values())
        self._heaps: dict[str | None, list[tuple[int, str]]] = {}

    def _fits(self, gpu_type: str | None, name: str, slot: int) -> bool:
        if gpu_type is None:
            return True
        models = self.models.get(name, ())
        return gpu_matches(gpu_type, models[slot] if slot < len(models) else "")

    def take(self, gpu_type: str | None = None) -> str | None:
        """A free slot (of a GPU matching ``gpu_type``, unless ``None``) on the emptiest server."""
        heap = self._heaps.get(gpu_type)
        if heap is None:
            heap = [(-len(s), n) for n, s in self.free.items() if any(self._fits(gpu_type, n, i) for i in s)]
            heapq.heapify(heap)
            self._heaps[gpu_type] = heap
        while heap:
            rank, name = heap[0]
            slots = self.free[name]
            if -rank != len(slots):
                if slots:
                    heapq.heapreplace(heap, (-len(slots), name))
                else:
                    heapq.heappop(heap)
                continue
            slot = next((i for i in slots if self._fits(gpu_type, name, i)), None)
            if slot is None:
                heapq.heappop(heap)
                continue
            slots.remove(slot)
            self.left -= 1
            if any(self._fits(gpu_type, name, i) for i in slots):
                heapq.heapreplace(heap, (-len(slots), name))
            else:
                heapq.heappop(heap)
            return f"{name}/{self.label}{slot}"
        return None


def decide(
    queue: Iterable[QueuedTask],
    capacity: Capacity,
    now: datetime,
    *,
    runpod_default_gpu_type: str = "any",
) -> list[Assignment]:
    """The assignments to make now, in placement order."""
    if capacity.paused:
        return []
    gpu = _Slots(capacity.servers)
    cpu = _Slots(capacity.servers, "cpu")
    runpod_free = capacity.runpod_free
    if not gpu.left and not cpu.left and runpod_free <= 0:
        return []
    # only tasks some platform has room for are ordered at all: a long queue waiting for a
    # paused or full platform costs one pass, not a sort
    onprem_room = {True: gpu.left > 0, False: cpu.left > 0}
    candidates = [
        t for t in queue
        if (t.platform != "runpod" and onprem_room[t.needs_gpu]) or (t.platform != "onprem" and runpod_free > 0)
    ]
    out: list[Assignment] = []
    for task in fair_order(candidates, now):
        if task.platform in ("onprem", "any"):
            if task.needs_gpu:
                placement = gpu.take(task.gpu_type if wants_gpu_type(task.gpu_type) else None)
            else:
                placement = cpu.take()
            if placement is not None:
                out.append(Assignment(task.key, task.attempt, "onprem", placement, task.gpu_type))
                continue
        if task.platform in ("runpod", "any") and runpod_free > 0:
            runpod_free -= 1
            gpu_type = task.gpu_type or runpod_default_gpu_type
            out.append(Assignment(task.key, task.attempt, "runpod", gpu_type, task.gpu_type))
        if not gpu.left and not cpu.left and runpod_free <= 0:
            break
    return out
