"""Pure decisions of a provider that (re)starts: which listed pods carry attempts it should
drive again, and the launch to drive each with, from the task's events alone. No I/O, no clock.

A ``touchstone-`` pod is resumed when the events say its attempt is live on RunPod *and* past
the launch (``PROVISIONING``, ``PREPARING`` or ``RUNNING``): the launch command was acked once
``ContainerLaunched`` was stored, so nothing else will bring that attempt back. An attempt still
``ASSIGNED`` is left to its launch command, which is redelivered until its pod is recorded. The
launch is rebuilt as the scheduler built it: the task's ``TaskQueued`` (kind, spec, interval)
and the attempt's last ``TaskAssigned`` (placement, GPU type), with the same command id.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from touchstone.shared import events as ev
from touchstone.shared.commands import LaunchTask
from touchstone.shared.lifecycle import TaskState, TaskStatus

from .domain import attempt_live

PAST_LAUNCH = frozenset({TaskStatus.PROVISIONING, TaskStatus.PREPARING, TaskStatus.RUNNING})


@dataclass(frozen=True)
class Resume:
    """An attempt to drive again: its launch and when its phases began (wall clock)."""

    command: LaunchTask
    launched_at: datetime | None
    """``ContainerLaunched`` (the pod's cost counts from it)."""
    running_since: datetime | None
    """``TrainingStarted``, when the trainer was started (the run deadline counts from it)."""


def resumable(state: TaskState | None, attempt: int) -> bool:
    """Whether a pod of this attempt should be driven again by whoever finds it."""
    return attempt_live(state, attempt) and state is not None and state.status in PAST_LAUNCH


def launch_from_history(history: Iterable[ev.TaskEvent], attempt: int) -> Resume | None:
    """The launch of ``attempt`` rebuilt from the task's events, or None when they lack its
    ``TaskQueued`` or its assignment to RunPod."""
    queued: ev.TaskQueued | None = None
    assigned: ev.TaskAssigned | None = None
    launched_at = running_since = None
    for event in history:
        match event:
            case ev.TaskQueued():
                queued = event
            case ev.TaskAssigned(attempt=a, platform="runpod") if a == attempt:
                assigned, launched_at, running_since = event, None, None
            case ev.ContainerLaunched(attempt=a) if a == attempt:
                launched_at = event.occurred_at
            case ev.TrainingStarted(attempt=a) if a == attempt:
                running_since = event.occurred_at
    if queued is None or assigned is None:
        return None
    command = LaunchTask(
        command_id=ev.derived_id(assigned.event_id, "launch"),
        submission_id=queued.submission_id,
        task_id=queued.task_id,
        attempt=attempt,
        kind=queued.kind,
        spec=queued.spec,
        prediction_interval=queued.prediction_interval,
        placement=assigned.placement,
        gpu_type=assigned.gpu_type,
    )
    return Resume(command, launched_at, running_since)
