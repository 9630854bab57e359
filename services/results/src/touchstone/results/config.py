"""The results service's settings: one typed object built in ``__main__`` and passed down.

Every field can be set from the environment as ``TOUCHSTONE_<FIELD>``. Tests build
``ResultsSettings(...)`` directly.
"""

from __future__ import annotations

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

    ack_wait_s: float = 60.0
    """How long a delivery may go unacknowledged (progress is signalled while uploads run)."""

    max_deliver: int = 8
    """Tries per event before it is dead-lettered."""

    def resolved_webhook_kind(self) -> Literal["slack", "lark"]:
        if self.webhook_kind != "auto":
            return self.webhook_kind
        lark_hosts = ("larksuite.com", "feishu.cn", "larkoffice.com")
        return "lark" if any(h in self.webhook_url for h in lark_hosts) else "slack"
