"""Bootstrap: build the adapters the settings ask for, bind the reactions, run the consumer."""

from __future__ import annotations

import asyncio

from nats.js import JetStreamContext
from touchstone.results.adapters import ArtifactStore, EventHistory, KvLedger
from touchstone.results.config import ResultsSettings
from touchstone.results.handlers import Deps, EvaluationTable, consumer_spec, handlers
from touchstone.results.notify import NullNotifier, WebhookNotifier
from touchstone.results.tracking import MlflowTracker, NullTracker
from touchstone.shared.consumer import ConsumerLoop
from touchstone.shared.events import Event, decode_event
from touchstone.shared.publisher import EventPublisher
from touchstone.shared.subjects import Subjects


def artifact_store(settings: ResultsSettings) -> ArtifactStore:
    return settings.object_store()


async def bootstrap(
    settings: ResultsSettings,
    js: JetStreamContext,
    subjects: Subjects,
    *,
    store: ArtifactStore | None = None,
    evaluations: EvaluationTable | None = None,
) -> Deps:
    tracker = (
        MlflowTracker(settings.mlflow_tracking_uri, settings.mlflow_experiment,
                      timeout_s=settings.mlflow_timeout_s, max_retries=settings.mlflow_max_retries)
        if settings.mlflow_tracking_uri else NullTracker()
    )
    notifier = (
        WebhookNotifier(settings.webhook_url, settings.resolved_webhook_kind(), timeout_s=settings.webhook_timeout_s)
        if settings.webhook_url else NullNotifier()
    )
    publisher = EventPublisher(js, subjects)
    return Deps(
        store=store or artifact_store(settings),
        tracker=tracker,
        notifier=notifier,
        ledger=await KvLedger.open(js, subjects),
        history=EventHistory(publisher),
        publisher=publisher,
        submission_url_template=settings.submission_url_template,
        evaluations=evaluations,
    )


def consumer(
    settings: ResultsSettings, js: JetStreamContext, subjects: Subjects, deps: Deps
) -> ConsumerLoop[Event]:
    spec = consumer_spec(subjects, ack_wait_s=settings.ack_wait_s, max_deliver=settings.max_deliver)
    return ConsumerLoop(js, subjects, spec, handlers(deps), decode_event)


async def run(
    settings: ResultsSettings,
    js: JetStreamContext,
    subjects: Subjects,
    stop: asyncio.Event,
    evaluations: EvaluationTable | None = None,
) -> None:
    deps = await bootstrap(settings, js, subjects, evaluations=evaluations)
    await consumer(settings, js, subjects, deps).run(stop)
