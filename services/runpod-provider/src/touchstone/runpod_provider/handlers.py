"""Reactions to the provider's commands: one ``Reactions`` table keyed by command class, over a
small ``Deps`` bound at bootstrap (``RunpodProvider``); the consumer's filter comes from the table.

Launches run concurrently: ``on_launch_task`` decides (attempt still live on RunPod? room under
the throttle?), starts a supervised asyncio task for the attempt and returns at once, so the one
consumer loop is free for the next command (a ``TerminateTask`` never waits behind a launch).
A launch held back (the cap, the balance, a rejected key) is nak'ed with ``launch_retry_s`` until
``launch_hold_s`` after its assignment (half the shared launch deadline), then handed back to
the queue with ``LaunchDeferred``: same attempt, nothing burned, placed again after
``launch_retry_s``. A create that finds no stock does the same from inside the attempt.

A launch stays un-acked until its pod is recorded (``ContainerLaunched``): until then every
delivery is nak'ed with ``launch_retry_s`` (a redelivery to this provider finds the attempt in
memory and changes nothing; one to a peer replica finds the attempt named in the driver's
live reports, ``peers.py``, and leaves it alone). If the provider dies between assignment and
record, the launch is redelivered to the next provider within ``launch_retry_s`` (``ack_wait_s``
at worst), which starts the attempt again once the dead one has been silent for
``peer_silence_s``; its pod, if the create went through, is found by name and adopted, never
duplicated. So that crash costs seconds, not the scheduler's launch timeout. A provider that
stops or dies after the record leaves the pod and its detached trainer running; the next
provider adopts the attempt from the events at its first reconcile (``resume.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from touchstone.shared.commands import LaunchTask, TerminateTask, container_name
from touchstone.shared.consumer import Delivery
from touchstone.shared.errors import NotYet, RetryableError
from touchstone.shared.lifecycle import TaskStatus
from touchstone.shared.reactions import Reactions

from . import domain
from .adapters import TaskRecorder
from .attempt import AttemptRecord
from .config import RunpodProviderSettings
from .peers import Peers
from .pods import PodControl

log = logging.getLogger(__name__)


class StartAttempt(Protocol):
    def __call__(self, command: LaunchTask, *, launch_by: float) -> AttemptRecord: ...


@dataclass(eq=False)
class Deps:
    """What the reactions use."""

    settings: RunpodProviderSettings
    attempts: Mapping[str, AttemptRecord]
    """The attempts this provider drives, by pod name."""
    recorder: TaskRecorder
    peers: Peers
    pods: PodControl
    launch_gate: Callable[[], Awaitable[domain.LaunchGate]]
    """The throttle's inputs, RunPod's list of our pods read now."""
    start_attempt: StartAttempt
    """Drive an attempt in a supervised task of its own (returns at once)."""
    held_back: int = 0
    """Launches held back by the gate so far (each a nak)."""


async def on_launch_task(command: LaunchTask, deps: Deps, delivery: Delivery) -> None:
    name = command.container_name
    settings = deps.settings
    record = deps.attempts.get(name)
    if record is not None:  # already driving it (a redelivery)
        _keep_until_recorded(record, deps, delivery)
        return
    state = await deps.recorder.state(command.submission_id, command.task_id)
    if not domain.attempt_live(state, command.attempt):
        log.info("not launching %s: the attempt is not live on RunPod", name)
        return
    assert state is not None
    if delivery.num_delivered > 1 and deps.peers.drives(name, time.monotonic()):
        # a nak'ed launch comes back to any replica: the one that started it names it in its
        # live reports; only when it has been silent for ``peer_silence_s`` (dead) is it ours
        raise NotYet(f"{name}: a peer replica drives it", retry_after=settings.launch_retry_s)
    assigned_at = state.phase_since if state.status is TaskStatus.ASSIGNED else None
    left = domain.hold_left(assigned_at, datetime.now(UTC), settings.launch_hold_s)
    decision = domain.decide_launch(name, await deps.launch_gate())
    if not decision.go:
        if left <= 0 or delivery.num_delivered >= settings.command_max_deliver:
            await _defer(command, f"RunPod launch held back: {decision.reason}", assigned_at, deps)
            return
        deps.held_back += 1
        raise RetryableError(f"launch of {name} held back: {decision.reason}",
                             retry_after=min(settings.launch_retry_s, left))
    # a create that finds no stock is retried until the same hold ends (``launch_by``)
    record = deps.start_attempt(command, launch_by=time.monotonic() + left)
    record.assigned_at = record.assigned_at or assigned_at
    _keep_until_recorded(record, deps, delivery)


def _keep_until_recorded(record: AttemptRecord, deps: Deps, delivery: Delivery) -> None:
    """Nak the launch (to see it again in ``launch_retry_s``) while its pod is not recorded,
    so that it outlives a crash of this provider; ack once recorded or once the attempt ended.
    At the last delivery it is acked anyway: the attempt goes on, only the crash cover ends."""
    if record.launch_recorded or record.ending:
        return
    if delivery.num_delivered >= deps.settings.command_max_deliver:
        return
    raise NotYet(f"{record.name}: pod not recorded yet; the launch stays pending",
                 retry_after=deps.settings.launch_retry_s)


async def _defer(command: LaunchTask, reason: str, assigned_at: datetime | None, deps: Deps) -> None:
    """Hand an assigned task back to the queue: same attempt, placed again after
    ``launch_retry_s``; nothing when the task moved on meanwhile."""
    event = domain.launch_deferred(command, reason, datetime.now(UTC), deps.settings.launch_retry_s, assigned_at)
    if await deps.recorder.record(event):
        log.info("%s: launch handed back to the queue: %s", command.container_name, reason)


async def on_terminate_task(command: TerminateTask, deps: Deps, delivery: Delivery) -> None:
    name = container_name(command.submission_id, command.task_id, command.attempt)
    record = deps.attempts.get(name)
    if record is not None and record.task is not None:
        record.stop(command.reason or "terminate requested")
        await asyncio.wait({record.task}, timeout=deps.settings.terminate_timeout_s + 30)
        return
    # not driven here: terminate every pod with this name (silent when there is none)
    for pod in await deps.pods.find(name):
        if await deps.pods.terminate(pod.id):
            await deps.recorder.container_terminated(command.submission_id, command.task_id, command.attempt, name)


REACTIONS = Reactions[Deps]({
    LaunchTask: on_launch_task,
    TerminateTask: on_terminate_task,
})
