"""Notifications: a webhook that takes Slack- or Lark-shaped bodies, or nothing when off.

``WebhookNotifier._request`` is the one place where the webhook's answers become ours:

| answer                                     | error                        |
|--------------------------------------------|------------------------------|
| 2xx (Lark: with ``code`` 0 or no code)     | none                         |
| 429, or Lark's frequency-limit code 11232  | ``RateLimitedError``         |
| 5xx, timeouts, connection errors           | ``UnavailableError``         |
| any other 4xx, or Lark's 200 with an error | ``PermanentError``           |
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

import httpx
from touchstone.results.domain import Message, Notice, lark_payload, slack_payload
from touchstone.shared.errors import PermanentError, RateLimitedError, UnavailableError

LARK_RATE_LIMITED = 11232


class Notifier(Protocol):
    @property
    def enabled(self) -> bool: ...

    async def send(self, notice: Notice) -> None:
        """Deliver ``notice`` once (raises one of Touchstone's errors when it could not)."""
        ...


class NullNotifier:
    """Notifications off."""

    enabled = False

    async def send(self, notice: Notice) -> None:
        return None


class WebhookNotifier:
    """POSTs each notice as JSON to one URL."""

    enabled = True

    def __init__(self, url: str, kind: Literal["slack", "lark"], *, timeout_s: float = 10.0) -> None:
        self.url = url
        self.kind = kind
        self.timeout_s = timeout_s

    def payload(self, notice: Message) -> dict[str, Any]:
        return lark_payload(notice) if self.kind == "lark" else slack_payload(notice)

    async def send(self, notice: Message) -> None:
        await self._request(self.payload(notice))

    async def _request(self, body: dict[str, Any]) -> None:
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s) as client:
                response = await client.post(self.url, json=body)
        except httpx.HTTPError as e:
            raise UnavailableError(f"webhook unreachable: {e!r}") from e
        status = response.status_code
        if status == 429:
            raise RateLimitedError("webhook rate limited", retry_after=_retry_after(response))
        if status >= 500:
            raise UnavailableError(f"webhook answered {status}")
        if status >= 400:
            raise PermanentError(f"webhook refused the message: {status} {response.text[:200]}")
        if self.kind == "lark":
            _check_lark_body(response)


def _check_lark_body(response: httpx.Response) -> None:
    """Lark answers 200 with ``{"code": N, "msg": ...}``; a non-zero code is an error."""
    try:
        body = response.json()
    except ValueError:
        return
    code = body.get("code", body.get("StatusCode", 0)) if isinstance(body, dict) else 0
    if not code:
        return
    message = f"Lark refused the message: code {code}: {body.get('msg', '')}"
    if code == LARK_RATE_LIMITED:
        raise RateLimitedError(message)
    raise PermanentError(message)


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
