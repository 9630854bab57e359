"""The provider's edges besides the RunPod API (``api/``) and SSH (``ssh.py``): the task's
events, console lines, alarms, the SSH key on disk, the GPU catalog in the system bucket.
"""

from __future__ import annotations

import json
import logging
import os
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import asyncssh
from nats.aio.client import Client as NATS
from nats.js.kv import KeyValue
from touchstone.shared import console
from touchstone.shared import events as ev
from touchstone.shared.aggregate import change
from touchstone.shared.lifecycle import TaskState
from touchstone.shared.metrics import counter, gauge
from touchstone.shared.publisher import EventPublisher, Recorded, task_events
from touchstone.shared.subjects import Subjects, task_aggregate_id
from touchstone.shared.system import GPU_TYPES_KEY

from . import domain
from .api import GpuType

log = logging.getLogger(__name__)

CONFLICT_TRIES = 8
LINES_PER_MESSAGE = 200

ALARMS = counter("runpod_alarms_total", "RunPod provider alarms raised", ("kind",))
ALARM_ACTIVE = gauge("runpod_alarm_active", "1 while an alarm of this kind stands (raised, not cleared)", ("kind",))
PODS_REAPED = counter("runpod_rogue_pods_reaped_total", "Rogue touchstone- pods terminated by the reaper")
BALANCE = gauge("runpod_balance_usd", "RunPod account balance")
PODS_LIVE = gauge("runpod_live_attempts", "Attempts the RunPod provider drives now")
PODS_RUNNING = gauge("runpod_pods_running", "Our touchstone- pods RunPod lists as billed (pending, starting, running)")
SPEND = gauge("runpod_spend_usd_per_hour", "What our running pods cost per hour together")
KEY_REJECTED = gauge("runpod_api_key_rejected", "1 while RunPod rejects the API key (launches stopped)")
LAUNCHES_STOPPED = gauge("runpod_launches_stopped", "1 while the provider starts no new pods (balance or key)")
BALANCE_LOW = gauge("runpod_balance_low_threshold_usd", "The balance below which the low-balance alarm stands")
SPEND_LIMIT = gauge("runpod_spend_alarm_threshold_usd_per_hour",
                    "The spend per hour above which the high-spend alarm stands (0: off)")


def _now() -> datetime:
    return datetime.now(UTC)


# --- the SSH key --------------------------------------------------------------------------


def load_or_create_key(path: Path) -> asyncssh.SSHKey:
    """The provider's ed25519 key, created (mode 0600) on first use."""
    if path.exists():
        return asyncssh.read_private_key(str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    key = asyncssh.generate_private_key("ssh-ed25519", comment="touchstone-runpod-provider")
    partial = path.with_suffix(".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.export_private_key())
    os.replace(partial, path)
    return key


# --- task events --------------------------------------------------------------------------


class TaskRecorder:
    """Appends an attempt's events: load the task, check the lifecycle takes the event, append
    with the task's expected last sequence; a conflict reloads and decides again."""

    def __init__(self, publisher: EventPublisher) -> None:
        self.publisher = publisher

    async def state(self, submission_id: str, task_id: str) -> TaskState | None:
        recorded = await self.publisher.load_task(submission_id, task_id)
        return domain.fold_lenient(task_events(recorded), _now())

    async def aggregate_state(self, aggregate_id: str) -> TaskState | None:
        recorded = await self.publisher.load("task", aggregate_id)
        return domain.fold_lenient(task_events(recorded), _now())

    async def record(self, event: ev.TaskEvent) -> bool:
        """True when ``event`` is stored (now or before); False when the task no longer takes it."""
        taken: list[bool] = []

        def decide(recorded: list[Recorded]) -> list[ev.Event]:
            if any(r.event.event_id == event.event_id for r in recorded):
                taken.append(True)
                return []
            state = domain.fold_lenient(task_events(recorded), _now())
            taken.append(domain.accepts(state, event, _now()))
            if not taken[-1]:
                log.info("task %s does not take %s now", event.aggregate_id, event.event_type)
            return [event] if taken[-1] else []

        await change(self.publisher, "task", event.aggregate_id, decide, tries=CONFLICT_TRIES)
        return taken[-1]

    async def container_terminated(self, submission_id: str, task_id: str, attempt: int, name: str) -> bool:
        """Record that the attempt's pod is gone (terminated on request, or reaped)."""
        return await self.record(ev.ContainerTerminated(
            event_id=ev.derived_id(name, "ContainerTerminated"),
            aggregate_id=task_aggregate_id(submission_id, task_id),
            correlation_id=submission_id,
            submission_id=submission_id,
            task_id=task_id,
            attempt=attempt,
            container_name=name,
        ))


# --- console lines ------------------------------------------------------------------------


class ConsoleLog:
    """An attempt's console: each line goes to ``{ns}.logs.{task}``, to the log file in the
    artifact store, and to a tail kept for ``TaskFailed.log_snippet``."""

    def __init__(self, nc: NATS, subject: str, path: Path) -> None:
        self.nc = nc
        self.subject = subject
        self.path = path
        self.tail: deque[str] = deque(maxlen=domain.LOG_TAIL_LINES)
        self._file: IO[str] | None = None

    def __enter__(self) -> ConsoleLog:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    async def write(self, lines: Sequence[str]) -> None:
        if not lines:
            return
        self.tail.extend(lines)
        if self._file is not None:
            self._file.write("".join(f"{line}\n" for line in lines))
            self._file.flush()
        for i in range(0, len(lines), LINES_PER_MESSAGE):
            try:
                for body in console.messages(lines[i : i + LINES_PER_MESSAGE]):
                    await self.nc.publish(self.subject, body)
            except Exception as e:  # the file keeps every line; live streaming is best effort
                log.warning("could not publish console lines to %s: %r", self.subject, e)

    @property
    def uri(self) -> str:
        return self.path.resolve().as_uri()

    def snippet(self) -> str | None:
        return "\n".join(self.tail) or None


# --- alarms -------------------------------------------------------------------------------


PLATFORM = "runpod"
"""The aggregate (and correlation) id of this provider's platform events."""


async def record_platform_event(publisher: EventPublisher | None, event: ev.PlatformEvent) -> None:
    """Append a platform event; a failure is logged, never raised (the reaper and the alarms
    carry on, and their metrics and log lines still tell)."""
    if publisher is None:
        return
    try:
        await publisher.append(event)
    except Exception as e:
        log.warning("could not record %s: %r", event.event_type, e)


class Alarms:
    """Conditions ops must act on (low balance, a rejected key): an ERROR log line, a metric,
    an ``AlarmRaised`` event, and a message on ``{ns}.alarm.runpod-provider.{kind}`` for
    whoever listens. Raised once per episode: ``raise_`` again only after ``clear``."""

    def __init__(self, nc: NATS | None, subjects: Subjects, on_raise: Callable[[str, str], None] | None = None,
                 publisher: EventPublisher | None = None) -> None:
        self.nc = nc
        self.subjects = subjects
        self.publisher = publisher
        self.active: dict[str, str] = {}
        self.raised: list[tuple[str, str]] = []
        self._on_raise = on_raise

    async def raise_(self, kind: str, message: str) -> None:
        if kind in self.active:
            return
        self.active[kind] = message
        self.raised.append((kind, message))
        ALARMS.labels(kind).inc()
        ALARM_ACTIVE.labels(kind).set(1)
        log.error("ALARM %s: %s", kind, message, extra={"alarm": kind})
        if self._on_raise is not None:
            self._on_raise(kind, message)
        await record_platform_event(self.publisher, ev.AlarmRaised(
            aggregate_id=PLATFORM, correlation_id=PLATFORM, kind=kind, message=message, service="runpod-provider"))
        if self.nc is not None:
            body = json.dumps({"kind": kind, "message": message, "service": "runpod-provider",
                               "at": _now().isoformat()}).encode()
            try:
                await self.nc.publish(self.subjects.alarm("runpod-provider", kind), body)
            except Exception as e:
                log.warning("could not publish alarm %s: %r", kind, e)

    def clear(self, kind: str) -> None:
        if self.active.pop(kind, None) is not None:
            ALARM_ACTIVE.labels(kind).set(0)
            log.info("alarm %s cleared", kind)


# --- the GPU catalog ----------------------------------------------------------------------


async def publish_catalog(kv: KeyValue, gpu_types: Sequence[GpuType]) -> None:
    """The catalog as a JSON list under ``gpu_types`` in the system bucket (the API serves it)."""
    body = json.dumps([g.model_dump(mode="json") for g in gpu_types]).encode()
    await kv.put(GPU_TYPES_KEY, body)
