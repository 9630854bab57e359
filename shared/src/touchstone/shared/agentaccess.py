"""Operator access to an agent's host: run one command (argv, never a shell), read or write
one file. The seed's debugging aid, made safe enough to keep:

* off by default: an agent answers only when its own settings opt in (``operator_access``);
  files only under its ``operator_root``;
* admin-only and audited: requests come from the API (``POST /api/v1/agents/{host}/exec``,
  ``GET``/``PUT /api/v1/agents/{host}/file``), which checks the admin role and appends
  ``AgentAccessRequested`` before and ``AgentAccessFinished`` after, as events;
* bounded: argv size, a deadline, the output kept, file sizes; a path is relative, made of
  plain names, and followed without symlinks.

These models travel on the agent's own command subject (``{ns}.agent.{host}.cmd``), beside
``LaunchTask``/``TerminateTask``, as core-NATS request/reply.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter

MAX_ARGS = 32
MAX_ARG_CHARS = 512
"""Printable ASCII only, so that the largest request (JSON-escaped) fits the API's 64 KiB body."""
MAX_OUTPUT_BYTES = 64 * 1024
"""Per stream (stdout, stderr): what is kept of a command's output; the rest is counted."""
MAX_TIMEOUT_S = 300.0
MAX_GET_BYTES = 512 * 1024
"""Largest file ``get`` reads (its base64 fits a NATS message of the default 1 MiB)."""
MAX_PUT_BYTES = 32 * 1024
"""Largest file ``put`` writes (its base64 fits the API's default request body)."""
OPERATOR_TYPES = frozenset({"AgentExec", "AgentGetFile", "AgentPutFile"})

Arg = Annotated[str, StringConstraints(max_length=MAX_ARG_CHARS, pattern=r"^[ -~]*$")]


def _plain_names(path: str) -> str:
    if any(part in (".", "..") for part in path.split("/")):
        raise ValueError("a path names no '.' or '..'")
    return path


PATH_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*(/[A-Za-z0-9_-][A-Za-z0-9_.-]*){0,15}$"
"""Plain names that start with no dot (so never ``.`` or ``..``; hidden files are out of reach)."""
BASE64_PATTERN = r"^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
RelPath = Annotated[str, StringConstraints(max_length=1024, pattern=PATH_PATTERN), AfterValidator(_plain_names)]
"""A relative path of at most 16 plain names (no ``.``/``..``, no leading ``/``)."""
B64 = Annotated[str, StringConstraints(max_length=MAX_GET_BYTES * 4 // 3 + 8, pattern=BASE64_PATTERN)]
Who = Annotated[str, StringConstraints(max_length=200)]


class _Request(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    request_id: str = Field(default_factory=lambda: uuid.uuid4().hex, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    requested_by: Who = ""


class AgentExec(_Request):
    type: Literal["AgentExec"] = "AgentExec"
    argv: list[Arg] = Field(min_length=1, max_length=MAX_ARGS)
    timeout_s: float = Field(30.0, gt=0, le=MAX_TIMEOUT_S)


class AgentGetFile(_Request):
    type: Literal["AgentGetFile"] = "AgentGetFile"
    path: RelPath


class AgentPutFile(_Request):
    type: Literal["AgentPutFile"] = "AgentPutFile"
    path: RelPath
    data: B64 = Field(description="the file's bytes, base64")


OperatorRequest = Annotated[AgentExec | AgentGetFile | AgentPutFile, Field(discriminator="type")]
OPERATOR_ADAPTER: TypeAdapter[AgentExec | AgentGetFile | AgentPutFile] = TypeAdapter(OperatorRequest)


class OperatorReply(BaseModel):
    """The agent's answer. ``ok`` false: refused or failed before anything ran (``error``)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    ok: bool
    error: Annotated[str, StringConstraints(max_length=2000)] | None = None
    exit_code: int | None = None
    timed_out: bool = False
    stdout: B64 = ""
    stderr: B64 = ""
    stdout_bytes: int = Field(0, ge=0, description="all the output, kept or not")
    stderr_bytes: int = Field(0, ge=0)
    data: B64 = Field("", description="get: the file's bytes, base64")
    size: int = Field(0, ge=0, description="get/put: the file's size")
