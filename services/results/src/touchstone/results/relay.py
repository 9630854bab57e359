"""``python -m touchstone.results.relay``: Alertmanager's webhook in, a Slack or Lark message out.

Alertmanager speaks Slack natively but cannot shape a Lark custom bot's body; this relay takes
Alertmanager's webhook (``POST /alertmanager``, its version 4 JSON) and posts one message per
notification through the same ``WebhookNotifier`` the results service uses.

| the webhook's answer               | the relay's answer to Alertmanager (it retries 5xx) |
|------------------------------------|------------------------------------------------------|
| taken                              | 200                                                  |
| retryable (5xx, 429, unreachable)  | 503                                                  |
| refused for good (4xx, Lark code)  | 502                                                  |
| a body that is not Alertmanager's  | 400                                                  |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import uvicorn
from litestar import Litestar, Response, get, post
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from touchstone.results.notify import WebhookNotifier
from touchstone.shared.errors import PermanentError, RetryableError
from touchstone.shared.logs import setup_logging
from touchstone.shared.settings import Settings

MAX_BODY = 1024 * 1024
ALERTS_SHOWN = 20


class RelaySettings(Settings):
    """Settings of the relay (the shared ones come from ``Settings``)."""

    relay_webhook_url: str = Field("", description="The Lark (or Slack) webhook every notification goes to.")
    relay_webhook_kind: Literal["auto", "slack", "lark"] = Field(
        "auto", description="Payload shape; auto: Lark for *.larksuite.com / *.feishu.cn URLs, else Slack.")
    relay_host: str = Field("127.0.0.1", description="Address the relay listens on.")
    relay_port: int = Field(9095, ge=0, le=65535, description="Port the relay listens on.")
    relay_timeout_s: float = Field(10.0, gt=0, description="Timeout of one webhook call.")

    def kind(self) -> Literal["slack", "lark"]:
        if self.relay_webhook_kind != "auto":
            return self.relay_webhook_kind
        lark = ("larksuite.com", "feishu.cn", "larkoffice.com")
        return "lark" if any(h in self.relay_webhook_url for h in lark) else "slack"


class Alert(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: str = "firing"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class Notification(BaseModel):
    """Alertmanager's webhook body (version 4), the parts a message needs."""

    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"]
    alerts: list[Alert] = Field(max_length=1000)
    commonLabels: dict[str, str] = Field(default_factory=dict)  # Alertmanager's field names
    externalURL: str = ""


@dataclass(frozen=True)
class RelayMessage:
    title: str
    lines: tuple[str, ...]
    link: str | None = None


def message_of(note: Notification) -> RelayMessage:
    """One message per notification: what fires (or resolved), each alert's summary."""
    name = note.commonLabels.get("alertname", "alerts")
    firing = sum(a.status == "firing" for a in note.alerts)
    state = f"FIRING ({firing})" if note.status == "firing" else "resolved"
    lines = [a.annotations.get("summary") or ", ".join(f"{k}={v}" for k, v in sorted(a.labels.items()))
             for a in note.alerts[:ALERTS_SHOWN]]
    if len(note.alerts) > ALERTS_SHOWN:
        lines.append(f"... and {len(note.alerts) - ALERTS_SHOWN} more")
    severity = note.commonLabels.get("severity")
    title = f"{state}: {name}" + (f" [{severity}]" if severity else "")
    link = note.externalURL if note.externalURL.startswith(("http://", "https://")) else None
    return RelayMessage(title[:300], tuple(line[:1000] for line in lines), link)


def create_app(settings: RelaySettings) -> Litestar:
    if not settings.relay_webhook_url:
        raise ValueError("relay_webhook_url is empty: the relay has nowhere to post")
    notifier = WebhookNotifier(settings.relay_webhook_url, settings.kind(), timeout_s=settings.relay_timeout_s)

    @post("/alertmanager", status_code=200)
    async def alertmanager(body: bytes) -> Response[dict[str, Any]]:
        try:
            note = Notification.model_validate_json(body)
        except ValidationError as e:
            return Response({"error": f"not an Alertmanager notification: {e.error_count()} problems"}, status_code=400)
        try:
            await notifier.send(message_of(note))
        except RetryableError as e:
            return Response({"error": str(e)}, status_code=503)
        except PermanentError as e:
            return Response({"error": str(e)}, status_code=502)
        return Response({"sent": 1})

    @get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return Litestar([alertmanager, healthz], request_max_body_size=MAX_BODY)


def main() -> None:
    settings = RelaySettings()
    setup_logging("lark-relay", level=settings.log_level, json_lines=settings.log_json)
    uvicorn.run(create_app(settings), host=settings.relay_host, port=settings.relay_port, log_config=None)


if __name__ == "__main__":
    main()
