"""NATS subject and resource names, all under one namespace ``{ns}``.

Two instances (prod and dev) can share a NATS cluster: every subject starts with the namespace
and every stream, consumer and bucket name carries it, so neither sees the other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def check_token(value: str, what: str = "id") -> str:
    """Return ``value`` when it is one safe subject token (no dots, wildcards or spaces)."""
    if not _TOKEN.match(value):
        raise ValueError(f"{what} {value!r} must be 1-128 characters of letters, digits, '-' or '_'")
    return value


def task_aggregate_id(submission_id: str, task_id: str) -> str:
    """The aggregate id of one task: ``{submission_id}-{task_id}`` (for example ``s-7f3a-pi-60``)."""
    return f"{check_token(submission_id)}-{check_token(task_id)}"


def reporting_host(subject: str) -> str:
    """The host whose report subject (``Subjects.agent_reports``) ``subject`` is: an agent may
    only publish on its own subjects, so the subject, not the body, says who sent a report."""
    return subject.split(".")[-2]


class Bucket(StrEnum):
    """The key-value buckets there are, by purpose (the last part of their names)."""

    SYSTEM = "system"  # run-time settings and the instance's kind
    TOKENS = "tokens"  # API tokens (submission)
    QUOTAS = "quotas"  # per-user recent submissions (submission)
    IDEMPOTENCY = "idempotency"  # answers to POSTs by Idempotency-Key (submission)
    UI = "ui"  # the UI's shared secrets (submission)
    LEASE = "scheduler"  # the scheduler leader's lease
    RESULTS = "results"  # what the results service published
    ALARMS = "alarms"  # what was sent when, per alarm fingerprint (results)


@dataclass(frozen=True)
class Subjects:
    """Builds every subject and resource name of one Touchstone instance."""

    ns: str = "touchstone"

    def __post_init__(self) -> None:
        check_token(self.ns, "namespace")

    def _stream(self, kind: str) -> str:
        """Stream names allow no dots; the namespace goes in upper case (``TOUCHSTONE_EVENTS``)."""
        return f"{self.ns.upper().replace('-', '_')}_{kind}"

    # events: the system of record
    @property
    def events_stream(self) -> str:
        return self._stream("EVENTS")

    @property
    def all_events(self) -> str:
        return f"{self.ns}.evt.>"

    def event(self, aggregate: str, aggregate_id: str, event_type: str) -> str:
        return f"{self.ns}.evt.{aggregate}.{check_token(aggregate_id)}.{event_type}"

    def aggregate_events(self, aggregate: str, aggregate_id: str) -> str:
        """The filter for every event of one aggregate (used for expected-sequence checks)."""
        return f"{self.ns}.evt.{aggregate}.{check_token(aggregate_id)}.*"

    def events_of_type(self, aggregate: str, event_type: str) -> str:
        """The filter for one event type of every aggregate of a kind (``aggregate`` ``*``: of
        every kind), for consumers that react to a few types only."""
        return f"{self.ns}.evt.{aggregate}.*.{event_type}"

    # commands: one work queue per service
    @property
    def commands_stream(self) -> str:
        return self._stream("COMMANDS")

    @property
    def all_commands(self) -> str:
        return f"{self.ns}.cmd.>"

    def command(self, service: str, command: str) -> str:
        return f"{self.ns}.cmd.{check_token(service, 'service')}.{command}"

    def service_commands(self, service: str) -> str:
        return f"{self.ns}.cmd.{check_token(service, 'service')}.>"

    # dead letters
    @property
    def dead_letter_stream(self) -> str:
        return self._stream("DEADLETTER")

    @property
    def all_dead_letters(self) -> str:
        return f"{self.ns}.dlq.>"

    def dead_letter(self, consumer: str) -> str:
        return f"{self.ns}.dlq.{check_token(consumer, 'consumer')}"

    # agents and logs
    def agent_commands(self, host: str) -> str:
        return f"{self.ns}.agent.{check_token(host, 'host')}.cmd"

    def agent_reports(self, host: str) -> str:
        return f"{self.ns}.agent.{check_token(host, 'host')}.evt"

    @property
    def all_agent_reports(self) -> str:
        return f"{self.ns}.agent.*.evt"

    # compute providers
    def provider_live(self, platform: str) -> str:
        """Where a provider's replicas say which attempts each drives (``LiveAttempts``)."""
        return f"{self.ns}.provider.{check_token(platform, 'platform')}.live"

    @property
    def all_provider_live(self) -> str:
        return f"{self.ns}.provider.*.live"

    def logs(self, task_aggregate: str) -> str:
        return f"{self.ns}.logs.{check_token(task_aggregate)}"

    @property
    def logs_stream(self) -> str:
        return self._stream("LOGS")

    @property
    def all_logs(self) -> str:
        return f"{self.ns}.logs.>"

    def alarm(self, service: str, kind: str) -> str:
        """Where a service announces an alarm to whoever listens (besides its ``AlarmRaised`` event)."""
        return f"{self.ns}.alarm.{check_token(service, 'service')}.{check_token(kind, 'alarm')}"

    @property
    def status_ping(self) -> str:
        """Every process answers here with its health (``touchstone status``)."""
        return f"{self.ns}.status.ping"

    # key-value buckets, each opened (created when missing) through ``jetstream.open_bucket``
    @property
    def system_bucket(self) -> str:
        return self.bucket(Bucket.SYSTEM)

    def bucket(self, purpose: Bucket) -> str:
        """The name of one key-value bucket of this namespace."""
        return f"{self.ns.replace('-', '_')}_{Bucket(purpose).value}"  # Bucket(): refuses any other

    def durable(self, name: str) -> str:
        """A durable consumer name that is unique to this namespace."""
        return f"{self.ns}_{check_token(name, 'consumer')}"
