"""Instances: a namespace with a kind (``prod`` or ``dev``), and the one pause switch.

``touchstone nats init --instance dev`` records the kind under the key ``instance`` of the
namespace's system bucket. A dev instance starts paused: the first time its kind is recorded
the system settings get ``scheduler_paused`` and a RunPod cap of 0, so a fresh dev instance
spends nothing until an operator resumes it. A prod instance starts running. Re-running init
never pauses or resumes again (the operator's later choice stands) and never changes a kind.

"Pause the lifecycle" is ``scheduler_paused``: placement stops (the scheduler), RunPod
launches stop (the provider hands a held launch back to the queue), retries wait in the queue
(a failed attempt is re-queued but not placed); the sweep keeps running, so stuck detection
fails attempts that stop reporting and the rogue-pod reaper keeps terminating pods nobody owns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from enum import StrEnum

from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict, Field
from touchstone.shared.system import SYSTEM_KEY, SystemSettings, read_model, read_system, write_system

log = logging.getLogger(__name__)

INSTANCE_KEY = "instance"


class InstanceKind(StrEnum):
    PROD = "prod"
    DEV = "dev"


class Instance(BaseModel):
    """What ``nats init`` recorded about this namespace."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    namespace: str = Field(max_length=128)
    kind: InstanceKind
    created_at: datetime


class InstanceConflict(ValueError):
    """The namespace is already an instance of another kind."""


async def read_instance(kv: KeyValue) -> Instance | None:
    """The recorded instance, or None (a namespace provisioned before instances had kinds)."""
    return await read_model(kv, INSTANCE_KEY, Instance)


async def init_instance(kv: KeyValue, namespace: str, kind: InstanceKind | None,
                        now: datetime | None = None) -> tuple[Instance, list[str]]:
    """Record ``kind`` for ``namespace`` (once; None: the recorded kind, else prod) and pause a
    new dev instance; returns the instance and what was done, one line each. Raises
    ``InstanceConflict`` when the namespace is already an instance of another kind."""
    existing = await read_instance(kv)
    if existing is not None and kind is None:
        return existing, [f"{existing.kind} instance {namespace} already recorded"]
    kind = kind or InstanceKind.PROD
    if existing is not None:
        if existing.kind != kind:
            raise InstanceConflict(f"namespace {namespace} is already a {existing.kind} instance "
                                   f"(since {existing.created_at:%Y-%m-%d}); its kind does not change")
        return existing, [f"{kind} instance {namespace} already recorded"]
    instance = Instance(namespace=namespace, kind=kind, created_at=now or datetime.now(UTC))
    try:
        await kv.create(INSTANCE_KEY, instance.model_dump_json().encode())
    except KeyWrongLastSequenceError:  # another init got there first: its record stands
        return await init_instance(kv, namespace, kind, now)
    done = [f"recorded {kind} instance {namespace}"]
    if kind is InstanceKind.DEV:
        await pause(kv, runpod_cap_zero=True)
        done.append("paused it (scheduler paused, RunPod cap 0): `touchstone system set --resume` starts it")
    return instance, done


async def pause(kv: KeyValue, *, runpod_cap_zero: bool = False) -> SystemSettings:
    """Set ``scheduler_paused`` (and with ``runpod_cap_zero`` the RunPod cap to 0), keeping
    every other setting; retried when another writer changes the settings meanwhile."""
    for _ in range(10):
        current, revision = await read_system(kv)
        changes: dict[str, object] = {"scheduler_paused": True}
        if runpod_cap_zero:
            changes["runpod_max_running_tasks"] = 0
        new = current.model_copy(update=changes)
        try:
            await write_system(kv, new, revision=revision)
            return new
        except KeyWrongLastSequenceError:
            continue
    raise RuntimeError("system settings keep changing; pause again")


def paused_reasons(settings: SystemSettings) -> list[str]:
    """What stops work from starting, in words (empty: nothing does)."""
    reasons = []
    if settings.scheduler_paused:
        reasons.append("scheduler paused: nothing is placed, launched or retried")
    if settings.runpod_max_running_tasks == 0:
        reasons.append("RunPod cap 0")
    return reasons


def banner(instance: Instance | None, settings: SystemSettings) -> str | None:
    """The line every UI page shows for a dev or a paused instance, or None."""
    parts = []
    if instance is not None and instance.kind is InstanceKind.DEV:
        parts.append(f"Dev instance {instance.namespace}")
    if settings.scheduler_paused:
        parts.append("PAUSED: nothing is placed, launched or retried until an admin resumes it")
    return " · ".join(parts) or None


class InstanceWatch:
    """The instance's kind and system settings as they are now, kept current by watching the
    system bucket (``run``), for pages that show them on every request without a read."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv
        self.instance: Instance | None = None
        self.settings = SystemSettings()

    @property
    def banner(self) -> str | None:
        return banner(self.instance, self.settings)

    async def run(self, stop: asyncio.Event) -> None:
        watcher = await self.kv.watchall()
        try:
            while not stop.is_set():
                try:
                    entry = await watcher.updates(timeout=0.5)  # type: ignore[no-untyped-call]
                except TimeoutError:
                    continue
                if entry is None or entry.key not in (SYSTEM_KEY, INSTANCE_KEY):
                    continue
                try:
                    if entry.key == SYSTEM_KEY:
                        self.settings = SystemSettings.model_validate_json(entry.value or b"{}")
                    else:
                        self.instance = Instance.model_validate_json(entry.value or b"{}")
                except ValueError as e:
                    log.error("ignoring invalid %s revision %s: %s", entry.key, entry.revision, e)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]
