"""Typed settings, built once in each ``__main__`` and passed down.

Every field can be set from the environment as ``TOUCHSTONE_<FIELD>`` (nested fields with
``__``); nothing reads the environment at import time.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from touchstone.shared.fetchpolicy import FetchPolicy


class Settings(BaseSettings):
    """Settings shared by every Touchstone process."""

    model_config = SettingsConfigDict(env_prefix="TOUCHSTONE_", env_nested_delimiter="__", extra="ignore")

    namespace: str = Field("touchstone", description="Separates instances that share one NATS cluster.")
    nats_url: str = Field(
        "nats://127.0.0.1:4222",
        description="Where the NATS server is (several servers comma-separated); no credentials in it.",
    )
    nats_user: str = Field("", description="This process's NATS user; empty: no user/password.")
    nats_password: SecretStr = Field(SecretStr(""), description="The password of nats_user (never logged).")
    nats_password_file: Path | None = Field(
        None, description="A file holding the password of nats_user (instead of nats_password)."
    )
    nats_credentials_file: Path | None = Field(
        None, description="A NATS .creds file (user JWT and nkey seed), for operator-mode servers."
    )
    nats_tls_ca_file: Path | None = Field(None, description="CA bundle that signs the NATS servers' certificates.")
    nats_tls_cert_file: Path | None = Field(None, description="Client certificate, where NATS asks for one.")
    nats_tls_key_file: Path | None = Field(None, description="Private key of nats_tls_cert_file.")
    data_dir: Path = Field(Path(".touchstone"), description="Embedded data: NATS store, SQLite, artifacts.")
    store_url: str = Field(
        "", description="Projection store: sqlite:///file.db or mongodb://...; empty means SQLite in data_dir."
    )
    logs_max_bytes: int = Field(
        4 * 1024**3, ge=1024 * 1024, description="The logs stream's budget: all tasks' console lines together."
    )
    logs_max_msgs_per_task: int = Field(
        2000, ge=10, description="Console messages (each at most 128 KiB) kept per task; older ones go first."
    )
    log_level: str = Field("INFO", description="Log level of every logger.")
    log_json: bool = Field(True, description="One JSON object per log line (off: human-readable lines).")
    metrics_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="Port of the /healthz, /readyz and /metrics listener of a service without an HTTP API "
        "(the submission service answers them on its API port); 0 turns the listener off.",
    )
    metrics_host: str = Field(
        "127.0.0.1",
        description="Address the /healthz, /readyz and /metrics listener binds (0.0.0.0 in a container, "
        "for the orchestrator's probes and Prometheus).",
    )
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


class GitFetchSettings(Settings):
    """Settings of a process that fetches feature sets (an agent, the RunPod provider): the
    fetch policy of ``touchstone.shared.fetchpolicy``, applied where git runs."""

    allow_local_sources: bool = Field(
        False,
        description="Accept a local directory or file:// URL as a feature set's git_url (an "
        "embedded `touchstone up` turns it on; never in production).",
    )
    git_allow_private: bool = Field(
        False,
        description="Fetch from private addresses (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7): "
        "an in-house git server. Loopback, link-local and metadata addresses are refused always.",
    )
    git_allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Git hosts feature sets may come from ('*.' matches subdomains); empty: any public host.",
    )
    git_ssh_key: Path | None = Field(
        None,
        description="The deploy key (private key file) for ssh git URLs; unset refuses ssh sources. "
        "The service account's own keys and ssh agent are never used.",
    )
    git_ssh_known_hosts: Path | None = Field(
        None,
        description="known_hosts for ssh git hosts; unset trusts a host's key on first use "
        "(kept in GIT_SSH_KEY.known_hosts).",
    )

    def fetch_policy(self) -> FetchPolicy:
        return FetchPolicy(
            allow_local=self.allow_local_sources,
            allow_private=self.git_allow_private,
            allowed_hosts=tuple(self.git_allowed_hosts),
            ssh_key=self.git_ssh_key.resolve() if self.git_ssh_key else None,
            ssh_known_hosts=self.git_ssh_known_hosts.resolve() if self.git_ssh_known_hosts else None,
        )
