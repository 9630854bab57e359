"""The scheduler's metrics: what happened to tasks (counted from events) and what the view
holds now (read at scrape time).

Counters and histograms come from ``observe``: a pure function from one folded event and the
task's state before it to the observations it calls for. Only the active replica records them,
and only events it folds live, so two replicas never count one placement twice and a restart
does not count history again.

Gauges are read from the view when Prometheus scrapes (``ViewCollector``, in the metrics
server's thread, from copies of the view's indexes), so they are the view's truth even after a
reload that bypassed the fold: queue depth and the oldest wait by requested platform, live
attempts, and each agent's slots, GPUs and last heartbeat (agents connect outbound only, so the
scheduler, which hears them all, speaks for them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from touchstone.scheduler.config import SchedulerSettings
from touchstone.scheduler.domain import HostReport, foreign, online
from touchstone.scheduler.view import SchedulerView
from touchstone.shared import events as ev
from touchstone.shared import metrics
from touchstone.shared.lifecycle import TASK_LIVE, TaskState, TaskStatus
from touchstone.shared.system import SystemSettings

PLACEMENTS = metrics.counter("placements_total", "Attempts placed, by platform", ("platform",))
QUEUE_WAIT = metrics.histogram(
    "queue_wait_seconds", "Time a task waited in the queue before placement, by the platform it asked for",
    ("platform",), buckets=metrics.DURATION_BUCKETS,
)
ATTEMPTS = metrics.counter(
    "attempts_total", "Attempts that ended, by platform, result (succeeded, failed, cancelled) and failure class",
    ("platform", "result", "failure_class"),
)
PHASE_SECONDS = metrics.histogram(
    "attempt_phase_seconds", "Time an attempt spent in each phase (assigned, provisioning, preparing, running)",
    ("platform", "phase"), buckets=metrics.DURATION_BUCKETS,
)
STUCK = metrics.counter(
    "tasks_stuck_total", "Attempts the scheduler failed because they overran a phase deadline", ("platform", "phase")
)


@dataclass(frozen=True)
class Observation:
    """One thing to record: ``metric`` is ``placement``, ``wait``, ``phase``, ``attempt`` or ``stuck``."""

    metric: str
    labels: tuple[str, ...]
    value: float = 1.0


def observe(event: ev.Event, before: TaskState | None, platform: str | None) -> list[Observation]:
    """What ``event`` adds to the counters, given the task's state before it and the platform
    of its current attempt (``None`` when not placed)."""
    if not isinstance(event, ev.TaskEvent) or before is None:
        return []
    out: list[Observation] = []
    at = event.occurred_at
    status = before.status
    if isinstance(event, ev.TaskAssigned) and status is TaskStatus.QUEUED:
        out.append(Observation("placement", (event.platform,)))
        # it waited since it entered the queue, or since its retry back-off ended
        entered = max((d for d in (before.phase_since, before.not_before) if d is not None and d <= at), default=at)
        out.append(Observation("wait", (before.platform,), (at - entered).total_seconds()))
        return out
    if status not in TASK_LIVE:
        return out
    where = platform or "unknown"
    moves = isinstance(event, ev.ContainerLaunched | ev.ContainerReady | ev.TrainingStarted | ev.TrainingFinished
                       | ev.TaskFailed | ev.TaskCancelled)
    if moves and before.phase_since is not None and at >= before.phase_since:
        out.append(Observation("phase", (where, status.value.lower()), (at - before.phase_since).total_seconds()))
    if isinstance(event, ev.TrainingFinished):
        out.append(Observation("attempt", (where, "succeeded", "")))
    elif isinstance(event, ev.TaskFailed):
        out.append(Observation("attempt", (where, "failed", event.failure_class)))
        if event.reason.startswith("stuck:"):
            out.append(Observation("stuck", (where, status.value.lower())))
    elif isinstance(event, ev.TaskCancelled):
        out.append(Observation("attempt", (where, "cancelled", "")))
    return out


def record(observations: Iterable[Observation]) -> None:
    for o in observations:
        if o.metric == "placement":
            PLACEMENTS.labels(*o.labels).inc()
        elif o.metric == "wait":
            QUEUE_WAIT.labels(*o.labels).observe(o.value)
        elif o.metric == "phase":
            PHASE_SECONDS.labels(*o.labels).observe(o.value)
        elif o.metric == "attempt":
            ATTEMPTS.labels(*o.labels).inc()
        elif o.metric == "stuck":
            STUCK.labels(*o.labels).inc()


# --- gauges read at scrape time -----------------------------------------------------------


class Source(Protocol):
    """What the collector reads: the running scheduler."""

    cfg: SchedulerSettings
    view: SchedulerView
    hosts: dict[str, HostReport]
    system: SystemSettings
    clock: Callable[[], datetime]

    @property
    def active(self) -> bool: ...


GAUGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "scheduler_active": ("1 on the replica that places tasks", ()),
    "queue_depth": ("Tasks waiting for placement, by the platform they asked for", ("platform",)),
    "queue_oldest_wait_seconds": (
        "How long the longest-waiting placeable task has waited (0: none waits), by requested platform",
        ("platform",)),
    "attempts_live": ("Attempts placed and not yet ended, by platform", ("platform",)),
    "agent_up": ("1 while the host's agent heartbeats within the timeout and serves this namespace", ("host",)),
    "agent_declared": ("Servers an admin declared (1 each)", ("host",)),
    "agent_last_heartbeat_timestamp_seconds": ("When the scheduler last heard the host's agent (Unix time)",
                                               ("host",)),
    "agent_slots": ("Task slots the agent reports", ("host",)),
    "agent_slots_free": ("Task slots no container holds", ("host",)),
    "agent_gpu_utilization_ratio": ("GPU utilisation the agent reports (0-1)", ("host", "gpu")),
    "agent_gpu_memory_used_bytes": ("GPU memory in use the agent reports", ("host", "gpu")),
}
"""The families ``ViewCollector`` reads at scrape time: name (after ``touchstone_``) -> help, labels."""


def _family(name: str) -> GaugeMetricFamily:
    doc, labels = GAUGES[name]
    return GaugeMetricFamily(f"touchstone_{name}", doc, labels=labels)


class ViewCollector(Collector):
    """Gauges from the scheduler this process runs (the last one started, in tests)."""

    def __init__(self) -> None:
        self.source: Source | None = None

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return [_family(name) for name in GAUGES]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        source = self.source
        if source is None:
            return
        active = _family("scheduler_active")
        active.add_metric((), 1 if source.active else 0)
        yield active
        yield from _queue(source.view, source.clock())
        yield from _agents(source)


def _queue(view: SchedulerView, now: datetime) -> Iterator[GaugeMetricFamily]:
    depth, oldest, live = _family("queue_depth"), _family("queue_oldest_wait_seconds"), _family("attempts_live")
    for platform, keys in sorted(_snapshot(view.queued_for).items()):
        depth.add_metric((platform,), len(keys))
        waits = [_waited(task.state, now) for k in keys if (task := view.tasks.get(k)) is not None]
        oldest.add_metric((platform,), max(waits, default=0.0))
    counts: dict[str, int] = {"onprem": 0, "runpod": 0}
    for key in list(view.live):
        task = view.tasks.get(key)
        if task is not None and task.state is not None:
            where = task.platforms.get(task.attempt, "unknown")
            counts[where] = counts.get(where, 0) + 1
    for platform, n in sorted(counts.items()):
        live.add_metric((platform,), n)
    yield from (depth, oldest, live)


def _snapshot(queued_for: dict[str, set[str]]) -> dict[str, list[str]]:
    """A copy taken at once: the scrape runs in the metrics server's thread while the event loop
    changes the view (copying a set or dict in C holds the GIL throughout)."""
    return {platform: list(keys) for platform, keys in list(queued_for.items())}


def _waited(state: TaskState | None, now: datetime) -> float:
    """Seconds a queued task has waited since it became placeable (a retry's back-off is no wait)."""
    if state is None or state.phase_since is None:
        return 0.0
    start = max(state.phase_since, state.not_before or state.phase_since)
    return max(0.0, (now - start).total_seconds())


def _agents(source: Source) -> Iterator[GaugeMetricFamily]:
    now = source.clock()
    up, declared = _family("agent_up"), _family("agent_declared")
    seen = _family("agent_last_heartbeat_timestamp_seconds")
    slots, free = _family("agent_slots"), _family("agent_slots_free")
    gpu, memory = _family("agent_gpu_utilization_ratio"), _family("agent_gpu_memory_used_bytes")
    names = {s.name for s in source.system.servers}
    hosts = dict(source.hosts)
    for name in sorted(names):
        declared.add_metric((name,), 1)
    for name in sorted(names | set(hosts)):
        report = hosts.get(name)
        alive = online(report, now, source.cfg.heartbeat_timeout_s) and not (
            report is not None and foreign(report, source.cfg.namespace))
        up.add_metric((name,), 1 if alive else 0)
        if report is None:
            continue
        hb = report.heartbeat
        seen.add_metric((name,), report.received_at.timestamp())
        slots.add_metric((name,), hb.slots_total)
        free.add_metric((name,), hb.slots_free)
        for g in hb.gpus:
            if g.utilization_pct is not None:
                gpu.add_metric((name, str(g.index)), g.utilization_pct / 100)
            if g.memory_used_mb is not None:
                memory.add_metric((name, str(g.index)), g.memory_used_mb * 1024 * 1024)
    yield from (up, declared, seen, slots, free, gpu, memory)


COLLECTOR = ViewCollector()
metrics.REGISTRY.register(COLLECTOR)
