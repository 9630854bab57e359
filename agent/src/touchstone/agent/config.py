"""The agent's settings: one typed object built in ``__main__`` and passed down.

Every field can be set from the environment as ``TOUCHSTONE_<FIELD>``; tests build
``AgentSettings(...)`` directly.
"""

from __future__ import annotations

import importlib.util
import re
import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict
from touchstone.shared.agents import HEARTBEAT_INTERVAL_S
from touchstone.shared.settings import Settings


def default_host() -> str:
    """This machine's name as one subject token."""
    name = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname().split(".")[0])[:128]
    return name or "local"


def installed_trainer_dir() -> Path | None:
    """The folder of the installed reference trainer (``trainer/``, holding ``src/`` and
    ``configs/``), when it is installed from source."""
    spec = importlib.util.find_spec("touchstone.trainer")
    if spec is None or not spec.origin:
        return None
    folder = Path(spec.origin).resolve().parents[3]  # trainer/src/touchstone/trainer/__init__.py
    return folder if (folder / "src").is_dir() else None


class AgentSettings(Settings):
    """Settings of one agent process (shared ones come from ``Settings``)."""

    model_config = SettingsConfigDict(use_attribute_docstrings=True)

    host: str = Field(default_factory=default_host, pattern=r"^[A-Za-z0-9_-]{1,128}$")
    """This host's name: the token of its subjects and the first part of its placements."""

    nats_user: str = ""
    """This agent's NATS user (``agent-{host}``, see ``deploy/nats/agent-user.py``); empty means
    none (a local server without users, ``make up``). With it, ``nats_url`` may list several
    servers, comma-separated."""

    nats_password: SecretStr = SecretStr("")
    """The password of ``nats_user`` (``TOUCHSTONE_NATS_PASSWORD``, from the unit's
    ``EnvironmentFile``, never on the command line)."""

    num_slots: int = Field(1, ge=0, le=64)
    """Task slots of a host without GPUs (CPU slots); a host with GPUs has one slot per GPU."""

    runtime: Literal["process", "docker", "auto"] = "process"
    """How attempts run: ``process`` (plain subprocesses in a work directory), ``docker``
    (hardened containers of the local Docker engine, from ``docker_image``), or ``auto``
    (``docker`` when the engine answers and has the image, else ``process``)."""

    docker_url: str = ""
    """The Docker engine's address; empty means ``DOCKER_HOST`` or the local socket."""

    docker_image: str = "touchstone-task:latest"
    """The task image (``make images``): Debian with python3, numpy, pandas, scikit-learn."""

    docker_user: str = Field("", pattern=r"^([0-9]+(:[0-9]+)?)?$")
    """``uid:gid`` the task runs as; empty means 65534:65534 (nobody) for an agent running as
    root, else the agent's own uid and gid. Never 0."""

    docker_pids_limit: int = Field(512, ge=16)
    """Most processes and threads one task container may have (stops fork bombs)."""

    docker_memory: str = Field("8g", pattern=r"^[0-9]+[bkmg]?$")
    """Memory limit of one task container (swap included)."""

    docker_cpus: float = Field(0.0, ge=0)
    """CPUs one task container may use; 0 means no limit."""

    trainer_dir: Path | None = None
    """The trainer's folder (``src/`` and ``configs/``), copied into each attempt; empty means
    the installed reference trainer's."""

    trainer_module: str = Field("touchstone.trainer", pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$")
    """The module run as ``python -m MODULE validate|train ...`` with ``src/`` on PYTHONPATH."""

    python: str = ""
    """The interpreter that runs the trainer; empty means the agent's own (process runtime)
    or ``python3`` of the image (Docker runtime)."""

    heartbeat_interval_s: float = Field(HEARTBEAT_INTERVAL_S, gt=0)
    """Seconds between heartbeats (and repeats of every attempt report)."""

    report_retention_s: float = Field(300.0, ge=0)
    """How long an ended attempt's last report is repeated, so a provider that missed it
    (or was restarted) still records how it ended."""

    lease_s: float = Field(20.0, ge=0)
    """An agent that has not reached NATS for this long stops its attempts, so a task the
    provider failed for silence (``agent_timeout_s``, longer) never runs twice; 0 turns it off."""

    poll_interval_s: float = Field(0.2, gt=0)
    """How often a running attempt's process and console file are checked."""

    kill_grace_s: float = Field(10.0, ge=0)
    """Seconds between SIGTERM and SIGKILL when an attempt is terminated."""

    git_timeout_s: float = Field(300.0, gt=0)
    """Longest a ``git clone`` of a feature set may take."""

    allow_local_sources: bool = False
    """Accept a local directory as a feature set's ``git_url`` (development and tests only)."""

    env_passthrough: tuple[str, ...] = ("PATH", "LANG", "LC_ALL", "TZ")
    """Environment variables the trainer inherits from the agent; nothing else is passed."""

    answer_status: bool = True
    """Answer ``touchstone status`` pings on ``{ns}.status.ping`` (off where the agent's NATS
    user may not use that subject)."""

    nvidia_smi: str = "nvidia-smi"
    """The ``nvidia-smi`` to ask for GPUs; a host without it reports CPU slots."""

    @property
    def work_root(self) -> Path:
        """``{data_dir}/agent``: one work directory per attempt, named after its container."""
        return self.data_dir / "agent"

    @property
    def artifacts_root(self) -> Path:
        return self.data_dir / "artifacts"

    def resolved_trainer_dir(self) -> Path:
        folder = self.trainer_dir or installed_trainer_dir()
        if folder is None:
            raise ValueError("no trainer: set trainer_dir (TOUCHSTONE_TRAINER_DIR)")
        return folder.resolve()
