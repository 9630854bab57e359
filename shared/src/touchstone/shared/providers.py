"""What a compute provider says about itself over core NATS: the attempts it drives now.

A provider that runs attempts without an agent (RunPod: one pod per attempt, driven over SSH
from the provider) has no heartbeat of a host to name its attempts in. Each replica instead
publishes ``LiveAttempts`` on ``{ns}.provider.{platform}.live`` (``Subjects.provider_live``)
every few seconds and whenever it takes an attempt on:

* the scheduler's stuck detection counts a name in it as a heartbeat of that attempt (a running
  attempt no report has named for ``running_heartbeat_timeout_s`` is stuck);
* the submission API's Tasks page shows the age of the last report naming a running attempt;
* peer replicas of the provider leave an attempt a peer named lately to that peer.

It is state, not a fact: each report replaces the sender's previous one, nothing is stored,
and a lost one costs nothing. It is not an agent's heartbeat: no host, no slots, and the
subject is not one an agent's NATS user may publish on.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MAX_LIVE = 10_000
"""More attempts than any provider drives at once: a longer list is refused, not folded."""
_TOKEN = r"^[A-Za-z0-9_-]{1,128}$"


class LiveAttempts(BaseModel):
    """The attempts one replica of a provider drives now (launching or running), by name."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    type: Literal["LiveAttempts"] = "LiveAttempts"
    platform: str = Field(pattern=_TOKEN, description="the platform token of its subject (runpod)")
    replica: str = Field(pattern=_TOKEN, description="which replica of the provider sends it")
    namespace: str | None = Field(None, description="the Touchstone instance the replica serves")
    running: tuple[str, ...] = Field((), max_length=MAX_LIVE,
                                     description="container (pod) names of the attempts it drives")
    sent_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


def encode_live(report: LiveAttempts) -> bytes:
    return report.model_dump_json().encode()


def decode_live(data: bytes, subject: str | None = None) -> LiveAttempts:
    """The report in ``data``; ``ValueError`` when it is not one, or when ``subject`` (where it
    came from) names another platform than the report does."""
    try:
        report = LiveAttempts.model_validate_json(data)
    except ValidationError as e:
        raise ValueError(f"invalid LiveAttempts: {e.errors()[:3]}") from e
    if subject is not None and subject.split(".")[-2:-1] != [report.platform]:
        raise ValueError(f"a LiveAttempts of {report.platform} on {subject}")
    return report
