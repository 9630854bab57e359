"""HTTP request and response bodies (``<Noun>``, ``<Noun>Create``, ``<Noun>Update``).

Request bodies are strict (no coercion: ``0`` is not a boolean, ``"60"`` not a number) and
forbid unknown fields (422). Every limit ``rules`` enforces that a JSON schema can say is said
here, as a length, a range or a pattern, so the OpenAPI document refuses what the API refuses;
what needs the service's policy (denied hosts and networks, local paths) stays in ``rules``.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from touchstone.shared.agentaccess import BASE64_PATTERN, MAX_ARGS, MAX_PUT_BYTES, MAX_TIMEOUT_S, Arg, RelPath
from touchstone.shared.errors import InvalidInputError
from touchstone.shared.events import Platform
from touchstone.shared.system import RunPodStatus, Server
from touchstone.shared.views import SubmissionView, TaskView
from touchstone.submission import rules

Role = Literal["user", "admin"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,40}[A-Za-z0-9])?"
_HOST = rf"[A-Za-z](?:[A-Za-z0-9-]{{0,40}}[A-Za-z0-9])?(?:\.{_LABEL}){{0,4}}"
_PORT = r"(?::(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?"  # 1-65535
_REPO = r"[A-Za-z0-9._~%+=,@-][A-Za-z0-9._~%+=,@/-]*"
_USER = r"[A-Za-z0-9_][A-Za-z0-9._-]*"
# remote git URLs (what ``rules.check_git_url`` accepts, host names only, no address literals)
REMOTE_GIT_URL = rf"^(?:https://{_HOST}{_PORT}/{_REPO}|ssh://(?:{_USER}@)?{_HOST}{_PORT}/{_REPO}|{_USER}@{_HOST}:{_REPO})$"
# an absolute local path (only where ``allow_local_sources`` is on; the document says so)
LOCAL_PATH = r"/[!-~]*"
# a git server on this machine's loopback (the same switch: an embedded `touchstone up`)
LOOPBACK_GIT_URL = rf"(?:http|git)://(?:localhost|127\.0\.0\.1|\[::1\]){_PORT}/{_REPO}"
GIT_URL = rf"^(?:{REMOTE_GIT_URL[1:-1]}|{LOCAL_PATH}|{LOOPBACK_GIT_URL})$"
_GIT_URL = re.compile(GIT_URL)
_SEGMENT = r"(?:\.|\.?[A-Za-z0-9_+,=-][A-Za-z0-9_.+,=-]*)"
RELATIVE_PATH = rf"^(?:\.|[A-Za-z0-9_+,=]|\.?[A-Za-z0-9_+,=][A-Za-z0-9_.+,=-]*)(?:/{_SEGMENT})*$"
GIT_REF = r"^[A-Za-z0-9_+,=%][A-Za-z0-9_+,=%-]*(?:[./][A-Za-z0-9_+,=%-]+)*$"
NAME = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
GPU_TYPE = r"^[A-Za-z0-9][A-Za-z0-9 _.()-]{0,79}$"
# quotes only in balanced pairs and no backslashes: splitting it shell-style can never fail
ARGS_STRING = r"^(?:[^'\"\\\x00]|'[^'\x00]*'|\"[^\"\\\x00]*\")*$"
ARG = r"^[ -~]*$"

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([Zz]|[+-]\d{2}:\d{2})?$")


def _rfc3339(value: Any) -> Any:
    """A JSON date-time (RFC 3339; without an offset it is read as UTC) as a datetime; the
    models are strict, which would refuse every string."""
    if isinstance(value, str):
        if not _RFC3339.match(value):
            raise ValueError("must be an RFC 3339 date-time, e.g. 2026-01-31T00:00:00Z")
        return datetime.fromisoformat(value.upper())
    return value


DateTime = Annotated[datetime, BeforeValidator(_rfc3339)]
def _integral(value: Any) -> Any:
    """JSON Schema's integer: 60.0 is 60 (a number with no fraction); "60" and true stay refused."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def Integer(**limits: Any) -> Any:
    """A strict integer as JSON Schema has it, with ``Field`` limits (ge, le)."""
    return Annotated[int, Field(**limits), BeforeValidator(_integral)]


Minutes = Integer(ge=1, le=1_000_000)


class ServerUpdate(Server):
    """An on-prem server as an admin declares it in ``PATCH /api/v1/system`` (strict)."""

    model_config = ConfigDict(strict=True)

    num_slots: Integer(ge=0, le=64) = Field(1, description="tasks at once; one GPU each; 0 pauses it")  # type: ignore[valid-type]


def _git_url_form(value: str) -> str:
    """``GIT_URL``'s forms only, with the reason ``rules`` gives where it has one (file://,
    transport helpers, credentials...) rather than "should match pattern"."""
    if _GIT_URL.match(value):
        return value
    try:
        rules.check_git_url(value, rules.SourcePolicy(allow_local=True))
    except InvalidInputError as e:
        raise ValueError(str(e).removeprefix("git_url: ")) from None
    raise ValueError("use https://host/org/repo.git, ssh://host/org/repo.git or git@host:org/repo.git")


class SubmissionCreate(_Body):
    git_url: Annotated[str, AfterValidator(_git_url_form)] = Field(
        min_length=1,
        max_length=2048,
        description="https://, ssh:// or git@host:org/repo.git",
        json_schema_extra={"pattern": GIT_URL},
    )
    git_ref: str = Field("main", min_length=1, max_length=200, pattern=GIT_REF, description="branch, tag or commit")
    feature_set_path: str = Field(
        ".", min_length=1, max_length=256, pattern=RELATIVE_PATH, description="the feature set's folder in the repo"
    )
    name: str | None = Field(
        None, min_length=1, max_length=120, pattern=NAME, description="a display name; default: the repo's"
    )


class ScheduleCreate(_Body):
    config_file: str = Field("configs/default.toml", min_length=1, max_length=256, pattern=RELATIVE_PATH)
    trainer_ref: str = Field("main", min_length=1, max_length=200, pattern=GIT_REF)
    prediction_intervals: list[Minutes] = Field(
        min_length=1, max_length=64, description="minutes, each once", json_schema_extra={"uniqueItems": True}
    )
    fetched_data_end_to: DateTime | None = Field(None, description="RFC 3339; without an offset, UTC")
    passthrough_args: (
        Annotated[list[Annotated[str, Field(max_length=64, pattern=ARG)]], Field(max_length=64)]
        | Annotated[str, Field(max_length=4096, pattern=ARGS_STRING)]
        | None
    ) = Field(None, description="an argv list, or one string split shell-style; never run by a shell")
    platform: Platform = "any"
    gpu_type: str | None = Field(None, max_length=80, pattern=GPU_TYPE)
    priority: Integer(ge=-100, le=100) = 0  # type: ignore[valid-type]
    run_timeout_s: Integer(ge=60, le=7 * 24 * 3600) | None = Field(  # type: ignore[valid-type]
        None, description="seconds one training attempt may run before it is stopped (failure class timeout); "
                          "default: the platform's"
    )


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
    runpod_max_running_tasks: Integer(ge=0, le=1000) | None = None  # type: ignore[valid-type]
    servers: list[ServerUpdate] | None = Field(None, max_length=1000)
    scheduler_paused: bool | None = None
    revision: Integer(ge=0) | None = Field(None, description="fail with 409 if the settings moved past it")  # type: ignore[valid-type]


class TokenCreate(_Body):
    user: str = Field(pattern=r"^[A-Za-z0-9_.@+-]{1,64}$", description="the user the token acts as")
    role: Role = "user"
    description: str = Field("", max_length=200)


# operator access to an agent's host (``agent_access``)


class AgentExecCreate(_Body):
    argv: list[Arg] = Field(min_length=1, max_length=MAX_ARGS, description="the program and its arguments; no shell")
    timeout_s: float = Field(30.0, gt=0, le=MAX_TIMEOUT_S, description="killed (with its session) after this")


class AgentFilePut(_Body):
    path: RelPath = Field(description="relative to the agent's operator_root")
    data: str = Field(max_length=(MAX_PUT_BYTES + 2) // 3 * 4, pattern=BASE64_PATTERN,
                      description=f"the file's bytes, base64 (at most {MAX_PUT_BYTES} bytes)")


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
