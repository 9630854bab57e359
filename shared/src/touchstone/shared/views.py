"""Read models (projections) of submissions and tasks, and the pure projection of events.

``project`` folds one stored event into the views it touches. It never reads the clock and
never does I/O; the projector feeds it and the store keeps the result.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field
from touchstone.shared import events as ev
from touchstone.shared.lifecycle import (
    SubmissionStatus,
    TaskStatus,
    submission_transition,
)
from touchstone.shared.reports import ValidationReport, lenient
from touchstone.shared.subjects import task_aggregate_id


class TimelineEntry(BaseModel):
    type: str
    at: datetime
    attempt: int | None = None
    detail: str | None = None


class SubmissionView(BaseModel):
    id: str
    owner: str
    name: str
    git_url: str
    git_ref: str = "main"
    feature_set_path: str = "."
    commit: str | None = None
    status: SubmissionStatus
    created_at: datetime
    updated_at: datetime
    validation_report: Annotated[ValidationReport | None, BeforeValidator(lenient)] = Field(
        None, description="the trainer's validation report (a view stored before it was typed and whose report "
        "does not fit reads as none)")
    schedule: dict[str, Any] | None = None
    error: str | None = None
    cancel_requested: bool = False
    delete_requested: bool = Field(False, description="an admin deleted it while live: it is retracted once cancelled")
    tasks_total: int = 0
    tasks_done: int = 0
    cost_usd: float = 0.0
    seq: int = 0


class TaskView(BaseModel):
    submission_id: str
    task_id: str
    kind: str = "training"
    status: TaskStatus
    attempt: int = 1
    max_attempts: int = 3
    platform: str = "any"
    placement: str | None = None
    gpu_type: str | None = None
    priority: int = 0
    prediction_interval: int | None = None
    spec: dict[str, Any] = Field(default_factory=dict)
    container_name: str | None = None
    deployment_id: str | None = None
    queued_at: datetime
    phase_since: datetime
    updated_at: datetime
    not_before: datetime | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    artifacts: dict[str, str] = Field(default_factory=dict)
    log_uri: str | None = None
    mlflow_run_id: str | None = None
    mlflow_run_url: str | None = None
    error: str | None = None
    failure_class: str | None = None
    log_snippet: str | None = None
    cost_per_hour: float | None = None
    cost_usd: float = 0.0
    timeline: list[TimelineEntry] = Field(default_factory=list)
    seq: int = 0

    @property
    def key(self) -> str:
        return task_aggregate_id(self.submission_id, self.task_id)


_TASK_STATUS_AFTER: dict[str, TaskStatus] = {
    "TaskQueued": TaskStatus.QUEUED,
    "TaskAssigned": TaskStatus.ASSIGNED,
    "ContainerLaunched": TaskStatus.PROVISIONING,
    "ContainerReady": TaskStatus.PREPARING,
    "TrainingStarted": TaskStatus.RUNNING,
    "TrainingFinished": TaskStatus.SUCCEEDED,
    "TaskFailed": TaskStatus.FAILED,
    "TaskRetried": TaskStatus.QUEUED,
    "LaunchDeferred": TaskStatus.QUEUED,
    "TaskErrored": TaskStatus.ERROR,
    "TaskCancelled": TaskStatus.CANCELLED,
}


def project_submission(
    view: SubmissionView | None, event: ev.SubmissionEvent, seq: int
) -> SubmissionView | None:
    """The submission view after ``event``; ``None`` when the event does not apply (an event
    the lifecycle refuses is recorded but does not move the view)."""
    if view is not None and seq <= view.seq:
        return None
    if isinstance(event, ev.SubmissionCreated):
        if view is not None:
            return None
        return SubmissionView(
            id=event.aggregate_id,
            owner=event.owner,
            name=event.name,
            git_url=event.git_url,
            git_ref=event.git_ref,
            feature_set_path=event.feature_set_path,
            status=SubmissionStatus.VALIDATING,
            created_at=event.occurred_at,
            updated_at=event.occurred_at,
            seq=seq,
        )
    if view is None:
        return None
    try:
        status = submission_transition(view.status, event)
    except Exception:
        return None
    changes: dict[str, Any] = {"status": status, "updated_at": event.occurred_at, "seq": seq}
    match event:
        case ev.SubmissionValidated():
            changes |= {"validation_report": event.report, "commit": event.commit or view.commit}
        case ev.SubmissionScheduled():
            changes |= {"schedule": event.schedule.model_dump(mode="json")}
        case ev.SubmissionFailed():
            changes |= {"error": event.reason}
        case ev.SubmissionCancelRequested():
            asked_by_delete = (event.causation_id or "").startswith(ev.DELETE_CAUSE)
            changes |= {"cancel_requested": True, "delete_requested": view.delete_requested or asked_by_delete}
    return view.model_copy(update=changes)


def project_task(view: TaskView | None, event: ev.TaskEvent, seq: int) -> TaskView | None:
    """The task view after ``event``, or ``None`` when it does not change."""
    if view is not None and seq <= view.seq:
        return None
    entry = TimelineEntry(type=event.event_type, at=event.occurred_at, attempt=getattr(event, "attempt", None))
    if isinstance(event, ev.TaskQueued):
        if view is not None:
            return None
        return TaskView(
            submission_id=event.submission_id,
            task_id=event.task_id,
            kind=event.kind,
            status=TaskStatus.QUEUED,
            attempt=event.attempt,
            max_attempts=event.max_attempts,
            platform=event.platform,
            gpu_type=event.gpu_type,
            priority=event.priority,
            prediction_interval=event.prediction_interval,
            spec=event.spec.model_dump(mode="json"),
            queued_at=event.occurred_at,
            phase_since=event.occurred_at,
            updated_at=event.occurred_at,
            timeline=[entry],
            seq=seq,
        )
    if view is None:
        return None
    changes: dict[str, Any] = {"updated_at": event.occurred_at, "seq": seq, "timeline": [*view.timeline, entry]}
    new_status = _TASK_STATUS_AFTER.get(event.event_type)
    if new_status is not None and new_status != view.status:
        changes |= {"status": new_status, "phase_since": event.occurred_at}
    match event:
        case ev.TaskAssigned():
            changes |= {"platform": event.platform, "placement": event.placement, "gpu_type": event.gpu_type}
        case ev.ContainerLaunched():
            changes |= {
                "container_name": event.container_name,
                "deployment_id": event.deployment_id,
                "cost_per_hour": event.cost_per_hour,
            }
        case ev.TrainingFinished():
            changes |= {
                "metrics": event.metrics,
                "artifacts": event.artifacts,
                "log_uri": event.log_uri,
                "cost_usd": view.cost_usd + (event.cost_usd or 0.0),
                "error": None,
            }
        case ev.TaskFailed():
            changes |= {
                "error": event.reason,
                "failure_class": event.failure_class,
                "log_snippet": event.log_snippet,
                "log_uri": event.log_uri or view.log_uri,
            }
            entry.detail = event.reason
        case ev.TaskRetried():
            changes |= {"attempt": event.attempt, "not_before": event.not_before, "placement": None}
        case ev.LaunchDeferred():
            changes |= {"not_before": event.not_before, "placement": None}
            entry.detail = event.reason
        case ev.TaskErrored() | ev.TaskCancelled():
            changes |= {"error": event.reason}
        case ev.ResultsPublished() if event.attempt == view.attempt:
            changes |= {"log_uri": event.log_uri or view.log_uri, "mlflow_run_id": event.mlflow_run_id,
                        "mlflow_run_url": event.mlflow_run_url}
            if event.outcome == "finished":
                changes["artifacts"] = event.artifacts
    return view.model_copy(update=changes)

