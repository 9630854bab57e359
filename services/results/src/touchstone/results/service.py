"""Bootstrap: build the adapters the settings ask for, bind the reactions, run the consumers
(the results consumer, and the alarm consumers when a webhook or email is configured)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from nats.js import JetStreamContext
from touchstone.results import alarms
from touchstone.results.adapters import ArtifactStore, EventHistory, KvLedger
from touchstone.results.config import ResultsSettings
from touchstone.results.handlers import REACTIONS, Deps, EvaluationTable, consumer_spec
from touchstone.results.mail import SmtpMailer
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


def alarm_channels(settings: ResultsSettings) -> tuple[alarms.Channel, ...]:
    """One channel per alarm webhook (named by position: URLs are secrets) and one for email."""
    channels = [
        alarms.Channel(f"webhook-{i + 1}", WebhookNotifier(url, settings.resolved_webhook_kind(url),
                                                           timeout_s=settings.webhook_timeout_s))
        for i, url in enumerate(settings.alarm_webhook_urls)
    ]
    if settings.smtp_host and settings.alarm_email_to:
        channels.append(alarms.Channel("email", SmtpMailer(
            settings.smtp_host, settings.smtp_port, sender=settings.alarm_email_from,
            recipients=settings.alarm_email_to, security=settings.smtp_security, user=settings.smtp_user,
            password_file=settings.smtp_password_file, timeout_s=settings.smtp_timeout_s,
            subject_prefix="[Touchstone]",
        )))
    return tuple(channels)


async def alarm_deps(settings: ResultsSettings, js: JetStreamContext, subjects: Subjects) -> alarms.AlarmDeps:
    return alarms.AlarmDeps(
        ledger=await alarms.AlarmLedger.open(js, subjects), channels=alarm_channels(settings),
        namespace=subjects.ns, dead_letter_stream=subjects.dead_letter_stream,
        repeat=timedelta(seconds=settings.alarm_repeat_interval_s),
        max_age=timedelta(seconds=settings.alarm_max_age_s), ignore_consumers=alarms.ignored_consumers(subjects),
    )


def consumer(
    settings: ResultsSettings, js: JetStreamContext, subjects: Subjects, deps: Deps
) -> ConsumerLoop[Event]:
    spec = consumer_spec(subjects, ack_wait_s=settings.ack_wait_s, max_deliver=settings.max_deliver)
    return ConsumerLoop(js, subjects, spec, REACTIONS.bind(deps), decode_event)


async def run(
    settings: ResultsSettings,
    js: JetStreamContext,
    subjects: Subjects,
    stop: asyncio.Event,
    evaluations: EvaluationTable | None = None,
) -> None:
    deps = await bootstrap(settings, js, subjects, evaluations=evaluations)
    loops = [consumer(settings, js, subjects, deps)]
    if settings.alarms_enabled:
        loops += alarms.consumers(js, subjects, await alarm_deps(settings, js, subjects),
                                  ack_wait_s=settings.ack_wait_s, max_deliver=settings.max_deliver)
    await asyncio.gather(*(loop.run(stop) for loop in loops))
