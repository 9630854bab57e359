"""The scheduler's reactions to events, in one table.

Reactions are level-triggered: each one asks the scheduler to bring an aggregate in line with
what the view now says it needs (``reconcile_*``) or to run placement. A redelivered event
therefore finds nothing left to do, and the sweep can call the same reconcilers to repair
anything a crash interrupted.

The scheduler follows the whole events stream (its view folds every event), so the table
drives dispatch only (``REACTIONS.get``); it derives no consumer filter.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from touchstone.shared import events as ev
from touchstone.shared.consumer import Delivery
from touchstone.shared.reactions import Reactions


@dataclass(frozen=True)
class Deps:
    """What the reactions use of the scheduler: its reconcilers and the placement trigger."""

    reconcile_submission: Callable[[str], Awaitable[None]]
    reconcile_task: Callable[[str], Awaitable[None]]
    request_placement: Callable[[], None]


async def on_submission_event(event: ev.SubmissionEvent, deps: Deps, delivery: Delivery) -> None:
    """Created: queue validation. Scheduled: queue training. Cancel requested: cancel."""
    await deps.reconcile_submission(event.aggregate_id)


async def on_task_queued(event: ev.TaskQueued | ev.TaskRetried | ev.LaunchDeferred, deps: Deps,
                         delivery: Delivery) -> None:
    """Queued, retried, or handed back by a provider that could not launch it yet: place."""
    deps.request_placement()


async def on_task_progress(event: ev.TaskEvent, deps: Deps, delivery: Delivery) -> None:
    """Assigned or a container phase: roll the submission up to RUNNING; stop strays."""
    await deps.reconcile_task(event.aggregate_id)
    await deps.reconcile_submission(event.submission_id)


async def on_task_ended(event: ev.TaskEvent, deps: Deps, delivery: Delivery) -> None:
    """Failed: append the retry (with back-off) or the error. Finished, errored or cancelled:
    validation verdict or roll-up. Either way the slot is free again."""
    await deps.reconcile_task(event.aggregate_id)
    await deps.reconcile_submission(event.submission_id)
    deps.request_placement()


async def on_container_terminated(event: ev.ContainerTerminated, deps: Deps, delivery: Delivery) -> None:
    """A container is gone: its slot may be free for the next task."""
    deps.request_placement()


REACTIONS = Reactions[Deps]({
    ev.SubmissionCreated: on_submission_event,
    ev.SubmissionValidated: on_submission_event,
    ev.SubmissionScheduled: on_submission_event,
    ev.SubmissionCancelRequested: on_submission_event,
    ev.TaskQueued: on_task_queued,
    ev.TaskRetried: on_task_queued,
    ev.LaunchDeferred: on_task_queued,
    ev.TaskAssigned: on_task_progress,
    ev.ContainerLaunched: on_task_progress,
    ev.ContainerReady: on_task_progress,
    ev.TrainingStarted: on_task_progress,
    ev.TaskFailed: on_task_ended,
    ev.TrainingFinished: on_task_ended,
    ev.TaskErrored: on_task_ended,
    ev.TaskCancelled: on_task_ended,
    ev.ContainerTerminated: on_container_terminated,
})
