"""Pure decisions of the RunPod provider: no I/O, no clock reads (``now`` is passed in).

* ``decide_launch``: may a new pod start now (throttle, balance, key)?
* ``hold_left``, ``launch_deferred``: a launch that cannot start yet is held, then handed back.
* ``decide_reap``: which ``touchstone-`` pods nobody owns have outlived the grace period.
* ``balance_level``, ``cost_usd``, ``pick_gpu_type``, ``trainer_argv``, ``outcome``.

A feature set's ``requirements.txt`` has its own pure decisions in ``requirements.py``.
"""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from touchstone.shared import attempt as attempt_rules
from touchstone.shared import events as ev
from touchstone.shared.commands import CONTAINER_PREFIX, LaunchTask, deferral, trainer_args
from touchstone.shared.errors import IllegalTransition
from touchstone.shared.lifecycle import TASK_LIVE, TaskState, task_transition
from touchstone.shared.reports import ValidationReport
from touchstone.shared.subjects import task_aggregate_id

from .api import GpuType, Stock

LOG_TAIL_LINES = 50

# --- throttle -----------------------------------------------------------------------------


class BalanceLevel(StrEnum):
    OK = "ok"
    LOW = "low"
    """Below the first threshold: alarm, keep launching."""
    STOP = "stop"
    """Below the second threshold: no new pods."""


def balance_level(balance: float, low_usd: float, stop_usd: float) -> BalanceLevel:
    if balance < stop_usd:
        return BalanceLevel.STOP
    if balance < low_usd:
        return BalanceLevel.LOW
    return BalanceLevel.OK


@dataclass(frozen=True)
class LaunchGate:
    """Everything a launch decision depends on."""

    limit: int
    """``runpod_max_running_tasks`` (0 pauses RunPod)."""
    ours: frozenset[str]
    """Names of the attempts this provider drives now."""
    listed: frozenset[str]
    """Names of the ``touchstone-`` pods RunPod lists (not terminated)."""
    balance: BalanceLevel = BalanceLevel.OK
    key_rejected: bool = False
    paused: bool = False
    """``scheduler_paused``: the lifecycle is paused, so no pod starts (``shared.instance``)."""


@dataclass(frozen=True)
class LaunchDecision:
    go: bool
    reason: str = ""


def launches_stopped(balance: BalanceLevel, key_rejected: bool) -> str | None:
    """Why no pod may start whatever the throttle says (for the System page), or None."""
    if key_rejected:
        return "RunPod rejected the API key"
    if balance is BalanceLevel.STOP:
        return "RunPod balance below the stop threshold"
    return None


def decide_launch(name: str, gate: LaunchGate) -> LaunchDecision:
    """Whether attempt ``name`` may get a pod now. A pod that already exists under its name is
    adopted, not counted twice; everything else running counts, ours or not."""
    stopped = launches_stopped(gate.balance, gate.key_rejected)
    if stopped is not None:
        return LaunchDecision(False, stopped)
    if gate.paused:
        return LaunchDecision(False, "the lifecycle is paused (scheduler_paused)")
    if gate.limit <= 0:
        return LaunchDecision(False, "RunPod is paused (runpod_max_running_tasks = 0)")
    running = (gate.ours | gate.listed) - {name}
    if len(running) >= gate.limit:
        return LaunchDecision(False, f"{len(running)} pods running, limit {gate.limit}")
    return LaunchDecision(True)


def hold_left(assigned_at: datetime | None, now: datetime, hold_s: float) -> float:
    """Seconds a launch that cannot start yet may still be held, counted from its assignment
    (``launch_hold_s`` is half the scheduler's launch deadline); 0 when it must be handed back."""
    if assigned_at is None:
        return hold_s
    return max(0.0, hold_s - (now - assigned_at).total_seconds())


def launch_deferred(command: LaunchTask, reason: str, now: datetime, retry_s: float,
                    assigned_at: datetime | None) -> ev.LaunchDeferred:
    """The task back to the queue, same attempt, placed again no sooner than ``retry_s`` from
    now. Its id derives from the launch and the assignment it answers (a stale launch delivered
    after a later assignment of the same attempt defers that one anew), so a repeat is the
    same event."""
    stamp = assigned_at.isoformat() if assigned_at is not None else ""
    return deferral(command, event_id=ev.derived_id(command.command_id, stamp, "LaunchDeferred"), reason=reason,
                    now=now, retry_s=retry_s)


# --- the reaper ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ReapPlan:
    terminate: tuple[str, ...]
    """Pod ids to terminate now."""
    unowned_since: Mapping[str, float] = field(default_factory=dict)
    """Pod id -> when it was first seen unowned (carry to the next sweep)."""


def is_ours(name: str) -> bool:
    """Touchstone's pods carry the prefix; any other pod is never touched."""
    return name.startswith(CONTAINER_PREFIX)


def decide_reap(
    pods: Iterable[tuple[str, str]],
    owned: frozenset[str],
    unowned_since: Mapping[str, float],
    now: float,
    grace_s: float,
) -> ReapPlan:
    """``pods`` are (id, name) as listed. A prefixed pod whose name no live attempt owns is
    terminated once it has been seen unowned for ``grace_s``."""
    terminate: list[str] = []
    since: dict[str, float] = {}
    for pod_id, name in pods:
        if not is_ours(name) or name in owned:
            continue
        first = unowned_since.get(pod_id, now)
        if now - first >= grace_s:
            terminate.append(pod_id)
        else:
            since[pod_id] = first
    return ReapPlan(tuple(terminate), since)


def spend(pods: Iterable[tuple[str, float, bool]]) -> tuple[int, float]:
    """(how many, USD per hour) of our running pods; ``pods`` are (name, cost per hour, running)
    as RunPod lists them, and only ``touchstone-`` pods count."""
    costs = [max(0.0, cost) for name, cost, running in pods if running and is_ours(name)]
    return len(costs), round(sum(costs), 6)


def split_pod_name(name: str) -> tuple[str, int] | None:
    """(task aggregate id, attempt) of ``touchstone-{submission}-{task}-{attempt}``; the
    aggregate id is ``{submission}-{task}`` however many dashes the ids hold."""
    if not is_ours(name):
        return None
    rest, _, attempt = name[len(CONTAINER_PREFIX) :].rpartition("-")
    if not rest or not attempt.isdigit():
        return None
    return rest, int(attempt)


def fold_lenient(history: Iterable[ev.TaskEvent], now: datetime) -> TaskState | None:
    """A task's state from its events, skipping any the lifecycle refuses."""
    state: TaskState | None = None
    for event in history:
        try:
            state = task_transition(state, event, now).state
        except IllegalTransition:
            continue
    return state


def attempt_live(state: TaskState | None, attempt: int) -> bool:
    """Whether the events say this attempt of the task is placed on RunPod and not over."""
    return (
        state is not None
        and state.attempt == attempt
        and state.status in TASK_LIVE
        and state.platform == "runpod"
    )


E = TypeVar("E", bound=ev.TaskEvent)


def attempt_event(cls: type[E], command: LaunchTask, **fields: Any) -> E:
    """The event ``cls`` of the launched attempt, caused by ``command``; its id is derived from
    the container name and the event type, so a repeat is the same event."""
    return cls(
        event_id=ev.derived_id(command.container_name, cls.__name__),
        aggregate_id=task_aggregate_id(command.submission_id, command.task_id),
        correlation_id=command.submission_id,
        causation_id=command.command_id,
        submission_id=command.submission_id,
        task_id=command.task_id,
        attempt=command.attempt,
        **fields,
    )


def accepts(state: TaskState | None, event: ev.TaskEvent, now: datetime) -> bool:
    """Whether the task's lifecycle takes ``event`` now (else the attempt is over for us)."""
    try:
        task_transition(state, event, now)
    except IllegalTransition:
        return False
    return True


# --- launch and run -----------------------------------------------------------------------


def pick_gpu_type(command: LaunchTask, catalog: Sequence[GpuType], default: str) -> str:
    """The GPU type a launch asked for; for ``any`` (or none), the cheapest type in stock."""
    wanted = command.gpu_type or command.placement
    if wanted and wanted != "any":
        return wanted
    in_stock = [g for g in catalog if g.offered and g.stock not in (Stock.NONE,)]
    if not in_stock:
        return default
    return min(in_stock, key=lambda g: (g.price_per_hour, g.id)).id


def cost_usd(cost_per_hour: float, seconds: float) -> float:
    return round(max(0.0, cost_per_hour) * max(0.0, seconds) / 3600.0, 6)


@dataclass(frozen=True)
class PodLayout:
    """Where an attempt's files live in the pod, relative to the SSH user's home."""

    root: str = "touchstone"

    @property
    def feature_set(self) -> str:
        return f"{self.root}/feature-set"

    @property
    def trainer(self) -> str:
        return f"{self.root}/trainer"

    @property
    def trainer_src(self) -> str:
        return f"{self.root}/trainer/src"

    @property
    def output(self) -> str:
        return f"{self.root}/out"

    @property
    def report(self) -> str:
        return f"{self.output}/report.json"

    @property
    def deps(self) -> str:
        """The feature set's installed requirements (``pip --target``)."""
        return f"{self.root}/deps"

    @property
    def requirements(self) -> str:
        """The checked requirement lines, as pip reads them."""
        return f"{self.root}/requirements.txt"

    def wheels(self, index: int) -> str:
        """The ``index``-th folder of ``pip_find_links``, copied in."""
        return f"{self.root}/wheels/{index}"


def trainer_argv(command: LaunchTask, layout: PodLayout, python: str, module: str, *,
                 deps: bool = False) -> list[str]:
    """``env PYTHONPATH=... PYTHON -m MODULE validate|train ...`` for this attempt (DESIGN §6);
    with ``deps`` the installed requirements come after the trainer's ``src`` on the path."""
    spec = command.spec
    feature_set = posixpath.normpath(f"{layout.feature_set}/{spec.feature_set_path}")
    if feature_set != layout.feature_set and not feature_set.startswith(layout.feature_set + "/"):
        raise ValueError(f"feature_set_path {spec.feature_set_path!r} leaves the feature set")
    path = f"{layout.trainer_src}:{layout.deps}" if deps else layout.trainer_src
    head = ["env", f"PYTHONPATH={path}", "PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1",
            python, "-m", module]
    return [*head, *trainer_args(command, feature_set=feature_set, output=layout.output, report=layout.report)]


def command_line(argv: Sequence[str]) -> str:
    """One SSH command string whose words are exactly ``argv`` (each word quoted)."""
    return shlex.join(argv)


Outcome = attempt_rules.Outcome


def outcome(exit_status: int | None, kind: str, report: ValidationReport | None,
            report_problem: str | None = None) -> Outcome:
    """The one judge of every platform (``touchstone.shared.attempt.judge_exit``); a pod whose
    session ended without a status is an infrastructure failure."""
    if exit_status is None:
        return Outcome(False, "the trainer's SSH session ended without an exit status", "infrastructure")
    return attempt_rules.judge_exit(exit_status, kind, report, report_problem)
