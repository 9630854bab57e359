"""Typed settings, built once in each ``__main__`` and passed down.

Every field can be set from the environment as ``TOUCHSTONE_<FIELD>`` (nested fields with
``__``); nothing reads the environment at import time.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Settings shared by every Touchstone process."""

    model_config = SettingsConfigDict(env_prefix="TOUCHSTONE_", env_nested_delimiter="__", extra="ignore")

    namespace: str = Field("touchstone", description="Separates instances that share one NATS cluster.")
    nats_url: str = Field("nats://127.0.0.1:4222", description="Where the NATS server is.")
    data_dir: Path = Field(Path(".touchstone"), description="Embedded data: NATS store, SQLite, artifacts.")
    store_url: str = Field(
        "", description="Projection store: sqlite:///file.db or mongodb://...; empty means SQLite in data_dir."
    )
    log_level: str = Field("INFO", description="Log level of every logger.")
    log_json: bool = Field(True, description="One JSON object per log line (off: human-readable lines).")
    metrics_port: int = Field(0, description="Port for Prometheus /metrics; 0 turns the listener off.")
    launch_timeout_s: float = Field(
        120.0,
        gt=0,
        description=(
            "The launch deadline, one setting for the scheduler and the providers: an assigned task "
            "whose provider has not reported a launch by then is stuck (the scheduler fails the "
            "attempt). A provider that cannot start a launch yet (no stock, its cap, a low balance) "
            "holds it for at most half of this, then hands the task back to the queue "
            "(LaunchDeferred), so a wait never burns an attempt."
        ),
    )

    @property
    def launch_hold_s(self) -> float:
        """How long a provider may hold a launch it cannot start: half the launch deadline, so
        the hand-back is recorded well before the scheduler would call the task stuck."""
        return self.launch_timeout_s / 2

    @property
    def resolved_store_url(self) -> str:
        if self.store_url:
            return self.store_url
        return f"sqlite:///{self.data_dir / 'projections.db'}"
