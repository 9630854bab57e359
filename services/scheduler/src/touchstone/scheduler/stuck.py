"""Stuck detection: which live attempts have overrun their phase. Pure, table-driven.

| status        | phase                       | measured from                                  |
|---------------|-----------------------------|------------------------------------------------|
| ASSIGNED      | launch                      | the assignment                                 |
| PROVISIONING  | provisioning                | the launch                                     |
| PREPARING     | preparing                   | the container being ready                      |
| RUNNING       | running without heartbeat   | the later of training start, the last heartbeat |
|               |                             | naming its container, and ``watch_since``      |

A task is stuck when strictly more than its phase's limit has passed. ``watch_since`` is when
this scheduler started listening to heartbeats, so a scheduler that just took over does not
mistake its own lack of history for silence. Queued, failed and finished tasks are never stuck.

Heartbeats come from agents (``AgentHeartbeat.running`` names the containers on a host) and
from providers without agents (``LiveAttempts.running``, RunPod's pods; ``liveness.py``), so
the running rule holds for on-prem tasks always, and for RunPod tasks only once some report
has named their pod (a provider that publishes reports opts in); until then a RunPod task's
health is its provider's to report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from touchstone.shared.lifecycle import TaskStatus


@dataclass(frozen=True)
class Deadlines:
    launch_s: float = 120.0
    provisioning_s: float = 900.0
    preparing_s: float = 1800.0
    running_silence_s: float = 180.0


@dataclass(frozen=True)
class TaskClock:
    """What stuck detection needs to know about one task."""

    key: str
    status: TaskStatus
    attempt: int
    phase_since: datetime
    container: str
    platform: str = "onprem"


@dataclass(frozen=True)
class Stuck:
    key: str
    attempt: int
    phase: str
    overdue: timedelta

    @property
    def reason(self) -> str:
        return f"stuck: {self.phase} overran its deadline by {self.overdue.total_seconds():.0f}s"


@dataclass(frozen=True)
class PhaseRule:
    phase: str
    limit: Callable[[Deadlines], float]
    heartbeat: bool = False
    """Measured from the last heartbeat too."""


PHASE_RULES: dict[TaskStatus, PhaseRule] = {
    TaskStatus.ASSIGNED: PhaseRule("launch", lambda d: d.launch_s),
    TaskStatus.PROVISIONING: PhaseRule("provisioning", lambda d: d.provisioning_s),
    TaskStatus.PREPARING: PhaseRule("preparing", lambda d: d.preparing_s),
    TaskStatus.RUNNING: PhaseRule("running without heartbeat", lambda d: d.running_silence_s, True),
}


def overdue(
    task: TaskClock,
    deadlines: Deadlines,
    now: datetime,
    *,
    last_seen: datetime | None = None,
    watch_since: datetime | None = None,
) -> Stuck | None:
    """The verdict for one task: ``Stuck`` when it has overrun its phase, else ``None``."""
    rule = PHASE_RULES.get(task.status)
    if rule is None:
        return None
    start = task.phase_since
    if rule.heartbeat and task.platform != "onprem" and last_seen is None:
        return None  # nothing reports on this container's health to us
    if rule.heartbeat:
        start = max(t for t in (start, last_seen, watch_since) if t is not None)
    late = now - start - timedelta(seconds=rule.limit(deadlines))
    if late <= timedelta(0):
        return None
    return Stuck(task.key, task.attempt, rule.phase, late)


def find_stuck(
    tasks: Iterable[TaskClock],
    deadlines: Deadlines,
    now: datetime,
    *,
    last_seen: Mapping[str, datetime],
    watch_since: datetime | None = None,
) -> list[Stuck]:
    """Every overrun task; ``last_seen`` maps container names to their last heartbeat."""
    found = []
    for task in tasks:
        verdict = overdue(
            task, deadlines, now, last_seen=last_seen.get(task.container), watch_since=watch_since
        )
        if verdict is not None:
            found.append(verdict)
    return found
