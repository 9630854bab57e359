"""The results service's settings: one typed object built in ``__main__`` and passed down.

Every field can be set from the environment as ``TOUCHSTONE_<FIELD>``. Tests build
``ResultsSettings(...)`` directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic_settings import SettingsConfigDict
from touchstone.shared.objects.config import ObjectStoreSettings


class ResultsSettings(ObjectStoreSettings):
    """Settings of one results process (the store's come from ``ObjectStoreSettings``)."""

    model_config = SettingsConfigDict(use_attribute_docstrings=True)

    mlflow_tracking_uri: str = ""
    """MLflow tracking server (``http://host:5000``) or store URI; empty turns MLflow off."""

    mlflow_experiment: str = "touchstone_service"
    """The experiment that gets one run per task attempt."""

    mlflow_timeout_s: float = 30.0
    """Timeout of each MLflow HTTP request."""

    mlflow_max_retries: int = 3
    """Retries of a failed MLflow HTTP request inside the client; 0 turns them off."""

    webhook_url: str = ""
    """Where submission notifications (COMPLETED, ERROR, REJECTED) are posted; empty turns them off."""

    webhook_kind: Literal["auto", "slack", "lark"] = "auto"
    """Payload shape: Slack's ``{"text"}`` or Lark's ``{"msg_type", "content"}``; ``auto`` picks
    Lark for ``*.larksuite.com`` / ``*.feishu.cn`` URLs and Slack otherwise."""

    webhook_timeout_s: float = 10.0
    """Timeout of one webhook call."""

    submission_url_template: str = ""
    """A link to a submission in notifications, e.g. ``https://touchstone.example/submissions/{submission_id}``;
    empty: no link."""

    alarm_webhook_urls: list[str] = []
    """Webhooks that get every alarm (``AlarmRaised`` and dead letters), Slack- or Lark-shaped by
    URL as ``webhook_kind: auto`` decides; empty: none. Webhook URLs are secrets: set them from a
    file or a secret store (``TOUCHSTONE_ALARM_WEBHOOK_URLS='["https://..."]'``)."""

    alarm_email_to: list[str] = []
    """Addresses that get every alarm by email; empty: no email."""

    alarm_email_from: str = "touchstone@localhost"
    """The From address of alarm emails."""

    alarm_repeat_interval_s: float = 3600.0
    """The same alarm (one service's kind, or one consumer's dead letters of one type) is sent
    again only after this long; those in between are counted and the next message says how many."""

    alarm_max_age_s: float = 86400.0
    """Alarms older than this when read (a service that was down a day) are not sent."""

    smtp_host: str = ""
    """SMTP server for alarm emails; empty turns email off."""

    smtp_port: int = 587
    """SMTP port (587 with STARTTLS, 465 with TLS from the start, 25 plain)."""

    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    """How the SMTP connection is secured; ``none`` only for a relay on the same host or network."""

    smtp_user: str = ""
    """SMTP login; empty: no login."""

    smtp_password_file: Path | None = None
    """A file holding the SMTP password (never put the password itself in the environment)."""

    smtp_timeout_s: float = 15.0
    """Timeout of one SMTP conversation."""

    ack_wait_s: float = 60.0
    """How long a delivery may go unacknowledged (progress is signalled while uploads run)."""

    max_deliver: int = 8
    """Tries per event before it is dead-lettered."""

    def resolved_webhook_kind(self, url: str | None = None) -> Literal["slack", "lark"]:
        """The payload shape for ``url`` (the submission webhook when not given)."""
        if self.webhook_kind != "auto":
            return self.webhook_kind
        lark_hosts = ("larksuite.com", "feishu.cn", "larkoffice.com")
        return "lark" if any(h in (url or self.webhook_url) for h in lark_hosts) else "slack"

    @property
    def alarms_enabled(self) -> bool:
        return bool(self.alarm_webhook_urls or (self.smtp_host and self.alarm_email_to))
