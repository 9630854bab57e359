"""Operator access to an agent's host over the API (admin only, audited as events): run one
command (argv, no shell), read or write one file under the agent's ``operator_root``.

Each request is recorded as ``AgentAccessRequested`` before it is sent and
``AgentAccessFinished`` after (refused, failed or done), on the agent's aggregate
(``{ns}.evt.agent.{host}.*``); then it goes to the agent as a core-NATS request on its command
subject. The agent answers only when its own settings opt in (``touchstone.shared.agentaccess``),
so an admin token alone opens no host.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Annotated

from litestar import get, post, put
from litestar.params import JSONBody, Parameter
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from pydantic import BaseModel, Field, ValidationError
from touchstone.shared import events as ev
from touchstone.shared.agentaccess import PATH_PATTERN, AgentExec, AgentGetFile, AgentPutFile, OperatorReply
from touchstone.shared.errors import InvalidInputError, NotFoundError, UnavailableError
from touchstone.submission.auth import Forbidden
from touchstone.submission.deps import AgentAccessArg, AgentAccessDeps, PrincipalArg
from touchstone.submission.domain import Principal
from touchstone.submission.problems import documented
from touchstone.submission.schemas import AgentExecCreate, AgentFilePut

PREFIX = "/api/v1/agents"
HOST_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
Host = Annotated[str, Parameter(pattern=HOST_PATTERN, max_length=128, description="the agent's host name")]
REPLY_GRACE_S = 5.0


class AgentExecResult(BaseModel):
    host: str
    exit_code: int | None = Field(description="None when it was killed at its deadline")
    timed_out: bool
    stdout: str = Field(description="base64 of the first 64 KiB")
    stderr: str = Field(description="base64 of the first 64 KiB")
    stdout_bytes: int = Field(description="the whole output's length, kept or not")
    stderr_bytes: int


class AgentFile(BaseModel):
    host: str
    path: str
    size: int
    data: str = Field(description="base64 (get only)")


async def _ask(deps: AgentAccessDeps, host: str, admin: Principal, request: AgentExec | AgentGetFile | AgentPutFile,
               timeout_s: float) -> OperatorReply:
    """Record, send, record the answer; the answer, or the agent's refusal (403), or no such
    agent connected (404), or no answer in time (503)."""
    action = {"AgentExec": "exec", "AgentGetFile": "get", "AgentPutFile": "put"}[request.type]
    common = {"aggregate_id": host, "correlation_id": host, "causation_id": request.request_id,
              "action": action, "requested_by": admin.name}
    await deps.publisher.append(ev.AgentAccessRequested(
        **common, argv=tuple(getattr(request, "argv", ())), path=getattr(request, "path", None),
        size=len(base64.b64decode(request.data)) if isinstance(request, AgentPutFile) else None,
    ))
    payload = request.model_dump_json().encode()
    try:
        msg = await deps.nc.request(deps.subjects.agent_commands(host), payload, timeout=timeout_s)
        reply = OperatorReply.model_validate_json(msg.data)
    except NoRespondersError:
        why = f"agent {host} is not connected"
        await deps.publisher.append(ev.AgentAccessFinished(**common, ok=False, error=why))
        raise NotFoundError(why) from None
    except (NatsTimeoutError, TimeoutError, ValidationError):
        why = f"agent {host} did not answer"
        await deps.publisher.append(ev.AgentAccessFinished(**common, ok=False, error=why))
        raise UnavailableError(why) from None
    await deps.publisher.append(ev.AgentAccessFinished(
        **common, ok=reply.ok, error=reply.error, exit_code=reply.exit_code, timed_out=reply.timed_out,
        output_bytes=reply.stdout_bytes + reply.stderr_bytes, size=reply.size if action != "exec" else None,
    ))
    if not reply.ok:
        raise Forbidden(f"agent {host} refused: {reply.error or 'no reason given'}")
    return reply


@post(f"{PREFIX}/{{host:str}}/exec", status_code=200, tags=["agents"],
      summary="Run one command (argv, no shell) on an agent's host that opted in; audited (admin)",
      responses=documented(401, 403, 404, 413, 422))
async def agent_exec(host: Host,
                     data: JSONBody[AgentExecCreate], deps: AgentAccessArg, admin: PrincipalArg) -> AgentExecResult:
    request = AgentExec(argv=data.argv, timeout_s=data.timeout_s, requested_by=admin.name)
    reply = await _ask(deps, host, admin, request, data.timeout_s + REPLY_GRACE_S)
    return AgentExecResult(host=host, exit_code=reply.exit_code, timed_out=reply.timed_out, stdout=reply.stdout,
                           stderr=reply.stderr, stdout_bytes=reply.stdout_bytes, stderr_bytes=reply.stderr_bytes)


@get(f"{PREFIX}/{{host:str}}/file", tags=["agents"],
     summary="Read one file under an agent's operator_root (at most 512 KiB); audited (admin)",
     responses=documented(400, 401, 403, 404))
async def agent_get(host: Host,
                    path: Annotated[str, Parameter(max_length=1024, pattern=PATH_PATTERN,
                                                   description="relative to the agent's operator_root")],
                    deps: AgentAccessArg, admin: PrincipalArg) -> AgentFile:
    request = _valid(lambda: AgentGetFile(path=path, requested_by=admin.name), status=400)
    assert isinstance(request, AgentGetFile)
    reply = await _ask(deps, host, admin, request, REPLY_GRACE_S * 2)
    return AgentFile(host=host, path=path, size=reply.size, data=reply.data)


@put(f"{PREFIX}/{{host:str}}/file", tags=["agents"],
     summary="Write one file under an agent's operator_root (at most 32 KiB); audited (admin)",
     responses=documented(401, 403, 404, 413, 422))
async def agent_put(host: Host,
                    data: JSONBody[AgentFilePut], deps: AgentAccessArg, admin: PrincipalArg) -> AgentFile:
    request = _valid(lambda: AgentPutFile(path=data.path, data=data.data, requested_by=admin.name))
    assert isinstance(request, AgentPutFile)
    reply = await _ask(deps, host, admin, request, REPLY_GRACE_S * 2)
    return AgentFile(host=host, path=data.path, size=reply.size, data="")


def _valid(build: Callable[[], BaseModel], status: int = 422) -> BaseModel:
    """The request ``build`` makes; a value the agent's model refuses is answered here (a query
    parameter with 400, a body field with 422), never sent."""
    try:
        return build()
    except ValidationError as e:
        error = InvalidInputError(f"path: {e.errors()[0]['msg']}")
        error.status_code = status  # type: ignore[attr-defined]
        raise error from None


ROUTES = [agent_exec, agent_get, agent_put]
