"""Run-time system settings (the System tab), kept in the NATS key-value bucket and watched,
so a change takes effect at once in every service."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TypeVar

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

SYSTEM_KEY = "system"


class Server(BaseModel):
    """An on-prem GPU server as the admin declared it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    num_slots: int = Field(1, ge=0, le=64, description="tasks at once; one GPU each; 0 pauses it")
    gpus: list[str] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)


class SystemSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    runpod_max_running_tasks: int = Field(0, ge=0, le=1000, description="0 pauses RunPod")
    servers: list[Server] = Field(default_factory=list)
    scheduler_paused: bool = False


async def read_system(kv: KeyValue) -> tuple[SystemSettings, int]:
    """The current settings and their KV revision (0 when never written)."""
    try:
        entry = await kv.get(SYSTEM_KEY)
    except KeyNotFoundError:
        return SystemSettings(), 0
    if not entry.value:
        return SystemSettings(), entry.revision or 0
    return SystemSettings.model_validate_json(entry.value), entry.revision or 0


async def write_system(kv: KeyValue, settings: SystemSettings, *, revision: int | None = None) -> int:
    """Store new settings; with ``revision`` it fails if someone else changed them since."""
    data = settings.model_dump_json().encode()
    if revision is None:
        return int(await kv.put(SYSTEM_KEY, data))
    if revision == 0:
        return int(await kv.create(SYSTEM_KEY, data))
    return int(await kv.update(SYSTEM_KEY, data, last=revision))


async def watch_system(kv: KeyValue, on_change: Callable[[SystemSettings], None], stop: asyncio.Event) -> None:
    """Call ``on_change`` with the current settings and again after every change."""
    watcher = await kv.watch(SYSTEM_KEY)
    try:
        while not stop.is_set():
            try:
                entry = await watcher.updates(timeout=0.5)  # type: ignore[no-untyped-call]
            except TimeoutError:
                continue
            if entry is None:  # end of the initial values
                continue
            try:
                on_change(SystemSettings.model_validate_json(entry.value or b"{}"))
            except ValueError as e:
                log.error("ignoring invalid system settings revision %s: %s", entry.revision, e)
    finally:
        with contextlib.suppress(Exception):
            await watcher.stop()  # type: ignore[no-untyped-call]


# --- what the providers report for the System page ------------------------------------------

GPU_TYPES_KEY = "gpu_types"
"""The RunPod GPU catalog (JSON list), written by the RunPod provider, served by the API."""

RUNPOD_STATUS_KEY = "runpod_status"
"""The RunPod provider's account view (a ``RunPodStatus``), rewritten every reconcile."""


class ReapedPod(BaseModel):
    """A pod the rogue-pod reaper terminated."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    pod_id: str
    name: str
    reaped_at: str = Field(description="ISO 8601, UTC")
    cost_per_hr: float | None = None
    reason: str = ""


class RunPodStatus(BaseModel):
    """RunPod as the provider last saw it: money, pods, and why launches may be stopped."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    updated_at: str = Field(description="ISO 8601, UTC")
    balance: float | None = Field(None, description="account balance in USD; None when unknown")
    spend_per_hour: float = Field(0.0, description="sum of cost per hour of our running pods")
    running_pods: int = 0
    launches_stopped: str | None = Field(
        None, description="why launches are stopped (low balance, key rejected), or None"
    )
    reaped: list[ReapedPod] = Field(default_factory=list, description="most recent first, at most 50")


async def read_model(kv: KeyValue, key: str, model: type[M]) -> M | None:
    """The model stored at ``key``, or None when it is missing, empty or not valid (logged)."""
    try:
        entry = await kv.get(key)
    except KeyNotFoundError:
        return None
    if not entry.value:
        return None
    try:
        return model.model_validate_json(entry.value)
    except ValueError as e:
        log.error("ignoring an invalid %s at %s: %s", model.__name__, key, e)
        return None


async def read_runpod_status(kv: KeyValue) -> RunPodStatus | None:
    """The RunPod provider's last report, or None when no provider has written one."""
    return await read_model(kv, RUNPOD_STATUS_KEY, RunPodStatus)


async def write_runpod_status(kv: KeyValue, status: RunPodStatus) -> None:
    await kv.put(RUNPOD_STATUS_KEY, status.model_dump_json().encode())
