"""Reactions to the provider's commands, one table; dependencies are bound at bootstrap.

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
heartbeats and leaves it alone). If the provider dies between assignment and record, the launch
is redelivered to the next provider within ``launch_retry_s`` (``ack_wait_s`` at worst), which
starts the attempt again once the dead one has been silent for ``peer_silence_s``; its pod, if
the create went through, is found by name and adopted, never duplicated. So that crash costs
seconds, not the scheduler's launch timeout. A provider that stops or dies after the record
leaves the pod and its detached trainer running; the next provider adopts the attempt from the
events at its first reconcile (``resume.py``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from touchstone.shared.commands import LaunchTask, TerminateTask, container_name
from touchstone.shared.consumer import Delivery, Handler
from touchstone.shared.errors import NotYet, RetryableError
from touchstone.shared.lifecycle import TaskStatus

from . import domain

if TYPE_CHECKING:
    from .attempt import AttemptRecord
    from .service import RunpodProvider

log = logging.getLogger(__name__)


async def on_launch_task(provider: RunpodProvider, command: LaunchTask, delivery: Delivery) -> None:
    name = command.container_name
    record = provider.attempts.get(name)
    if record is not None:  # already driving it (a redelivery)
        _keep_until_recorded(provider, record, delivery)
        return
    state = await provider.recorder.state(command.submission_id, command.task_id)
    if not domain.attempt_live(state, command.attempt):
        log.info("not launching %s: the attempt is not live on RunPod", name)
        return
    assert state is not None
    if delivery.num_delivered > 1 and provider.peer_drives(name, time.monotonic()):
        # a nak'ed launch comes back to any replica: the one that started it names it in its
        # heartbeats; only when it has been silent for ``peer_silence_s`` (dead) is it ours
        raise NotYet(f"{name}: a peer replica drives it", retry_after=provider.settings.launch_retry_s)
    assigned_at = state.phase_since if state.status is TaskStatus.ASSIGNED else None
    left = domain.hold_left(assigned_at, datetime.now(UTC), provider.settings.launch_hold_s)
    decision = domain.decide_launch(name, await provider.launch_gate())
    if not decision.go:
        if left <= 0 or delivery.num_delivered >= provider.settings.command_max_deliver:
            await provider.defer_launch(command, f"RunPod launch held back: {decision.reason}", assigned_at)
            return
        provider.held_back += 1
        raise RetryableError(f"launch of {name} held back: {decision.reason}",
                             retry_after=min(provider.settings.launch_retry_s, left))
    # a create that finds no stock is retried until the same hold ends (``launch_by``)
    record = provider.start_attempt(command, launch_by=time.monotonic() + left)
    record.assigned_at = record.assigned_at or assigned_at
    _keep_until_recorded(provider, record, delivery)


def _keep_until_recorded(provider: RunpodProvider, record: AttemptRecord, delivery: Delivery) -> None:
    """Nak the launch (to see it again in ``launch_retry_s``) while its pod is not recorded,
    so that it outlives a crash of this provider; ack once recorded or once the attempt ended.
    At the last delivery it is acked anyway: the attempt goes on, only the crash cover ends."""
    if record.launch_recorded or record.ending:
        return
    if delivery.num_delivered >= provider.settings.command_max_deliver:
        return
    raise NotYet(f"{record.name}: pod not recorded yet; the launch stays pending",
                         retry_after=provider.settings.launch_retry_s)


async def on_terminate_task(provider: RunpodProvider, command: TerminateTask, delivery: Delivery) -> None:
    name = container_name(command.submission_id, command.task_id, command.attempt)
    reason = command.reason or "terminate requested"
    record = provider.attempts.get(name)
    if record is not None and record.task is not None:
        record.stop(reason)
        await asyncio.wait({record.task}, timeout=provider.settings.terminate_timeout_s + 30)
        return
    await provider.terminate_by_name(name, command)


def handlers(provider: RunpodProvider) -> Mapping[str, Handler]:
    """The command table, bound to one provider."""
    return {
        "LaunchTask": functools.partial(on_launch_task, provider),
        "TerminateTask": functools.partial(on_terminate_task, provider),
    }
