"""What the agent and the on-prem provider say to each other over NATS: the wire contract both
sides import, so that the provider needs nothing of the agent's distribution.

* Commands: the provider sends the scheduler's own ``LaunchTask`` / ``TerminateTask`` models
  (``touchstone.shared.commands``) as core-NATS requests on ``{ns}.agent.{host}.cmd``
  (``Subjects.agent_commands(host)``); the agent answers each with a ``CommandReply``. Both
  commands are idempotent on the agent: a launch of a container it already has, or a terminate
  of one it no longer has, is answered ``ok``.
* Reports: on ``{ns}.agent.{host}.evt`` (``Subjects.agent_reports(host)``) the agent sends an
  ``AgentHeartbeat`` about its host and one ``AttemptReport`` per attempt it knows, each time
  the attempt changes and again on every heartbeat tick.

Reports are state, not facts: each one replaces the previous one, nothing is stored, and a lost
or repeated one costs nothing (the provider turns the difference between an attempt report and
the task's recorded events into events). Every report carries a ``type`` field so that kinds
share the subject; readers skip types they do not know.

The scheduler treats a host as online while its last heartbeat is younger than its own timeout
(15 s by default), so agents send one every ``HEARTBEAT_INTERVAL_S`` seconds and at once when
their free slots or running containers change.

The agent reports raw facts (how far the attempt got, how it ended); the provider decides what
they mean for the task (success, trainer failure, infrastructure failure).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from touchstone.shared.consumer import Delivery, Handler
from touchstone.shared.events import FailureClass, TaskKind
from touchstone.shared.reports import MAX_PROBLEM_CHARS, InvalidReport, ValidationReport, parse_report
from touchstone.shared.subjects import Subjects

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

HEARTBEAT_INTERVAL_S = 5.0
LOG_TAIL_LINES = 50
_HOST = r"^[A-Za-z0-9_-]{1,128}$"
MAX_SLOT = 1023
"""The highest GPU slot index a heartbeat may name (a host has at most 1,024)."""
MAX_REASON_CHARS = 1024
MAX_RUNNING = 4096
"""The most container names a heartbeat may list (an agent runs one per slot; the rest are the
host's own containers, which it lists too)."""


# --- heartbeats: the host --------------------------------------------------------------


log = logging.getLogger(__name__)

class GpuStatus(BaseModel):
    """One GPU of the host as the agent sees it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    index: int = Field(ge=0, le=MAX_SLOT, description="the device index the agent hands to containers")
    name: str = Field("", max_length=256)
    memory_total_mb: int | None = None
    memory_used_mb: int | None = None
    utilization_pct: float | None = None
    busy: bool = Field(False, description="a container holds it (ours or not)")


class AgentHeartbeat(BaseModel):
    """An agent's periodic report of its host: capacity, health and what runs there."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    type: Literal["AgentHeartbeat"] = "AgentHeartbeat"
    host: str = Field(pattern=_HOST, description="the host token of its subject")
    namespace: str | None = Field(None, description="the Touchstone instance this agent serves")
    version: str = Field("", max_length=128)
    gpus: tuple[GpuStatus, ...] = Field((), max_length=MAX_SLOT + 1)
    slots_total: int = Field(0, ge=0, le=MAX_SLOT + 1, description="task slots on this host (one GPU each)")
    slots_free: int = Field(0, ge=0, le=MAX_SLOT + 1, description="slots no container holds right now")
    slots_busy: tuple[Annotated[int, Field(ge=0, le=MAX_SLOT)], ...] = Field(
        (), max_length=MAX_SLOT + 1,
        description="which GPU slots a container holds right now (placement avoids them: an attempt the "
                    "scheduler counts as ended may still be stopping there)")
    running: tuple[Annotated[str, Field(max_length=256)], ...] = Field(
        (), max_length=MAX_RUNNING, description="names of the containers running on the host")
    isolation: str = Field("", max_length=64, description="how tasks are isolated there (docker, bubblewrap, none)")
    refusing: str | None = Field(
        None, max_length=MAX_REASON_CHARS, description="why this agent takes no work now (none: it does)")
    sent_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @field_validator("refusing", mode="before")
    @classmethod
    def _cut_reason(cls, value: Any) -> Any:
        """A runtime's error can be long: the reason is cut, not the heartbeat refused."""
        return value[:MAX_REASON_CHARS] if isinstance(value, str) else value


AgentReport = AgentHeartbeat


# --- attempt reports: one attempt on the host ------------------------------------------

Stage = Literal["launched", "ready", "started", "ended"]
"""How far an attempt got: its container (work directory) exists; the container is ready for
prepare; the trainer process started; the trainer exited or the attempt ended otherwise."""

STAGES: tuple[Stage, ...] = ("launched", "ready", "started", "ended")

Result = Literal["exited", "failed", "terminated", "lost"]
"""``exited``: the trainer ran and exited with ``exit_code``; ``failed``: the agent could not
provision, prepare, start or collect it (``error`` says why); ``terminated``: stopped on request;
``lost``: the agent no longer knows what became of it (for example it was restarted and the
process had vanished without an exit status)."""


def stage_index(stage: Stage) -> int:
    return STAGES.index(stage)


class AttemptOutcome(BaseModel):
    """How an attempt ended, as the agent observed it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    result: Result
    exit_code: int | None = None
    error: str | None = Field(None, description="what went wrong, for result failed or lost")
    failed_phase: str | None = Field(None, description="provision, prepare, run or collect")
    permanent: bool = Field(False, description="for result failed: retrying cannot help (an unknown trainer_ref, "
                                               "a requirement without a wheel)")
    failure_class: FailureClass | None = Field(None, description="for result failed: the class the agent already "
                                               "knows (timeout: stopped at its run deadline)")
    report: ValidationReport | None = Field(None, description="the trainer's validation report, when written")
    report_problem: str | None = Field(None, max_length=2 * MAX_PROBLEM_CHARS,
                                       description="why report.json was not a valid report (the attempt fails)")
    metrics: dict[str, Any] = Field(default_factory=dict, description="metrics.json of a training run")
    artifacts: dict[str, str] = Field(default_factory=dict, description="artifact name -> object key")
    log_uri: str | None = Field(None, description="no longer written (log_key)")
    log_key: str | None = Field(None, description="the object key of the full console log")
    log_tail: tuple[str, ...] = Field((), description=f"the last {LOG_TAIL_LINES} console lines")
    commit: str | None = Field(None, description="the feature set's commit, when it came from git")

    @model_validator(mode="before")
    @classmethod
    def _untyped_report(cls, data: Any) -> Any:
        """An agent of before the typed report sends whatever dict the trainer wrote: one that
        is not a valid report becomes the attempt's report problem instead of making the whole
        message unreadable (which would leave the attempt to the silence timeout)."""
        if isinstance(data, dict) and isinstance(data.get("report"), dict):
            try:
                parse_report(data["report"])
            except InvalidReport as e:
                return {**data, "report": None,
                        "report_problem": data.get("report_problem") or f"report.json is not a valid report: {e}"}
        return data


class AttemptReport(BaseModel):
    """One attempt on one host, as its agent sees it now."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    type: Literal["AttemptReport"] = "AttemptReport"
    host: str = Field(pattern=_HOST)
    container: str
    submission_id: str
    task_id: str
    attempt: int = Field(ge=1)
    kind: TaskKind = "training"
    stage: Stage
    removed: bool = Field(False, description="the container and its work directory are gone")
    outcome: AttemptOutcome | None = None
    sent_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


# --- replies to commands ---------------------------------------------------------------


class CommandReply(BaseModel):
    """The agent's answer to a command."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    ok: bool
    error: str | None = Field(None, description="why the command was refused")
    held_by: str | None = Field(
        None, max_length=256,
        description="a launch refused only because another container still holds its slot: that container "
                    "(nothing of the refused attempt was started, so it may be placed again)")
    report: AttemptReport | None = Field(None, description="the attempt as it stands; none when unknown")


# --- bytes -----------------------------------------------------------------------------


def encode(message: BaseModel) -> bytes:
    """Any message of this protocol as it goes on the wire (JSON)."""
    return message.model_dump_json().encode()


encode_report = encode
"""The heartbeat's name for ``encode``."""


_Report = TypeVar("_Report", AgentHeartbeat, AttemptReport)


def _report_body(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError as e:
        raise ValueError(f"agent report is not JSON: {e}") from e


def _validate(body: dict[str, Any], model: type[_Report]) -> _Report:
    try:
        return model.model_validate(body)
    except ValidationError as e:
        raise ValueError(f"invalid {model.__name__}: {e.errors()[:3]}") from e


def decode_report(data: bytes) -> AgentReport | None:
    """The heartbeat in ``data``; ``None`` for another kind of report (an attempt report, or a
    kind this version does not know). Raises ``ValueError`` when the body is not a JSON object
    or not a valid heartbeat."""
    body = _report_body(data)
    if not isinstance(body, dict):
        raise ValueError("agent report is not a JSON object")
    return _validate(body, AgentHeartbeat) if body.get("type") == "AgentHeartbeat" else None


def decode_attempt_report(data: bytes) -> AttemptReport | None:
    """The attempt report in ``data``; ``None`` when the message is another kind of report.
    Raises ``ValueError`` for a malformed attempt report."""
    body = _report_body(data)
    if not isinstance(body, dict) or body.get("type") != "AttemptReport":
        return None
    return _validate(body, AttemptReport)


def decode_agent_report(data: bytes) -> AgentHeartbeat | AttemptReport | None:
    """Either kind of report in ``data``, for readers of every report on the subject (the
    provider); ``None`` for a kind this version does not know. Raises ``ValueError`` as
    ``decode_report`` and ``decode_attempt_report`` do."""
    heartbeat = decode_report(data)
    return heartbeat if heartbeat is not None else decode_attempt_report(data)


def decode_reply(data: bytes) -> CommandReply:
    try:
        return CommandReply.model_validate_json(data)
    except ValidationError as e:
        raise ValueError(f"invalid agent reply: {e.errors()[:3]}") from e


async def listen_to_agents(nc: NATS, subjects: Subjects, handlers: Mapping[str, Handler]) -> Subscription:
    """Every agent's reports, each to the handler of its type (a ``Reactions`` table bound;
    types without one are skipped). Core NATS has no stream: a report's ``Delivery`` is its
    subject, delivered once, sequence 0; ``reporting_host(delivery.subject)`` (``subjects``)
    says who sent it. A report that does not decode is dropped with a warning."""

    async def receive(msg: Msg) -> None:
        try:
            report = decode_agent_report(msg.data)
        except ValueError as e:
            log.warning("dropping agent report on %s: %s", msg.subject, e)
            return
        handler = None if report is None else handlers.get(report.type)
        if handler is not None:
            await handler(report, Delivery(subject=msg.subject, stream_seq=0, num_delivered=1, num_pending=0))

    return await nc.subscribe(subjects.all_agent_reports, cb=receive)
