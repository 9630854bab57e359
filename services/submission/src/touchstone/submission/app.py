"""The HTTP API: ``create_app(deps)`` builds the Litestar app.

Handlers name what they need: ``deps`` (what their route group uses: each group's router
provides its own, see ``deps.py``; the health routes and the UI get the whole ``Deps``),
``principal`` (any signed-in caller) or ``admin`` (an admin; others get 403). Errors become
problem details in ``problems`` only.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from litestar import Litestar, Request, Response, Router, asgi, get
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.enums import ScopeType
from litestar.openapi import OpenAPIConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Components, SecurityScheme
from litestar.params import Parameter
from litestar.plugins.pydantic import PydanticPlugin
from litestar.response import ServerSentEvent
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CONTENT_TYPE_LATEST
from touchstone.shared import metrics
from touchstone.shared.objects.server import upload_app
from touchstone.shared.objects.stores import LocalObjectStore
from touchstone.submission import admin, agent_access, contract, evaluations, routes, ui
from touchstone.submission.auth import Forbidden
from touchstone.submission.deps import (
    AdminDeps,
    AgentAccessDeps,
    Deps,
    DepsArg,
    EvaluationsDeps,
    PrincipalArg,
    RoutesArg,
    RoutesDeps,
)
from touchstone.submission.domain import Principal
from touchstone.submission.idempotency import idempotency_middleware
from touchstone.submission.problems import documented, problem_response
from touchstone.submission.schemas import Health

REQUESTS = metrics.histogram("http_request_seconds", "HTTP requests by route and status", ("method", "route", "status"))
PUBLIC: list[dict[str, list[str]]] = []


@get(
    "/api/v1/events",
    summary="Live status changes (server-sent events)",
    tags=["events"],
    responses=documented(400, 401),
)
async def events(
    deps: RoutesArg,
    principal: PrincipalArg,
    submission_id: Annotated[str | None, Parameter(max_length=64, description="only this submission")] = None,
) -> ServerSentEvent:
    return routes.status_events(deps, principal, submission_id)


@get("/healthz", summary="Liveness", tags=["health"], security=PUBLIC)
async def healthz() -> Health:
    return Health(status="ok")


@get(
    "/readyz",
    summary="Readiness: NATS, the store and the background loops",
    tags=["health"],
    security=PUBLIC,
    responses={503: ResponseSpec(Health, description="Not ready: the checks say which part failed")},
)
async def readyz(deps: DepsArg) -> Response[Health]:
    checks: dict[str, Any] = {"nats": deps.nc.is_connected}
    try:
        await asyncio.wait_for(deps.store.ping(), timeout=2.0)
        checks["store"] = True
    except Exception as e:
        checks["store"] = f"{type(e).__name__}: {e}"
    checks.update(deps.healthy_loops())
    ok = all(v is True for v in checks.values())
    return Response(Health(status="ok" if ok else "unavailable", checks=checks), status_code=200 if ok else 503)


@get(
    "/metrics",
    summary="Prometheus metrics",
    tags=["health"],
    media_type=CONTENT_TYPE_LATEST,
    security=PUBLIC,
    include_in_schema=False,
)
async def prometheus_metrics() -> Response[bytes]:
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)


def _metrics_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_wrapper)
        finally:
            route = scope.get("path_template") or "unmatched"
            REQUESTS.labels(scope.get("method", ""), route, str(status)).observe(time.perf_counter() - started)

    return middleware


def _authorization(scope: Scope) -> str | None:
    """The Authorization header, read straight from the scope (ASGI servers lower-case names),
    without building the request's whole header map."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            return value.decode("latin-1")
    return None


def _idempotency(deps: Deps) -> list[Any]:
    if deps.idempotency is None:
        return []
    return [idempotency_middleware(deps.idempotency, deps.settings.max_body_bytes)]


def _object_uploads(deps: Deps) -> list[Any]:
    """``PUT /objects/{key}``: producers' uploads into the embedded (local) store, each checked
    against its signed grant (``touchstone.shared.objects.server``); none with S3, where the
    producers post to the bucket itself."""
    store = deps.objects
    if not isinstance(store, LocalObjectStore) or store.signer is None:
        return []
    uploads = upload_app(store, store.signer)

    @asgi("/objects", is_mount=True, include_in_schema=False, copy_scope=True)
    async def objects(scope: Scope, receive: Receive, send: Send) -> None:
        await uploads(scope, receive, send)  # type: ignore[arg-type]

    return [objects]


def _group(deps: object, handlers: list[Any]) -> Router:
    """Routes that get ``deps``, their group's part of the service, under that name."""

    async def provide_group_deps() -> Any:
        return deps

    return Router(path="/", route_handlers=handlers, dependencies={"deps": Provide(provide_group_deps)})


def create_app(deps: Deps, *, debug: bool = False) -> Litestar:
    """The API over ``deps``; its lifespan starts and stops ``deps``' background loops."""

    async def provide_deps() -> Deps:
        return deps

    auth = deps.auth

    async def provide_principal(request: Request[Any, Any, State], deps: NamedDependency[Any]) -> Principal:
        # naming ``deps`` (whichever the route's group provides) chains the two: Litestar resolves
        # a batch of independent dependencies in an anyio task group, a fifth of a read's time
        return await auth.authenticate(_authorization(request.scope))

    async def provide_admin(principal: PrincipalArg) -> Principal:
        if not principal.is_admin:
            raise Forbidden("admins only")
        return principal

    @contextlib.asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        deps.start()
        try:
            yield
        finally:
            await deps.close()

    app = Litestar(
        route_handlers=[
            _group(RoutesDeps.of(deps), [*routes.ROUTES, events]),
            _group(EvaluationsDeps(deps.store), evaluations.ROUTES),
            _group(AdminDeps(deps.system, deps.tokens), admin.ROUTES),
            _group(AgentAccessDeps(deps.nc, deps.publisher, deps.subjects), agent_access.ROUTES),
            healthz, readyz, prometheus_metrics, *ui.routes(deps), *_object_uploads(deps),
        ],
        dependencies={
            "deps": Provide(provide_deps),
            "principal": Provide(provide_principal),
            "admin": Provide(provide_admin),
        },
        exception_handlers={Exception: problem_response},
        # request bodies validate strictly (their own config says so; Litestar's default
        # plugin would override it with lax validation): 0 is not a boolean, "1" not a number
        plugins=[PydanticPlugin(validate_strict=True)],
        middleware=[_metrics_middleware, contract.allow_middleware, *_idempotency(deps)],
        lifespan=[lifespan],
        request_max_body_size=deps.settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Touchstone API",
            version="1",
            path="/schema",
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(type="http", scheme="bearer", description="API token or OIDC JWT")
                }
            ),
            security=[{"bearer": []}],
        ),
        debug=debug,
        logging_config=None,  # logging is the process's (touchstone.shared.logs), not Litestar's
    )
    contract.tell_the_truth(app, deps.settings)
    return app
