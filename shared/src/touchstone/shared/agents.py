"""What agents report about their host, as plain core-NATS messages on
``{ns}.agent.{host}.evt`` (``Subjects.agent_reports(host)``).

Reports are state, not facts: each heartbeat replaces the previous one, nothing is stored, and
a missed one costs nothing. Every report carries a ``type`` field so that other kinds can share
the subject later; readers skip types they do not know.

The scheduler treats a host as online while its last heartbeat is younger than its own timeout
(15 s by default), so agents send one every ``HEARTBEAT_INTERVAL_S`` seconds and at once when
their free slots or running containers change.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

HEARTBEAT_INTERVAL_S = 5.0


class GpuStatus(BaseModel):
    """One GPU of the host as the agent sees it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    index: int = Field(ge=0, description="the device index the agent hands to containers")
    name: str = ""
    memory_total_mb: int | None = None
    memory_used_mb: int | None = None
    utilization_pct: float | None = None
    busy: bool = Field(False, description="a container holds it (ours or not)")


class AgentHeartbeat(BaseModel):
    """An agent's periodic report of its host: capacity, health and what runs there."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    type: Literal["AgentHeartbeat"] = "AgentHeartbeat"
    host: str = Field(pattern=r"^[A-Za-z0-9_-]{1,128}$", description="the host token of its subject")
    namespace: str | None = Field(None, description="the Touchstone instance this agent serves")
    version: str = ""
    gpus: tuple[GpuStatus, ...] = ()
    slots_total: int = Field(0, ge=0, description="task slots on this host (one GPU each)")
    slots_free: int = Field(0, ge=0, description="slots no container holds right now")
    running: tuple[str, ...] = Field((), description="names of the containers running on the host")
    isolation: str = Field("", description="how tasks are isolated there (docker, bubblewrap, none)")
    refusing: str | None = Field(None, description="why this agent takes no work now (none: it does)")
    sent_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


AgentReport = AgentHeartbeat


def encode_report(report: AgentReport) -> bytes:
    return report.model_dump_json().encode()


def decode_report(data: bytes) -> AgentReport | None:
    """The report in ``data``; ``None`` for a kind this version does not know.
    Raises ``ValueError`` when the body is not a valid report of a known kind."""
    try:
        body = json.loads(data)
    except ValueError as e:
        raise ValueError(f"agent report is not JSON: {e}") from e
    if not isinstance(body, dict):
        raise ValueError("agent report is not a JSON object")
    if body.get("type") != "AgentHeartbeat":
        return None
    try:
        return AgentHeartbeat.model_validate(body)
    except ValidationError as e:
        raise ValueError(f"invalid AgentHeartbeat: {e.errors()[:3]}") from e
