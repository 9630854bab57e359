"""The fake's HTTP face: a plain ASGI app (served by uvicorn) with RunPod v2's routes.

Routes: ``/v2/pods`` (GET, POST), ``/v2/pods/{id}`` (GET, PATCH, DELETE),
``/v2/pods/{id}/action`` (POST), ``/v2/catalog/gpus[/{id}]`` (GET),
``/v2/account/ssh-keys`` (GET, PUT), ``/graphql`` (POST, ``myself`` only).
Every ``/v2`` call needs ``Authorization: Bearer <key>`` (401 otherwise); errors are
``application/problem+json``; authenticated answers carry ``RateLimit`` headers; every
answer carries ``x-request-id``.

Test controls, no auth: ``GET /_fake/ledger``; ``GET|POST /_fake/faults`` (a partial
``Faults`` object, plus an optional ``inject`` list of ``Injection`` objects);
``POST /_fake/inject``; ``POST /_fake/pods/{id}/kill`` (``{"status": "ERROR"}``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from pydantic import ValidationError

from . import catalog, validate
from .state import Faults, Injection, apply_update
from .validate import Problem

if TYPE_CHECKING:
    from .server import FakeRunpod

log = logging.getLogger(__name__)
ASGIApp = Callable[[dict[str, Any], Callable[[], Awaitable[dict[str, Any]]], Any], Awaitable[None]]


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        if not self.body:
            return {}
        try:
            return json.loads(self.body)
        except (ValueError, RecursionError):
            raise Problem(400, "request body is not valid JSON") from None


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


Handler = Callable[..., Awaitable[Reply]]


def build_app(fake: FakeRunpod) -> ASGIApp:
    """The ASGI callable serving ``fake``."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        query: dict[str, str] = {}
        for pair in scope.get("query_string", b"").decode().split("&"):
            if pair:
                key, _, value = pair.partition("=")
                query[unquote_plus(key)] = unquote_plus(value)
        request = Request(
            method=scope["method"],
            path=scope["path"],
            query=query,
            headers={k.decode().lower(): v.decode() for k, v in scope["headers"]},
            body=b"".join(chunks),
        )
        reply = await _dispatch(fake, request)
        await _send(send, reply)

    return app


async def _send(send: Any, reply: Reply) -> None:
    headers = dict(reply.headers)
    headers.setdefault("x-request-id", uuid.uuid4().hex)
    if reply.status == 204:
        payload = b""
    elif isinstance(reply.body, bytes):
        payload = reply.body
        headers["content-type"] = reply.content_type
    else:
        payload = json.dumps(reply.body).encode()
        headers["content-type"] = reply.content_type
    headers["content-length"] = str(len(payload))
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": reply.status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


def _problem(problem: Problem) -> Reply:
    return Reply(problem.status, problem.body(), problem.headers, "application/problem+json")


async def _dispatch(fake: FakeRunpod, request: Request) -> Reply:
    try:
        if request.path.startswith("/_fake/"):
            return await _route(_ADMIN_ROUTES, fake, request)
        if request.path != "/graphql" and not request.path.startswith("/v2/"):
            raise Problem(404, "resource not found")
        return await _api(fake, request)
    except Problem as problem:
        return _problem(problem)
    except Exception:
        log.exception("fake RunPod: %s %s failed", request.method, request.path)
        return _problem(Problem(500, "internal error in the fake RunPod"))


async def _api(fake: FakeRunpod, request: Request) -> Reply:
    """Auth, injected faults, rate limits, then the route."""
    graphql = request.path == "/graphql"
    auth = request.headers.get("authorization", "")
    if not auth.startswith("Bearer ") or not auth[7:]:
        if graphql:
            return Reply(401, {"errors": [{"message": "Unauthorized"}]})
        raise Problem(401, "missing bearer token")
    key_ok = auth[7:] == fake.api_key and not fake.faults.revoked
    if not key_ok and not graphql:
        raise Problem(401, "invalid token")
    injection = fake.take_injection(request.method, request.path)
    if injection is not None and not injection.apply_first:
        reply = _injected(injection)
    else:
        wait = fake.rate_limiter.take()
        if wait is not None:
            detail = "rate limit exceeded for the minute window"
            headers = {"Retry-After": str(math.ceil(wait))}
            reply = _problem(Problem(429, detail, headers=headers))
        elif graphql:
            reply = _graphql(fake, request, key_ok)
        else:
            try:
                reply = await _route(_ROUTES, fake, request)
            except Problem as problem:
                reply = _problem(problem)
        if injection is not None:
            reply = _injected(injection)
    if not graphql:
        reply.headers = {**fake.rate_limiter.headers(), **reply.headers}
    return reply


def _injected(injection: Injection) -> Reply:
    status = injection.status
    detail = injection.detail or {
        429: "rate limit exceeded for the minute window",
        402: validate.LOW_BALANCE,
    }.get(status, "injected fault")
    headers = {}
    if injection.retry_after is not None:
        headers["Retry-After"] = str(injection.retry_after)
    if injection.body == "html":
        page = f"<html><body><h1>{status} Bad Gateway</h1></body></html>".encode()
        return Reply(status, page, headers, "text/html")
    if injection.body == "v1":
        return Reply(status, {"error": detail, "status": status}, headers)
    if injection.body == "graphql":
        error = {
            "message": detail,
            "path": ["myself"],
            "extensions": {"code": "INTERNAL_SERVER_ERROR"},
        }
        return Reply(status, {"errors": [error], "data": {"myself": None}}, headers)
    return _problem(Problem(status, detail, headers=headers))


async def _route(routes: list[tuple[str, re.Pattern[str], Handler]], fake: FakeRunpod, request: Request) -> Reply:
    allowed = []
    for method, pattern, handler in routes:
        match = pattern.fullmatch(request.path)
        if match is None:
            continue
        if method == request.method:
            return await handler(fake, request, **match.groupdict())
        allowed.append(method)
    if allowed:
        raise Problem(
            405,
            "The requested method is not allowed for this path.",
            headers={"Allow": ", ".join(allowed)},
        )
    raise Problem(404, "resource not found")


# --- pods ---------------------------------------------------------------------------------


async def list_pods(fake: FakeRunpod, request: Request) -> Reply:
    validate.include_cluster_pods(request.query)  # the fake has no clusters: no member pods either way
    for pod in fake.pods():
        await fake.observe(pod)
    return Reply(200, {"pods": [pod.to_json(fake.clock()) for pod in fake.pods()]})


async def create_pod(fake: FakeRunpod, request: Request) -> Reply:
    pod = await fake.create(validate.create(request.json()))
    if fake.faults.create_answer_delay_s:
        await asyncio.sleep(fake.faults.create_answer_delay_s)
    return Reply(201, pod.to_json(fake.clock()))


async def get_pod(fake: FakeRunpod, request: Request, pod_id: str) -> Reply:
    pod = fake.find(pod_id)
    await fake.observe(pod)
    return Reply(200, pod.to_json(fake.clock()))


async def patch_pod(fake: FakeRunpod, request: Request, pod_id: str) -> Reply:
    update = validate.patch(request.json())
    pod = fake.find(pod_id)
    apply_update(pod, update)
    return Reply(200, pod.to_json(fake.clock()))


async def delete_pod(fake: FakeRunpod, request: Request, pod_id: str) -> Reply:
    await fake.terminate(fake.find(pod_id))
    return Reply(204)


async def pod_action(fake: FakeRunpod, request: Request, pod_id: str) -> Reply:
    action = validate.action(request.json())
    pod = fake.find(pod_id)
    await fake.act(pod, action)
    return Reply(204) if action == "terminate" else Reply(200, pod.to_json(fake.clock()))


# --- catalog and account ------------------------------------------------------------------


async def list_gpus(fake: FakeRunpod, request: Request) -> Reply:
    query = validate.gpu_query(request.query)
    offers = [g for g in catalog.GPUS if not query.include or catalog.in_countries(g, query.country_codes)]
    return Reply(200, {"gpus": [catalog.gpu_json(g, query, fake.faults.no_capacity) for g in offers]})


async def get_gpu(fake: FakeRunpod, request: Request, gpu_id: str) -> Reply:
    query = validate.gpu_query(request.query)
    offer = catalog.find(gpu_id)
    if offer is None:
        raise Problem(404, "resource not found")
    return Reply(200, catalog.gpu_json(offer, query, fake.faults.no_capacity))


async def get_ssh_keys(fake: FakeRunpod, request: Request) -> Reply:
    return Reply(200, {"keys": list(fake.ssh_keys)})


async def put_ssh_keys(fake: FakeRunpod, request: Request) -> Reply:
    fake.ssh_keys = validate.ssh_keys(request.json())
    return Reply(200, {"keys": list(fake.ssh_keys)})


_MYSELF_FIELDS = {
    "id",
    "email",
    "clientBalance",
    "currentSpendPerHr",
    "spendLimit",
    "notifyPodsStale",
    "notifyPodsGeneral",
    "notifyLowBalance",
}


def _graphql(fake: FakeRunpod, request: Request, key_ok: bool) -> Reply:
    """``query { myself { ... } }`` only; GraphQL business errors come with HTTP 200."""
    try:
        document = request.json().get("query", "")
    except (Problem, AttributeError):
        document = ""
    match = re.search(r"\bmyself\s*\{([^{}]*)\}", document if isinstance(document, str) else "")
    if match is None:
        message = "the fake RunPod GraphQL answers only query { myself { ... } }"
        return Reply(400, {"errors": [{"message": message}]})
    fields = re.findall(r"\w+", match.group(1))
    unknown = [f for f in fields if f not in _MYSELF_FIELDS]
    if unknown:
        errors = [{"message": f'Cannot query field "{f}" on type "User".'} for f in unknown]
        return Reply(400, {"errors": errors})
    if not key_ok:
        return Reply(200, {"data": {"myself": None}})
    values = {
        "id": "user_fake",
        "email": "fake@example.com",
        "clientBalance": round(fake.faults.balance, 6),
        "currentSpendPerHr": fake.spend_per_hour(),
        "spendLimit": 80,
        "notifyPodsStale": True,
        "notifyPodsGeneral": True,
        "notifyLowBalance": True,
    }
    return Reply(200, {"data": {"myself": {f: values[f] for f in fields}}})


# --- test controls ------------------------------------------------------------------------


async def get_ledger(fake: FakeRunpod, request: Request) -> Reply:
    return Reply(200, {"pods": [asdict(record) for record in fake.ledger()]})


async def get_faults(fake: FakeRunpod, request: Request) -> Reply:
    return Reply(200, fake.faults.model_dump(mode="json"))


async def post_faults(fake: FakeRunpod, request: Request) -> Reply:
    body = request.json()
    if not isinstance(body, dict):
        raise validate.unprocessable(["$: value must be an object"])
    injections = body.pop("inject", [])
    try:
        faults = Faults.model_validate({**fake.faults.model_dump(), **body})
        parsed = [Injection.model_validate(i) for i in injections]
    except ValidationError as exc:
        raise validate.unprocessable([e["msg"] for e in exc.errors()]) from None
    fake.faults = faults
    for injection in parsed:
        fake.inject(injection)
    return Reply(200, fake.faults.model_dump(mode="json"))


async def post_inject(fake: FakeRunpod, request: Request) -> Reply:
    try:
        injection = Injection.model_validate(request.json())
    except ValidationError as exc:
        raise validate.unprocessable([e["msg"] for e in exc.errors()]) from None
    fake.inject(injection)
    return Reply(200, injection.model_dump(mode="json"))


async def kill_pod(fake: FakeRunpod, request: Request, pod_id: str) -> Reply:
    pod = fake.find(pod_id)
    status = (request.json() or {}).get("status", "ERROR")
    if status not in ("ERROR", "EXITED"):
        raise validate.unprocessable(["$.status: value must be one of 'ERROR', 'EXITED'"])
    await fake.kill_pod(pod_id, status)
    return Reply(200, pod.to_json(fake.clock()))


_POD = r"/v2/pods/(?P<pod_id>[^/]+)"
_ROUTES: list[tuple[str, re.Pattern[str], Handler]] = [
    (method, re.compile(path), handler)
    for method, path, handler in (
        ("GET", "/v2/pods", list_pods),
        ("POST", "/v2/pods", create_pod),
        ("GET", _POD, get_pod),
        ("PATCH", _POD, patch_pod),
        ("DELETE", _POD, delete_pod),
        ("POST", _POD + "/action", pod_action),
        ("GET", "/v2/catalog/gpus", list_gpus),
        ("GET", r"/v2/catalog/gpus/(?P<gpu_id>[^/]+)", get_gpu),
        ("GET", "/v2/account/ssh-keys", get_ssh_keys),
        ("PUT", "/v2/account/ssh-keys", put_ssh_keys),
    )
]
_ADMIN_ROUTES: list[tuple[str, re.Pattern[str], Handler]] = [
    (method, re.compile(path), handler)
    for method, path, handler in (
        ("GET", "/_fake/ledger", get_ledger),
        ("GET", "/_fake/faults", get_faults),
        ("POST", "/_fake/faults", post_faults),
        ("POST", "/_fake/inject", post_inject),
        ("POST", r"/_fake/pods/(?P<pod_id>[^/]+)/kill", kill_pod),
    )
]
