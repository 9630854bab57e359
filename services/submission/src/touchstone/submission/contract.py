"""The OpenAPI document tells the truth: what the framework generates, corrected where it says
less than the API does (clients are generated from it, and schemathesis holds us to it).

- every error answer is ``application/problem+json`` with the ``Problem`` schema (the framework
  documents its own 400 as ``application/json``);
- every operation with a body also answers 400 (malformed JSON) and 413 (too large); every
  operation that needs a token answers 401;
- the streams say ``text/event-stream`` (and the log ``text/plain`` when not following);
- operations that need no token (``/healthz``, ``/readyz``) say ``security: []``;
- request bodies are described by pydantic's own JSON schema of the model that validates them
  (every length, range, pattern, ``additionalProperties: false``); where local sources are off,
  ``git_url`` states the remote forms only;
- ``OPTIONS`` answers with an ``Allow`` header listing every method of the path (Litestar's own
  lists only the methods of the first handler registered for a path).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from litestar import Litestar
from litestar.enums import ScopeType
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, Operation, Reference, Schema
from litestar.routes import HTTPRoute
from litestar.types import ASGIApp, Receive, Scope, Send
from pydantic import BaseModel
from touchstone.submission.config import SubmissionSettings
from touchstone.submission.problems import PROBLEM_JSON
from touchstone.submission.schemas import (
    REMOTE_GIT_URL,
    AgentExecCreate,
    AgentFilePut,
    ScheduleCreate,
    SubmissionCreate,
    SystemUpdate,
    TokenCreate,
)

REQUEST_BODIES: tuple[type[BaseModel], ...] = (SubmissionCreate, ScheduleCreate, SystemUpdate, TokenCreate,
                                               AgentExecCreate, AgentFilePut)

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
STREAMS = {
    "/api/v1/events": ("text/event-stream",),
    "/api/v1/submissions/{submission_id}/tasks/{task_id}/logs": ("text/plain", "text/event-stream"),
}
_PROBLEM = Reference(ref="#/components/schemas/Problem")


def tell_the_truth(app: Litestar, settings: SubmissionSettings) -> None:
    """Correct ``app``'s OpenAPI document in place (before it is first served)."""
    schema = app.openapi_schema
    public = _public_operations(app)
    for path, item in (schema.paths or {}).items():
        for method in METHODS:
            operation: Operation | None = getattr(item, method, None)
            if operation is None:
                continue
            if (path, method.upper()) in public:
                operation.security = []
            if (path, method.upper()) not in public:  # the public ones answer in their own shape
                _complete_responses(operation)
            if path in STREAMS:
                _stream(operation, STREAMS[path])
    components = schema.components.schemas if schema.components.schemas is not None else {}
    for model in REQUEST_BODIES:
        _from_pydantic(components, model)
    create = components.get(SubmissionCreate.__name__)
    if isinstance(create, dict) and not settings.allow_local_sources:
        create["properties"]["git_url"]["pattern"] = REMOTE_GIT_URL
    schema.components.schemas = components


def _from_pydantic(components: dict[str, Any], model: type[BaseModel]) -> None:
    """The request body's schema as pydantic validates it (every length, range, pattern and
    ``additionalProperties: false``; the framework's own generator drops most of them)."""
    raw = model.model_json_schema(ref_template="#/components/schemas/{model}", mode="validation")
    for name, definition in raw.pop("$defs", {}).items():
        components[name] = definition
    components[model.__name__] = raw


def _public_operations(app: Litestar) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            if handler.security is not None and not handler.security:
                found |= {(route.path_format, m) for m in handler.http_methods}
    return found


def _problem(code: int) -> OpenAPIResponse:
    return OpenAPIResponse(
        description=HTTPStatus(code).phrase,
        content={PROBLEM_JSON: OpenAPIMediaType(schema=_PROBLEM)},
    )


def _complete_responses(operation: Operation) -> None:
    responses = operation.responses if operation.responses is not None else {}
    wanted = {401}
    if operation.request_body is not None:
        wanted |= {400, 413}
    for code in wanted:
        responses.setdefault(str(code), _problem(code))
    for code, response in list(responses.items()):
        if code.isdigit() and int(code) >= 400 and isinstance(response, OpenAPIResponse):
            responses[code] = _problem(int(code))
    operation.responses = responses


def _stream(operation: Operation, media_types: tuple[str, ...]) -> None:
    ok = (operation.responses or {}).get("200")
    if isinstance(ok, OpenAPIResponse):
        ok.content = {m: OpenAPIMediaType(schema=Schema(type="string")) for m in media_types}  # type: ignore[arg-type]


def allow_middleware(app: ASGIApp) -> ASGIApp:
    """Answer ``OPTIONS`` with every method the path has (``Allow``), as the document lists them."""
    allowed: dict[str, str] = {}

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope.get("method") != "OPTIONS":
            await app(scope, receive, send)
            return
        if not allowed:
            allowed.update(_allowed_methods(scope["app"]))
        methods = allowed.get(scope.get("path_template") or "")
        if methods is None:
            await app(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 204, "headers": [(b"allow", methods.encode())]})
        await send({"type": "http.response.body", "body": b""})

    return middleware


def _allowed_methods(app: Any) -> dict[str, str]:
    table: dict[str, set[str]] = {}
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            table.setdefault(route.path_format, set()).update(route.methods)
    return {path: ", ".join(sorted(methods | {"OPTIONS"})) for path, methods in table.items()}
