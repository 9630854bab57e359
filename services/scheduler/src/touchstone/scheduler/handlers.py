"""The scheduler's reactions to events, in one table.

Reactions are level-triggered: each one asks the scheduler to bring an aggregate in line with
what the view now says it needs (``reconcile_*``) or to run placement. A redelivered event
therefore finds nothing left to do, and the sweep can call the same reconcilers to repair
anything a crash interrupted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from touchstone.shared import events as ev


class Reactor(Protocol):
    async def reconcile_submission(self, submission_id: str) -> None: ...

    async def reconcile_task(self, key: str) -> None: ...

    def request_placement(self) -> None: ...


Reaction = Callable[[Reactor, Any], Awaitable[None]]


async def on_submission_event(ctx: Reactor, event: ev.SubmissionEvent) -> None:
    """Created: queue validation. Scheduled: queue training. Cancel requested: cancel."""
    await ctx.reconcile_submission(event.aggregate_id)


async def on_task_queued(ctx: Reactor, event: ev.TaskQueued | ev.TaskRetried | ev.LaunchDeferred) -> None:
    """Queued, retried, or handed back by a provider that could not launch it yet: place."""
    ctx.request_placement()


async def on_task_progress(ctx: Reactor, event: ev.TaskEvent) -> None:
    """Assigned or a container phase: roll the submission up to RUNNING; stop strays."""
    await ctx.reconcile_task(event.aggregate_id)
    await ctx.reconcile_submission(event.submission_id)


async def on_task_ended(ctx: Reactor, event: ev.TaskEvent) -> None:
    """Failed: append the retry (with back-off) or the error. Finished, errored or cancelled:
    validation verdict or roll-up. Either way the slot is free again."""
    await ctx.reconcile_task(event.aggregate_id)
    await ctx.reconcile_submission(event.submission_id)
    ctx.request_placement()


async def on_container_terminated(ctx: Reactor, event: ev.ContainerTerminated) -> None:
    ctx.request_placement()


HANDLERS: dict[str, Reaction] = {
    "SubmissionCreated": on_submission_event,
    "SubmissionValidated": on_submission_event,
    "SubmissionScheduled": on_submission_event,
    "SubmissionCancelRequested": on_submission_event,
    "TaskQueued": on_task_queued,
    "TaskRetried": on_task_queued,
    "LaunchDeferred": on_task_queued,
    "TaskAssigned": on_task_progress,
    "ContainerLaunched": on_task_progress,
    "ContainerReady": on_task_progress,
    "TrainingStarted": on_task_progress,
    "TaskFailed": on_task_ended,
    "TrainingFinished": on_task_ended,
    "TaskErrored": on_task_ended,
    "TaskCancelled": on_task_ended,
    "ContainerTerminated": on_container_terminated,
}
