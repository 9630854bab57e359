"""The one place errors become HTTP: RFC 9457 problem details for every exception.

| error                                   | status            |
|-----------------------------------------|-------------------|
| ``InvalidInputError``                   | 422 (400 for query parameters) |
| request body fails its schema           | 422 (other parameters: 400)    |
| ``NotFoundError``                       | 404               |
| ``AuthError``                           | 401, or 403 for ``Forbidden``  |
| ``IllegalTransition``, ``ConcurrencyConflict`` | 409        |
| ``QuotaExceeded``                       | 429 with Retry-After |
| ``RetryableError``                      | 503 with Retry-After |
| Litestar's own (404 route, 405, 413...) | its status        |
| anything else                           | 500 (logged)      |
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from pydantic import BaseModel
from touchstone.shared.errors import (
    AuthError,
    ConcurrencyConflict,
    IllegalTransition,
    InvalidInputError,
    NotFoundError,
    QuotaExceeded,
    RetryableError,
)

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class Problem(BaseModel):
    """An error, as RFC 9457 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None


def documented(*codes: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the problem responses a route may give."""
    return {
        code: ResponseSpec(
            data_container=Problem,
            description=HTTPStatus(code).phrase,
            media_type=PROBLEM_JSON,
            generate_examples=False,
        )
        for code in sorted({*codes, 503})
    }


class BadQuery(InvalidInputError):
    """A query parameter we cannot use (HTTP 400)."""

    status_code = 400


def _classify(exc: Exception) -> tuple[int, str, dict[str, Any]]:
    """(status, detail, extra members) for one exception."""
    match exc:
        case ValidationException():
            errors = exc.extra if isinstance(exc.extra, list) else []
            # a body that fails its model has errors keyed by field, with no or a "body" source
            in_body = bool(errors) and all(e.get("source") in (None, "body") for e in errors if isinstance(e, dict))
            parts = [
                f"{e.get('key') or e.get('source', '')}: {e.get('message')}" for e in errors if isinstance(e, dict)
            ]
            detail = "; ".join(parts) or exc.detail
            return (422 if in_body else 400), detail, {"errors": errors}
        case HTTPException() if exc.status_code < 500:
            return exc.status_code, exc.detail, {}
        case InvalidInputError():
            return getattr(exc, "status_code", 422), str(exc), {}
        case NotFoundError():
            return 404, str(exc), {}
        case AuthError():
            return getattr(exc, "status_code", 401), str(exc), {}
        case IllegalTransition() | ConcurrencyConflict():
            return 409, str(exc), {}
        case QuotaExceeded():
            return 429, str(exc), {}
        case RetryableError():
            return 503, str(exc), {}
    log.exception("unhandled error", exc_info=exc)
    return 500, "internal error", {}


def problem_response(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    status, detail, extra = _classify(exc)
    body = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        **extra,
    }
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="touchstone"'
    if status in (429, 503):
        headers["Retry-After"] = str(int(getattr(exc, "retry_after", None) or 1))
    if isinstance(exc, HTTPException) and exc.headers:
        headers.update(exc.headers)
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)
