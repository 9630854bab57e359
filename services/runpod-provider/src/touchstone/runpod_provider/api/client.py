"""``RunpodApiClient``: RunPod REST v2 (pods, catalog) and GraphQL (balance) over httpx.

Rules every method keeps:

* Every call has a timeout (``timeout`` seconds, connect capped at 10 s).
* One ``_request()`` turns transport failures and RunPod error bodies, including an error
  body under a 2xx status, into the error tree in ``errors.py``.
* Retries live here and are declared per call: reads and deletes are retried on
  ``UnavailableError`` (5xx, timeouts) with exponential back-off; any call is retried on 429
  after ``Retry-After`` (a 429 means RunPod did nothing). Creates and actions are never
  retried on 5xx: a create may have made the pod (``CreateUncertainError``).
  ``max_retries=0`` turns retries off (tests).
* The API key lives only in the Authorization header; it is never logged, and any text we
  put in an exception is scrubbed of it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any, Self
from urllib.parse import quote

import httpx
from touchstone.shared.errors import (
    NotFoundError,
    RateLimitedError,
    RetryableError,
    TouchstoneError,
    UnavailableError,
)

from . import parse
from .errors import BadResponseError, CreateUncertainError, classify
from .models import Balance, Cloud, GpuType, Pod, PodSpec, PodStatus

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.runpod.io/v2"
DEFAULT_GRAPHQL_URL = "https://api.runpod.io/graphql"
BALANCE_QUERY = "query Balance { myself { id clientBalance currentSpendPerHr spendLimit } }"


class RunpodApiClient:
    """Async client of RunPod's REST v2 API (and GraphQL for the balance).

    ``base_url`` includes ``/v2`` (``https://api.runpod.io/v2``, or a fake's ``base_url``).
    Use as ``async with RunpodApiClient(...) as api:`` or call ``aclose()``.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str = "",
        *,
        graphql_url: str = DEFAULT_GRAPHQL_URL,
        timeout: float = 30.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_retry_after: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """``max_retry_after``: a 429 asking for a longer wait is raised, not slept on."""
        self._secret = api_key
        self._graphql_url = graphql_url
        self._max_retries = max_retries
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._max_retry_after = max_retry_after
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"RunpodApiClient({str(self._http.base_url)!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    # --- pods ---------------------------------------------------------------------------

    async def create_pod(self, spec: PodSpec) -> Pod:
        """Create a pod; it starts ``PENDING`` and must be polled with ``get_pod``.

        Raises ``NoCapacityError`` (try another GPU type or data center),
        ``PaymentRequiredError`` (stop), ``ForbiddenError`` (skip this candidate),
        ``InvalidInputError`` (fix the spec), ``RateLimitedError``, ``AuthError``, or
        ``CreateUncertainError`` after a 5xx or timeout, when the pod may exist: list by
        ``spec.name`` before creating again. Never retried on 5xx here.
        """
        try:
            response = await self._request("POST", "pods", json=parse.create_body(spec), idempotent=False)
        except UnavailableError as exc:
            raise CreateUncertainError(
                self._scrub(f"create of pod {spec.name!r} may have succeeded: {exc}"),
                pod_name=spec.name,
            ) from None
        return parse.pod(self._json(response))

    async def get_pod(self, pod_id: str) -> Pod | None:
        """The pod, or None when it is gone (404, or a ``TERMINATED`` pod)."""
        try:
            response = await self._request("GET", f"pods/{_seg(pod_id)}", idempotent=True)
        except NotFoundError:
            return None
        found = parse.pod(self._json(response))
        return None if found.status is PodStatus.TERMINATED else found

    async def list_pods(self, name_prefix: str | None = None) -> list[Pod]:
        """All live pods of the account, optionally only those whose name starts with a prefix.

        v2 has no pagination and no server-side filter: the whole list comes back and is
        filtered here. Terminated pods are not listed.
        """
        response = await self._request("GET", "pods", idempotent=True)
        found = parse.pods(self._json(response))
        if name_prefix is not None:
            found = [p for p in found if p.name.startswith(name_prefix)]
        return [p for p in found if p.status is not PodStatus.TERMINATED]

    async def terminate_pod(self, pod_id: str) -> None:
        """Delete the pod for good. Silent when it is already gone (404)."""
        try:
            await self._request("DELETE", f"pods/{_seg(pod_id)}", idempotent=True)
        except NotFoundError:
            log.debug("terminate of pod %s: already gone", pod_id)

    async def stop_pod(self, pod_id: str) -> Pod:
        """Stop the pod (``STOPPED``); its disk is kept and billed.

        409 (not valid in its status) → ``PodStateConflictError``.
        """
        return await self._action(pod_id, "stop")

    async def start_pod(self, pod_id: str) -> Pod:
        """Start a stopped or failed pod on its host; its SSH port will change."""
        return await self._action(pod_id, "start")

    async def restart_pod(self, pod_id: str) -> Pod:
        """Restart a running pod's container; its SSH port will change."""
        return await self._action(pod_id, "restart")

    async def _action(self, pod_id: str, action: str) -> Pod:
        response = await self._request("POST", f"pods/{_seg(pod_id)}/action", json={"action": action}, idempotent=False)
        return parse.pod(self._json(response))

    # --- catalog and account ------------------------------------------------------------

    async def list_gpu_types(self, *, cloud: Cloud = Cloud.SECURE, count: int = 1) -> list[GpuType]:
        """The GPU catalog with live stock for pods of ``count`` GPUs on ``cloud``."""
        params = {
            "include": "AVAILABILITY",
            "product": "POD",
            "count": str(count),
            "cloud": cloud.value,
        }
        response = await self._request("GET", "catalog/gpus", params=params, idempotent=True)
        return parse.gpu_types(self._json(response), cloud)

    async def get_balance(self) -> Balance:
        """The account balance and spend rate (GraphQL ``myself``; v2 has no balance route)."""
        response = await self._request("POST", self._graphql_url, json={"query": BALANCE_QUERY}, idempotent=True)
        body = self._json(response)
        data = body.get("data") if isinstance(body, dict) else None
        if isinstance(data, dict) and data.get("myself") is None:
            raise classify(401, "GraphQL myself is null: the API key was not accepted")
        return parse.balance(body)

    # --- the edge -----------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        url: str,
        *,
        idempotent: bool,
        json: Any = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Send one call with bounded retries; return a 2xx response or raise our error.

        ``idempotent`` declares whether a 5xx or a timeout may be retried.
        """
        attempt = 0
        while True:
            error = await self._attempt(method, url, json=json, params=params)
            if isinstance(error, httpx.Response):
                return error
            delay = self._retry_delay(error, attempt, idempotent)
            if delay is None:
                raise error
            attempt += 1
            log.warning(
                "RunPod %s %s: %s; retry %d/%d in %.1fs",
                method,
                _path(url),
                type(error).__name__,
                attempt,
                self._max_retries,
                delay,
            )
            await asyncio.sleep(delay)

    async def _attempt(
        self, method: str, url: str, *, json: Any, params: dict[str, str] | None
    ) -> httpx.Response | TouchstoneError:
        started = time.monotonic()
        try:
            response = await self._http.request(method, url, json=json, params=params)
        except httpx.TimeoutException as exc:
            return UnavailableError(f"RunPod {method} {_path(url)}: {type(exc).__name__}")
        except httpx.TransportError as exc:
            detail = self._scrub(str(exc)) or type(exc).__name__
            return UnavailableError(f"RunPod {method} {_path(url)}: {detail}")
        log.debug(
            "RunPod %s %s -> %d in %.0f ms (request id %s)",
            method,
            _path(url),
            response.status_code,
            1000 * (time.monotonic() - started),
            response.headers.get("x-request-id", "-"),
        )
        return self._check(method, url, response)

    def _check(self, method: str, url: str, response: httpx.Response) -> httpx.Response | TouchstoneError:
        """The response if it is a real success, else the error it carries."""
        status = response.status_code
        parts = parse.error_parts(response) if response.content else None
        if response.is_success and parts is None:
            return response
        if parts is None:
            parts = (response.reason_phrase or "no readable error body", (), False)
        detail, errors, v1 = parts
        detail = f"{detail} ({method} {_path(url)})"
        error = classify(
            status,
            self._scrub(detail),
            errors=tuple(self._scrub(e) for e in errors),
            retry_after=parse.retry_after(response.headers),
            v1_envelope=v1,
        )
        request_id = response.headers.get("x-request-id")
        log.info(
            "RunPod %s %s -> %d %s (request id %s)",
            method,
            _path(url),
            status,
            type(error).__name__,
            request_id or "-",
        )
        return error

    def _retry_delay(self, error: TouchstoneError, attempt: int, idempotent: bool) -> float | None:
        """Seconds to sleep before the next attempt, or None to raise now."""
        if attempt >= self._max_retries or not isinstance(error, RetryableError):
            return None
        if isinstance(error, RateLimitedError):
            wait = error.retry_after if error.retry_after is not None else self._backoff
            return wait if wait <= self._max_retry_after else None
        if not idempotent or not isinstance(error, UnavailableError):
            return None
        if error.retry_after is not None:
            return min(float(error.retry_after), self._max_retry_after)
        ceiling = min(self._max_backoff, self._backoff * 2.0**attempt)
        return ceiling * (0.5 + random.random() / 2)

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise BadResponseError(
                f"RunPod {response.request.method} {response.request.url.path}: "
                f"{response.status_code} with a body that is not JSON"
            ) from None

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "[api key]") if self._secret else text


def _seg(value: str) -> str:
    """One percent-encoded path segment (GPU type ids contain spaces)."""
    return quote(value, safe="")


def _path(url: str) -> str:
    """The path of a relative or absolute URL, for logs and messages (no query, no host)."""
    return httpx.URL(url).path or url
