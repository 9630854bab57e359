"""Events: the facts Touchstone records, one JetStream message each.

Every event is a small frozen pydantic model with an envelope (``event_id``, ``type``,
``occurred_at``, ``aggregate_id``, ``correlation_id`` = submission id, ``causation_id``) and a
past-tense name. Schema changes are additive only: new fields are optional.

Every event stays far under the broker's payload limit by construction: free text (reasons,
a log snippet) is cut to a bound, and a dict from a task (a report, metrics) that would be
larger than its bound is replaced by a note saying so (``Reason``, ``Snippet``, ``Doc``).
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter

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


class Event(BaseModel):
    """The envelope every event carries."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    aggregate: ClassVar[str]

    event_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    occurred_at: datetime = Field(default_factory=utcnow)
    aggregate_id: str
    correlation_id: str = Field(description="the submission this event belongs to")
    causation_id: str | None = Field(default=None, description="the event or request that caused it")

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
    passed: bool
    report: Doc = Field(default_factory=dict)
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
    artifacts: Links = Field(default_factory=dict, description="name -> URI")
    log_uri: str | None = None
    report: OptionalDoc = Field(default=None, description="a validation's report")
    cost_usd: float | None = None


class TaskFailed(TaskEvent):
    type: Literal["TaskFailed"] = "TaskFailed"
    attempt: int
    reason: Reason
    failure_class: FailureClass = "infrastructure"
    log_snippet: Snippet = None
    log_uri: str | None = None


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
    artifacts: Links = Field(default_factory=dict, description="name -> published URI")
    log_uri: str | None = None
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
    pod_id: str
    pod_name: str
    cost_per_hr: float | None = None


class AlarmRaised(PlatformEvent):
    """A condition someone must act on (a low balance, a rejected API key)."""

    type: Literal["AlarmRaised"] = "AlarmRaised"
    kind: str
    message: str
    service: str


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
    | AlarmRaised,
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
    )
}


def decode_event(data: bytes) -> Event:
    """Parse a message body into its event model (raises pydantic.ValidationError)."""
    return EVENT_ADAPTER.validate_json(data)


def encode_event(event: Event) -> bytes:
    return event.model_dump_json().encode()

