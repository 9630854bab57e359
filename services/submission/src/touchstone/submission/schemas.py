"""HTTP request and response bodies (``<Noun>``, ``<Noun>Create``, ``<Noun>Update``).

Request bodies forbid unknown fields (422). Shapes and sizes are checked here; the rules that
need the service's policy live in ``rules``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from touchstone.shared.events import Platform
from touchstone.shared.system import RunPodStatus, Server
from touchstone.shared.views import SubmissionView, TaskView

Role = Literal["user", "admin"]


def _whole_number(value: Any) -> Any:
    """Refuse "60", 60.0 and true where a count of minutes belongs (whatever the strictness the
    framework validates with)."""
    if type(value) is not int:
        raise ValueError("must be a whole number")
    return value


WholeNumber = Annotated[int, BeforeValidator(_whole_number)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SubmissionCreate(_Body):
    git_url: str = Field(max_length=2048, description="https://, ssh:// or git@host:org/repo.git")
    git_ref: str = Field("main", max_length=200, description="branch, tag or commit")
    feature_set_path: str = Field(".", max_length=256, description="the feature set's folder in the repo")
    name: str | None = Field(None, max_length=120, description="a display name; default: the repo's")


class ScheduleCreate(_Body):
    config_file: str = Field("configs/default.toml", max_length=256)
    trainer_ref: str = Field("main", max_length=200)
    prediction_intervals: list[WholeNumber] = Field(min_length=1, max_length=64, description="minutes")
    fetched_data_end_to: datetime | None = None
    passthrough_args: list[str] | str | None = Field(
        None, description="an argv list, or one string split shell-style; never run by a shell"
    )
    platform: Platform = "any"
    gpu_type: str | None = Field(None, max_length=80)
    priority: int = Field(0, ge=-100, le=100)


class SubmissionPage(BaseModel):
    items: list[SubmissionView]
    next_cursor: str | None = None


class TaskDetail(TaskView):
    artifact_links: dict[str, str] = Field(default_factory=dict, description="name -> download path")
    log_link: str = ""


class SubmissionDetail(SubmissionView):
    tasks: list[TaskDetail] = Field(default_factory=list)


class TaskPage(BaseModel):
    items: list[TaskDetail]
    next_cursor: str | None = None


class PlannedTask(BaseModel):
    task_id: str
    prediction_interval: int
    status: str = "QUEUED"


class ScheduleAccepted(BaseModel):
    submission: SubmissionView
    tasks: list[PlannedTask]


class System(BaseModel):
    runpod_max_running_tasks: int
    servers: list[Server]
    scheduler_paused: bool
    revision: int = Field(description="give it back in PATCH to change only what you saw")


class RunPodReport(BaseModel):
    """What the RunPod provider last reported (``GET /api/v1/system/runpod``)."""

    reporting: bool = Field(description="false: no RunPod provider has reported (none runs, or no API key)")
    age_s: float | None = Field(None, description="seconds since the report was written")
    status: RunPodStatus | None = None


class SystemUpdate(_Body):
    runpod_max_running_tasks: int | None = Field(None, ge=0, le=1000)
    servers: list[Server] | None = Field(None, max_length=1000)
    scheduler_paused: bool | None = None
    revision: int | None = Field(None, ge=0, description="fail with 409 if the settings moved past it")


class TokenCreate(_Body):
    user: str = Field(pattern=r"^[A-Za-z0-9_.@+-]{1,64}$", description="the user the token acts as")
    role: Role = "user"
    description: str = Field("", max_length=200)


class Token(BaseModel):
    id: str
    user: str
    role: Role
    description: str = ""
    created_at: datetime
    created_by: str


class TokenCreated(Token):
    secret: str = Field(description="shown once; only its hash is stored")


class StatusChange(BaseModel):
    """One event of the live feed (``GET /api/v1/events``)."""

    type: str
    submission_id: str
    task_id: str | None = None
    status: str | None = None
    occurred_at: datetime
    seq: int = 0


class Health(BaseModel):
    status: str
    checks: dict[str, Any] = Field(default_factory=dict)
