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

from pydantic import Field
from pydantic_settings import SettingsConfigDict
from touchstone.agent.collect import Limits
from touchstone.shared.agents import HEARTBEAT_INTERVAL_S
from touchstone.shared.attempt import DEFAULT_TRAINING_TIMEOUT_S, DEFAULT_VALIDATION_TIMEOUT_S
from touchstone.shared.gitsource import TrainerSource, default_trainer_repo
from touchstone.shared.settings import GitFetchSettings


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


class AgentSettings(GitFetchSettings):
    """Settings of one agent process (shared ones come from ``Settings``)."""

    model_config = SettingsConfigDict(use_attribute_docstrings=True)

    host: str = Field(default_factory=default_host, pattern=r"^[A-Za-z0-9_-]{1,128}$")
    """This host's name: the token of its subjects and the first part of its placements."""

    num_slots: int = Field(1, ge=0, le=64)
    """Task slots of a host without GPUs (CPU slots); a host with GPUs has one slot per GPU."""

    runtime: Literal["process", "docker", "auto"] = "auto"
    """How attempts run: ``docker`` (hardened containers of the local Docker engine, from
    ``docker_image``), ``process`` (subprocesses in a bubblewrap sandbox, ``process_sandbox``),
    or ``auto`` (``docker`` when the engine answers and has the image, else the sandboxed
    process runtime). Never weaker than that: an agent that cannot run what it was told (or,
    for ``auto``, either) refuses work and says why in its heartbeat (the System page)."""

    process_sandbox: Literal["bubblewrap", "none"] = "bubblewrap"
    """The process runtime's isolation: ``bubblewrap`` (no network, no view of other processes
    or of the data directory), or ``none``, which isolates nothing (development and tests
    only; named here so that it is never a silent fallback)."""

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

    trainer_repo: str = ""
    """The trainer's git repository (a local path or a git URL): each attempt runs the trainer
    folder (``trainer/src``, ``trainer/configs``) of the commit its ``trainer_ref`` names.
    Empty means this repository's checkout (the one holding the installed reference trainer).
    Ignored when ``trainer_dir`` is set."""

    trainer_dir: Path | None = None
    """A fixed trainer folder (``src/`` and ``configs/``) copied into every attempt whatever its
    ``trainer_ref`` (stand-in trainers, development). Empty means ``trainer_repo``; with no
    repository either, the installed reference trainer's folder."""

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

    validation_timeout_s: float = Field(DEFAULT_VALIDATION_TIMEOUT_S, gt=0)
    """The run deadline of a validation: past it the trainer is stopped and the attempt fails
    with failure class ``timeout``."""

    training_timeout_s: float = Field(DEFAULT_TRAINING_TIMEOUT_S, gt=0)
    """The run deadline of a training whose schedule sets none (``run_timeout_s``)."""

    max_artifact_bytes: int = Field(4 << 30, gt=0)
    """The largest output file collected (a larger one is left behind, and the log says so)."""

    max_collect_bytes: int = Field(8 << 30, gt=0)
    """All the outputs of one attempt collected together."""

    max_log_bytes: int = Field(256 << 20, gt=0)
    """The console log kept in the artifact store (its head; the log says how much was cut)."""

    git_timeout_s: float = Field(300.0, gt=0)
    """Longest a ``git clone`` of a feature set, or a fetch of the trainer repository, may take."""

    pip: tuple[str, ...] = ()
    """The pip that installs a feature set's ``requirements.txt`` (argv prefix, e.g.
    ``["/usr/bin/python3", "-m", "pip"]``); empty means ``python -m pip`` of the agent's own
    interpreter, else of the first ``python3`` on ``PATH`` that has pip. Any pip >= 22 works:
    it is always told the task's Python, platform and ABI."""

    pip_index_url: str = ""
    """The package index for requirements; empty means pip's default (PyPI)."""

    pip_find_links: tuple[str, ...] = ()
    """Extra folders or URLs of wheels (``--find-links``)."""

    pip_no_index: bool = False
    """Use only ``pip_find_links``, no index (air-gapped hosts, tests)."""

    pip_timeout_s: float = Field(600.0, gt=0)
    """Longest one requirements install may take."""

    python_tags: str = ""
    """The trainer's interpreter as pip's target, ``VERSION/ABI/PLATFORM,PLATFORM...`` (e.g.
    ``3.11/cp311/manylinux_2_36_x86_64,manylinux2014_x86_64,linux_x86_64``): requirements are
    installed for it. Empty means ask that interpreter once (Docker: the image's ``python3``
    in a throw-away container without network)."""

    stray_grace_s: float = Field(60.0, ge=0)
    """A ``touchstone-`` container (or process-runtime work directory) of this agent that no
    live attempt owns is removed once it is this old (also right after a restart)."""

    env_passthrough: tuple[str, ...] = ("PATH", "LANG", "LC_ALL", "TZ")
    """Environment variables the trainer inherits from the agent; nothing else is passed."""

    answer_status: bool = True
    """Answer ``touchstone status`` pings on ``{ns}.status.ping`` (off where the agent's NATS
    user may not use that subject)."""

    nvidia_smi: str = "nvidia-smi"
    """The ``nvidia-smi`` to ask for GPUs; a host without it reports CPU slots."""

    operator_access: bool = False
    """Answer operators' requests (``touchstone agent exec/get/put``: admins only, each one
    recorded as events): run one command (argv, no shell) as this agent's user, read or write
    one file under ``operator_root``. Off by default; turn it on for a host while it is needed."""

    operator_root: Path | None = None
    """The only folder ``touchstone agent get/put`` may reach (no symlinks are followed under
    it), and the working folder of ``agent exec``; unset: no file access at all."""

    @property
    def work_root(self) -> Path:
        """``{data_dir}/agent``: one work directory per attempt, named after its container."""
        return self.data_dir / "agent"

    def collect_limits(self) -> Limits:
        return Limits(file_bytes=self.max_artifact_bytes, total_bytes=self.max_collect_bytes,
                      log_bytes=self.max_log_bytes)

    @property
    def artifacts_root(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def cache_root(self) -> Path:
        """``{data_dir}/cache``: extracted trainer trees (``trainer/``) and installed
        requirements (``requirements/``), shared by every attempt."""
        return self.data_dir / "cache"

    def trainer_source(self) -> TrainerSource:
        """Where ``trainer_ref`` is resolved: ``trainer_dir`` (fixed), else ``trainer_repo``,
        else this checkout, else the installed trainer's folder (fixed). Runs git once."""
        cache = self.cache_root / "trainer"
        if self.trainer_dir is not None:
            return TrainerSource(cache, fixed_dir=self.trainer_dir.resolve())
        installed = installed_trainer_dir()
        repo = self.trainer_repo or default_trainer_repo(installed)
        if repo:
            return TrainerSource(cache, repo=repo, timeout_s=self.git_timeout_s)
        if installed is None:
            raise ValueError("no trainer: set trainer_repo (TOUCHSTONE_TRAINER_REPO) or trainer_dir")
        return TrainerSource(cache, fixed_dir=installed)
