"""The results service's reactions to events: one table (``REACTIONS``, which also gives the
consumer's filter subjects), bound to ``Deps`` at bootstrap.

Every reaction is idempotent. A finished or failed attempt is first looked up in the ledger
(done before: nothing to do); otherwise its object keys are checked (an event that names a
host path or URL, or a key outside its attempt, is refused: dead-lettered, nothing read),
the store is asked which objects it holds, and the MLflow run is looked up by the event's id
before one is made. A notification is sent once
per submission and status: the ledger says whether it went out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from touchstone.results import domain
from touchstone.results.domain import AttemptRecord, Outputs
from touchstone.results.notify import Notifier
from touchstone.results.tracking import Tracker
from touchstone.shared import events as ev
from touchstone.shared.consumer import ConsumerSpec, Delivery
from touchstone.shared.evaluations import Evaluation, rows_from_metrics
from touchstone.shared.objects.stores import ObjectStore
from touchstone.shared.publisher import EventPublisher
from touchstone.shared.reactions import Reactions
from touchstone.shared.subjects import Subjects

log = logging.getLogger(__name__)


class Ledger(Protocol):
    async def get(self, key: str) -> dict[str, Any] | None: ...

    async def put(self, key: str, record: dict[str, Any]) -> None: ...


class History(Protocol):
    async def task_queued(self, submission_id: str, task_id: str) -> ev.TaskQueued | None: ...

    async def submission_created(self, submission_id: str) -> ev.SubmissionCreated | None: ...


class EvaluationTable(Protocol):
    async def put_evaluations(self, rows: list[Evaluation]) -> None: ...


@dataclass
class Deps:
    """What the reactions need, built once in ``service.bootstrap`` (tests build their own)."""

    store: ObjectStore
    tracker: Tracker
    notifier: Notifier
    ledger: Ledger
    history: History
    submission_url_template: str = ""
    publisher: EventPublisher | None = None
    """Where ``ResultsPublished`` is appended (None: record only, for tests of one part)."""
    evaluations: EvaluationTable | None = None
    """Where each training attempt's evaluation rows go (the projection store; None: nowhere)."""


@dataclass(frozen=True)
class Published:
    artifacts: dict[str, str]
    log_key: str | None
    missing: tuple[str, ...]


async def published(deps: Deps, outputs: Outputs) -> Published:
    """Which of the named objects the store holds (asked of the store, by key; nothing is
    read from the producer's host, which shares no filesystem with this service)."""
    artifacts: dict[str, str] = {}
    missing: list[str] = []
    for name, key in outputs.artifacts.items():
        if await deps.store.size(key) is None:
            log.warning("artifact %s of %s is not in the store", name, key)
            missing.append(name)
        else:
            artifacts[name] = key
    log_key = outputs.log_key
    if log_key is not None and await deps.store.size(log_key) is None:
        missing.append(domain.LOG_ARTIFACT)
        log_key = None
    return Published(artifacts, log_key, tuple(missing))


async def _already_recorded(deps: Deps, key: str, event: ev.TaskEvent) -> bool:
    done = await deps.ledger.get(key)
    if done is None:
        return False
    if done.get("event_id") != event.event_id:
        log.warning("%s was recorded for event %s; now %s arrives", key, done.get("event_id"), event.event_id)
        return False
    return True


async def on_training_finished(event: ev.TrainingFinished, deps: Deps, delivery: Delivery) -> None:
    """Models, metrics, report and log to the store; an MLflow run (training tasks only)."""
    key = domain.attempt_record_key(event.submission_id, event.task_id, event.attempt)
    if await _already_recorded(deps, key, event):
        return
    outputs = domain.checked_outputs(event.submission_id, event.task_id, event.attempt, event.artifacts,
                                     event.log_key, event.log_uri)
    found = await published(deps, outputs)
    record = AttemptRecord(
        event_id=event.event_id, submission_id=event.submission_id, task_id=event.task_id,
        attempt=event.attempt, artifacts=found.artifacts, log_key=found.log_key, missing=found.missing,
    )
    if event.task_id != ev.VALIDATION_TASK_ID:
        queued = await deps.history.task_queued(event.submission_id, event.task_id)
        await record_evaluations(deps, event, queued)
        run = await deps.tracker.record(domain.run_spec(event, queued, record, deps.store.uri))
        if run is not None:
            record = record.model_copy(update={"mlflow_run_id": run.run_id, "mlflow_run_url": run.url})
    await deps.ledger.put(key, record.model_dump(mode="json"))
    await announce(deps, event, record)
    log.info("published %s: %d artifacts, log %s", key, len(record.artifacts), record.log_key or "none")


async def record_evaluations(deps: Deps, event: ev.TrainingFinished, queued: ev.TaskQueued | None) -> None:
    """One row per side into the evaluations table (replaced by key, so a redelivery is harmless)."""
    if deps.evaluations is None or not event.metrics:
        return
    created = await deps.history.submission_created(event.submission_id)
    rows = rows_from_metrics(
        event.metrics, submission_id=event.submission_id, task_id=event.task_id, attempt=event.attempt,
        finished_at=event.occurred_at, event_id=event.event_id,
        owner=created.owner if created else "", feature_set=created.name if created else "",
        trainer_ref=queued.spec.trainer_ref if queued else "",
        config_file=queued.spec.config_file if queued else "",
        prediction_interval=queued.prediction_interval if queued else None,
    )
    await deps.evaluations.put_evaluations(rows)


async def on_task_failed(event: ev.TaskFailed, deps: Deps, delivery: Delivery) -> None:
    """A failed attempt's full log, checked to be in the store (the task keeps its snippet)."""
    if not event.log_key and not event.log_uri:
        return
    key = domain.attempt_record_key(event.submission_id, event.task_id, event.attempt)
    if await deps.ledger.get(key) is not None:  # this failure, or the attempt's finish, is done
        return
    outputs = domain.checked_outputs(event.submission_id, event.task_id, event.attempt, {}, event.log_key,
                                     event.log_uri)
    found = await published(deps, outputs)
    record = AttemptRecord(
        event_id=event.event_id, submission_id=event.submission_id, task_id=event.task_id,
        attempt=event.attempt, outcome="failed", log_key=found.log_key, missing=found.missing,
    )
    await deps.ledger.put(key, record.model_dump(mode="json"))
    await announce(deps, event, record)


async def announce(deps: Deps, cause: ev.TaskEvent, record: AttemptRecord) -> None:
    """Record where the attempt's outputs are now. The id derives from the cause, so a
    redelivered cause appends nothing new."""
    if deps.publisher is None:
        return
    await deps.publisher.append(ev.ResultsPublished(
        event_id=ev.derived_id(cause.event_id, "results-published"),
        aggregate_id=cause.aggregate_id, correlation_id=cause.correlation_id, causation_id=cause.event_id,
        submission_id=cause.submission_id, task_id=cause.task_id, attempt=record.attempt,
        outcome=record.outcome, artifacts=record.artifacts, log_key=record.log_key, missing=record.missing,
        mlflow_run_id=record.mlflow_run_id, mlflow_run_url=record.mlflow_run_url,
    ))


async def on_submission_settled(event: ev.SubmissionEvent, deps: Deps, delivery: Delivery) -> None:
    """COMPLETED, ERROR or REJECTED: one webhook message per submission and status."""
    if not deps.notifier.enabled or (isinstance(event, ev.SubmissionValidated) and event.passed):
        return
    created = await deps.history.submission_created(event.aggregate_id)
    notice = domain.notice_for(event, created, deps.submission_url_template)
    if notice is None:
        return
    key = domain.notice_record_key(notice.submission_id, notice.status)
    if await deps.ledger.get(key) is not None:
        return
    await deps.notifier.send(notice)
    await deps.ledger.put(key, {"event_id": event.event_id, "status": notice.status, "title": notice.title})


CONSUMER = "results"  # the durable's name: deployed consumers keep it

REACTIONS = Reactions[Deps]({
    ev.TrainingFinished: on_training_finished,
    ev.TaskFailed: on_task_failed,
    ev.SubmissionCompleted: on_submission_settled,
    ev.SubmissionFailed: on_submission_settled,
    ev.SubmissionValidated: on_submission_settled,
})


def consumer_spec(subjects: Subjects, *, ack_wait_s: float = 60.0, max_deliver: int = 8) -> ConsumerSpec:
    return REACTIONS.event_consumer(CONSUMER, subjects, ack_wait_s=ack_wait_s, max_deliver=max_deliver)
