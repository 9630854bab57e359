"""Events: the facts Touchstone records, one JetStream message each.

Every event is a small frozen pydantic model with an envelope (``event_id``, ``type``,
``occurred_at``, ``aggregate_id``, ``correlation_id`` = submission id, ``causation_id``) and a
past-tense name. Schema changes are additive where they can be: new fields are optional.

Every event also carries ``schema_version``, the version of its type's shape. A change that is
not additive (a rename, a new meaning) raises the type's version and registers an upcaster
that turns the previous shape into the new one (``UPCASTERS``); reading a stored event
(``decode_event``) applies them in order, so every reader sees the current model only and the
record is never rewritten. An event stored without the field (before versions existed) is
version 1. One written by a newer Touchstone (a version this code does not know) is refused,
not guessed at. Constructing an event stamps its type's current version (the field's default).

Every event stays far under the broker's payload limit by construction: free text (reasons,
a log snippet) is cut to a bound, and a dict from a task (a report, metrics) that would be
larger than its bound is replaced by a note saying so (``Reason``, ``Snippet``, ``Doc``).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from touchstone.shared.reports import ValidationReport, lenient

Platform = Literal["onprem", "runpod", "any"]
TaskKind = Literal["validation", "training"]
FailureClass = Literal["infrastructure", "trainer", "timeout", "rejected", "permanent"]
"""How a failed attempt failed (``touchstone.shared.attempt`` says what each means and which are retried)."""

VALIDATION_TASK_ID = "validation"

MAX_REASON_BYTES = 2000
MAX_SNIPPET_BYTES = 16_000
MAX_DOC_BYTES = 128 * 1024


def _cut_start(limit: int) -> Any:
    def cut(value: str) -> str:
        raw = value.encode("utf-8", errors="replace")
        return value if len(raw) <= limit else raw[: limit - 3].decode("utf-8", errors="ignore") + "..."
    return cut


def _cut_end(value: str | None) -> str | None:
    """A log snippet keeps its end (the lines before the failure)."""
    if value is None:
        return None
    raw = value.encode("utf-8", errors="replace")
    if len(raw) <= MAX_SNIPPET_BYTES:
        return value
    return "..." + raw[len(raw) - MAX_SNIPPET_BYTES + 3 :].decode("utf-8", errors="ignore")


def _bound_doc(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    size = len(_JSON_DOC.dump_json(value))
    return value if size <= MAX_DOC_BYTES else {"omitted": f"{size} bytes, more than {MAX_DOC_BYTES}"}


_JSON_DOC: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])
Reason = Annotated[str, AfterValidator(_cut_start(MAX_REASON_BYTES))]
Snippet = Annotated[str | None, AfterValidator(_cut_end)]
Doc = Annotated[dict[str, Any], AfterValidator(_bound_doc)]
Links = Annotated[dict[str, str], AfterValidator(_bound_doc)]
OptionalDoc = Annotated[dict[str, Any] | None, AfterValidator(_bound_doc)]


def new_id(prefix: str = "") -> str:
    """A short url-safe id with no dots."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def derived_id(*parts: str) -> str:
    """A deterministic event id from its causes, so a redelivered cause yields the same id
    and JetStream's duplicate window drops the second publish."""
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def utcnow() -> datetime:
    return datetime.now(UTC)


Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
UPCASTERS: dict[tuple[str, int], Upcaster] = {}
"""(event type, version) -> a function from that version's shape to the next version's."""


class Event(BaseModel):
    """The envelope every event carries."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    aggregate: ClassVar[str]
    SCHEMA_VERSION: ClassVar[int] = 1
    """The version of this type's current shape; raised with an upcaster from the previous one
    (and the ``schema_version`` field's default with it, which ``__init_subclass__`` checks)."""

    schema_version: int = Field(default=1, ge=1, description="the version of this type's shape")
    event_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    occurred_at: datetime = Field(default_factory=utcnow)
    aggregate_id: str
    correlation_id: str = Field(description="the submission this event belongs to")
    causation_id: str | None = Field(default=None, description="the event or request that caused it")

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        default = cls.model_fields["schema_version"].default
        if default != cls.SCHEMA_VERSION:
            raise TypeError(f"{cls.__name__}: schema_version defaults to {default}, SCHEMA_VERSION is "
                            f"{cls.SCHEMA_VERSION}")

    @property
    def event_type(self) -> str:
        return type(self).__name__


# --- submission ---------------------------------------------------------------------------


class TaskSpec(BaseModel):
    """What a task runs: the feature set's source and the trainer's settings."""

    model_config = ConfigDict(frozen=True)

    git_url: str
    git_ref: str = "main"
    feature_set_path: str = "."
    config_file: str = "configs/default.toml"
    trainer_ref: str = "main"
    fetched_data_end_to: datetime | None = None
    passthrough_args: tuple[str, ...] = ()
    run_timeout_s: float | None = Field(None, gt=0, description="the training run deadline from the schedule; "
                                        "none: the platform's default")


class Schedule(BaseModel):
    """An admin's training request for an accepted submission."""

    model_config = ConfigDict(frozen=True)

    config_file: str = "configs/default.toml"
    trainer_ref: str = "main"
    prediction_intervals: tuple[int, ...]
    fetched_data_end_to: datetime | None = None
    passthrough_args: tuple[str, ...] = ()
    platform: Platform = "any"
    gpu_type: str | None = None
    priority: int = 0
    run_timeout_s: float | None = Field(None, gt=0, description="how long one training attempt may run; "
                                        "none: the platform's default")


class SubmissionEvent(Event):
    aggregate: ClassVar[str] = "submission"


class SubmissionCreated(SubmissionEvent):
    type: Literal["SubmissionCreated"] = "SubmissionCreated"
    owner: str
    name: str
    git_url: str
    git_ref: str = "main"
    feature_set_path: str = "."


class SubmissionValidated(SubmissionEvent):
    type: Literal["SubmissionValidated"] = "SubmissionValidated"
    SCHEMA_VERSION: ClassVar[int] = 2
    schema_version: int = Field(default=2, ge=1)
    passed: bool
    report: ValidationReport | None = Field(None, description="the trainer's report (version 1: an untyped dict)")
    commit: str | None = None


class SubmissionScheduled(SubmissionEvent):
    type: Literal["SubmissionScheduled"] = "SubmissionScheduled"
    schedule: Schedule
    scheduled_by: str = ""


class SubmissionStarted(SubmissionEvent):
    type: Literal["SubmissionStarted"] = "SubmissionStarted"


class SubmissionCompleted(SubmissionEvent):
    type: Literal["SubmissionCompleted"] = "SubmissionCompleted"


class SubmissionFailed(SubmissionEvent):
    type: Literal["SubmissionFailed"] = "SubmissionFailed"
    reason: Reason


DELETE_CAUSE = "delete:"  # causation_id prefix of a cancel that an admin's DELETE asked for


class SubmissionCancelRequested(SubmissionEvent):
    type: Literal["SubmissionCancelRequested"] = "SubmissionCancelRequested"
    requested_by: str = ""


class SubmissionCancelled(SubmissionEvent):
    type: Literal["SubmissionCancelled"] = "SubmissionCancelled"


class SubmissionRetracted(SubmissionEvent):
    type: Literal["SubmissionRetracted"] = "SubmissionRetracted"
    retracted_by: str = ""


# --- task ---------------------------------------------------------------------------------


class TaskEvent(Event):
    aggregate: ClassVar[str] = "task"

    submission_id: str
    task_id: str


class TaskQueued(TaskEvent):
    type: Literal["TaskQueued"] = "TaskQueued"
    kind: TaskKind = "training"
    spec: TaskSpec
    prediction_interval: int | None = None
    platform: Platform = "any"
    gpu_type: str | None = None
    priority: int = 0
    attempt: int = 1
    max_attempts: int = 3


class TaskAssigned(TaskEvent):
    type: Literal["TaskAssigned"] = "TaskAssigned"
    attempt: int
    platform: Literal["onprem", "runpod"]
    placement: str = Field(description="host/slot for on-prem, the GPU type for RunPod")
    gpu_type: str | None = None


class ContainerLaunched(TaskEvent):
    type: Literal["ContainerLaunched"] = "ContainerLaunched"
    attempt: int
    container_name: str
    deployment_id: str = ""
    cost_per_hour: float | None = None


class ContainerReady(TaskEvent):
    type: Literal["ContainerReady"] = "ContainerReady"
    attempt: int


class TrainingStarted(TaskEvent):
    type: Literal["TrainingStarted"] = "TrainingStarted"
    attempt: int


class TrainingFinished(TaskEvent):
    type: Literal["TrainingFinished"] = "TrainingFinished"
    attempt: int
    exit_code: int = 0
    metrics: Doc = Field(default_factory=dict)
    artifacts: Links = Field(default_factory=dict, description="name -> object key under the attempt's prefix")
    log_uri: str | None = Field(None, description="no longer written: a producer names the log by log_key")
    log_key: str | None = Field(None, description="the object key of the attempt's full console log")
    SCHEMA_VERSION: ClassVar[int] = 2
    schema_version: int = Field(default=2, ge=1)
    report: ValidationReport | None = Field(None, description="a validation's report (version 1: an untyped dict)")
    cost_usd: float | None = None
    commit: str | None = Field(None, max_length=64, description="the feature set's commit, when it came from git")


def _typed_report_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 carried the report as whatever dict the trainer wrote (or ``{"omitted": ...}``
    when it was too large, ``{}`` when there was none); version 2 carries the typed
    ``ValidationReport``. An old report that does not fit the model reads as no report (the
    stored record keeps it, unchanged)."""
    report = lenient(data.get("report"))
    data["report"] = report.model_dump(mode="json") if report is not None else None
    return data


UPCASTERS[("SubmissionValidated", 1)] = _typed_report_v1
UPCASTERS[("TrainingFinished", 1)] = _typed_report_v1


class TaskFailed(TaskEvent):
    type: Literal["TaskFailed"] = "TaskFailed"
    attempt: int
    reason: Reason
    failure_class: FailureClass = "infrastructure"
    log_snippet: Snippet = None
    log_uri: str | None = Field(None, description="no longer written: a producer names the log by log_key")
    log_key: str | None = Field(None, description="the object key of the attempt's full console log")


class TaskRetried(TaskEvent):
    type: Literal["TaskRetried"] = "TaskRetried"
    attempt: int = Field(description="the new attempt's number")
    not_before: datetime


class LaunchDeferred(TaskEvent):
    """The provider could not start the assigned attempt yet (no stock, the platform's cap, a
    low balance) and hands the task back to the queue: the same attempt, nothing burned."""

    type: Literal["LaunchDeferred"] = "LaunchDeferred"
    attempt: int
    reason: str
    not_before: datetime


class TaskErrored(TaskEvent):
    type: Literal["TaskErrored"] = "TaskErrored"
    reason: Reason


class TaskCancelled(TaskEvent):
    type: Literal["TaskCancelled"] = "TaskCancelled"
    reason: Reason = "cancelled"


class ContainerTerminated(TaskEvent):
    type: Literal["ContainerTerminated"] = "ContainerTerminated"
    attempt: int
    container_name: str = ""


class ResultsPublished(TaskEvent):
    """The results service published one attempt's outputs: where they are now, and its MLflow run."""

    type: Literal["ResultsPublished"] = "ResultsPublished"
    attempt: int
    outcome: Literal["finished", "failed"] = "finished"
    artifacts: Links = Field(default_factory=dict, description="name -> object key, checked to be in the store")
    log_uri: str | None = None
    log_key: str | None = None
    missing: tuple[str, ...] = ()
    mlflow_run_id: str | None = None
    mlflow_run_url: str | None = None


# --- platforms -----------------------------------------------------------------------------


class PlatformEvent(Event):
    """What a provider did or saw outside any task's lifecycle. The aggregate is the platform
    (``runpod``); ``correlation_id`` is the platform too, as these belong to no submission."""

    aggregate: ClassVar[str] = "platform"


class RoguePodReaped(PlatformEvent):
    """The reaper terminated a ``touchstone-`` pod that no live attempt owned."""

    type: Literal["RoguePodReaped"] = "RoguePodReaped"
    SCHEMA_VERSION: ClassVar[int] = 2
    schema_version: int = Field(default=2, ge=1)
    pod_id: str
    pod_name: str
    cost_per_hour: float | None = Field(None, description="USD per hour (version 1 called it cost_per_hr)")


def _rogue_pod_reaped_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 named the price ``cost_per_hr``; version 2 spells it ``cost_per_hour`` as every
    other event and the RunPod models do."""
    if "cost_per_hr" in data:
        data.setdefault("cost_per_hour", data.pop("cost_per_hr"))
    return data


UPCASTERS[("RoguePodReaped", 1)] = _rogue_pod_reaped_v1


class AlarmRaised(PlatformEvent):
    """A condition someone must act on (a low balance, a rejected API key)."""

    type: Literal["AlarmRaised"] = "AlarmRaised"
    kind: str
    message: str
    service: str


# --- agents ---------------------------------------------------------------------------------


class AgentEvent(Event):
    """What an operator did on an agent's host (``touchstone.shared.agentaccess``). The aggregate
    is the host; ``correlation_id`` is the host too, as these belong to no submission."""

    aggregate: ClassVar[str] = "agent"


class AgentAccessRequested(AgentEvent):
    """An admin asked an agent to run a command or read or write a file: recorded before the
    request is sent, so that one that never returns is on the record too."""

    type: Literal["AgentAccessRequested"] = "AgentAccessRequested"
    action: Literal["exec", "get", "put"]
    requested_by: str
    argv: tuple[Reason, ...] = Field((), max_length=64)
    path: str | None = Field(None, max_length=1024)
    size: int | None = Field(None, description="put: the bytes written")


class AgentAccessFinished(AgentEvent):
    """How it went: refused (``error``), or the command's exit code, or the file's size."""

    type: Literal["AgentAccessFinished"] = "AgentAccessFinished"
    action: Literal["exec", "get", "put"]
    requested_by: str
    ok: bool
    error: Reason | None = None
    exit_code: int | None = None
    timed_out: bool = False
    output_bytes: int = 0
    size: int | None = None


def training_task_id(interval: int) -> str:
    """The task id of a prediction interval's training task (``pi-60``)."""
    return f"pi-{interval}"


AnyEvent = Annotated[
    SubmissionCreated
    | SubmissionValidated
    | SubmissionScheduled
    | SubmissionStarted
    | SubmissionCompleted
    | SubmissionFailed
    | SubmissionCancelRequested
    | SubmissionCancelled
    | SubmissionRetracted
    | TaskQueued
    | TaskAssigned
    | ContainerLaunched
    | ContainerReady
    | TrainingStarted
    | TrainingFinished
    | TaskFailed
    | TaskRetried
    | LaunchDeferred
    | TaskErrored
    | TaskCancelled
    | ContainerTerminated
    | ResultsPublished
    | RoguePodReaped
    | AlarmRaised
    | AgentAccessRequested
    | AgentAccessFinished,
    Field(discriminator="type"),
]

EVENT_ADAPTER: TypeAdapter[AnyEvent] = TypeAdapter(AnyEvent)

EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        SubmissionCreated,
        SubmissionValidated,
        SubmissionScheduled,
        SubmissionStarted,
        SubmissionCompleted,
        SubmissionFailed,
        SubmissionCancelRequested,
        SubmissionCancelled,
        SubmissionRetracted,
        TaskQueued,
        TaskAssigned,
        ContainerLaunched,
        ContainerReady,
        TrainingStarted,
        TrainingFinished,
        TaskFailed,
        TaskRetried,
        LaunchDeferred,
        TaskErrored,
        TaskCancelled,
        ContainerTerminated,
        ResultsPublished,
        RoguePodReaped,
        AlarmRaised,
        AgentAccessRequested,
        AgentAccessFinished,
    )
}


def decode_event(data: bytes) -> Event:
    """Parse a stored message body into its event model at the current version (raises
    ``ValueError``, of which pydantic's ``ValidationError`` is one, also for a version newer
    than this code knows). The current shape takes the fast path; an older one is upcast."""
    try:
        event = EVENT_ADAPTER.validate_json(data)
    except ValidationError:
        return _upcast(data)  # an older shape the current model cannot read as it is, or junk
    stored = event.schema_version if "schema_version" in event.model_fields_set else 1
    if stored == type(event).SCHEMA_VERSION:
        return event
    return _upcast(data)


def _upcast(data: bytes) -> Event:
    doc = json.loads(data)
    cls = EVENT_TYPES.get(str(doc.get("type"))) if isinstance(doc, dict) else None
    if cls is None:
        return EVENT_ADAPTER.validate_python(doc)  # raises: no event type of ours
    stored, current = doc.get("schema_version", 1), cls.SCHEMA_VERSION
    if not isinstance(stored, int) or isinstance(stored, bool) or stored < 1:
        raise ValueError(f"{cls.__name__}: schema_version {stored!r} is not a version")
    if stored > current:
        raise ValueError(f"{cls.__name__} version {stored} was written by a newer Touchstone "
                         f"(this one reads up to version {current})")
    for version in range(stored, current):
        doc = UPCASTERS[(cls.__name__, version)](doc)
    return EVENT_ADAPTER.validate_python({**doc, "schema_version": current})


def encode_event(event: Event) -> bytes:
    return event.model_dump_json().encode()

