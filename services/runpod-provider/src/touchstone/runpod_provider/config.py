"""The RunPod provider's settings: one typed object built in ``__main__`` and passed down.

Every field can be set from the environment as ``TOUCHSTONE_<FIELD>`` (the API key as
``TOUCHSTONE_RUNPOD_API_KEY``); tests build ``RunpodProviderSettings(...)`` directly.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict
from touchstone.shared.attempt import DEFAULT_TRAINING_TIMEOUT_S, DEFAULT_VALIDATION_TIMEOUT_S
from touchstone.shared.gitsource import TrainerSource, default_trainer_repo
from touchstone.shared.objects.config import ObjectStoreSettings
from touchstone.shared.settings import GitFetchSettings

from .api import DEFAULT_BASE_URL, DEFAULT_GRAPHQL_URL, Cloud


def repository_trainer_dir() -> Path:
    """The repository's ``trainer/`` folder (this file is ``services/runpod-provider/src/
    touchstone/runpod_provider/config.py`` in a source checkout)."""
    return Path(__file__).resolve().parents[5] / "trainer"


class RunpodProviderSettings(GitFetchSettings, ObjectStoreSettings):
    """Settings of one RunPod provider process (shared ones come from ``Settings``).

    Replicas share the work: give each the same SSH key file (``key_file``), so that any of
    them can reach a pod another created (see ``service.py``).
    """

    model_config = SettingsConfigDict(use_attribute_docstrings=True)

    # --- the API ---------------------------------------------------------------------------

    runpod_api_key: SecretStr = SecretStr("")
    """The RunPod API key; never logged."""

    runpod_base_url: str = DEFAULT_BASE_URL
    """REST v2 base URL including ``/v2`` (a ``FakeRunpod``'s ``base_url`` in tests and demos)."""

    runpod_graphql_url: str = DEFAULT_GRAPHQL_URL
    """GraphQL URL, used only for the account balance."""

    api_timeout_s: float = 30.0
    """Timeout of every RunPod call."""

    api_max_retries: int = 3
    """Retries of idempotent calls at the edge (0 in tests)."""

    # --- pods ------------------------------------------------------------------------------

    image: str = "runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404"
    """The image of every pod (it must run sshd with ``PUBLIC_KEY`` and have ``python3``)."""

    default_gpu_type: str = "NVIDIA GeForce RTX 4090"
    """GPU type used when a launch names none (or ``any`` and the catalog has no stock)."""

    cloud: Cloud = Cloud.SECURE
    """Which RunPod cloud pods are rented on."""

    disk_gb: int = Field(20, ge=1)
    """Container disk of each pod."""

    poll_interval_s: float = 2.0
    """Pause between looks at a pod while it starts or goes away."""

    ready_timeout_s: float = 900.0
    """A pod without a working SSH endpoint after this long fails the attempt (infrastructure)."""

    ssh_connect_timeout_s: float = 10.0
    """Timeout of one SSH connection attempt (TCP plus handshake)."""

    terminate_timeout_s: float = 120.0
    """How long a terminated pod may take to disappear from the API before we give up on it
    (the reaper tries again)."""

    # --- the task --------------------------------------------------------------------------

    trainer_repo: str = ""
    """The trainer's git repository (a local path or a git URL): each attempt gets the trainer
    folder (``trainer/src``, ``trainer/configs``) of the commit its ``trainer_ref`` names,
    resolved here and copied into the pod. Empty means this repository's checkout. Ignored
    when ``trainer_src_dir`` is set."""

    trainer_src_dir: Path | None = None
    """A fixed trainer source folder (holding the trainer's package) copied into every pod
    whatever its ``trainer_ref``, with its sibling ``configs/`` when present (stand-in
    trainers, development). Empty means ``trainer_repo``."""

    trainer_module: str = Field("touchstone.trainer", pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$")
    """Run in the pod as ``PYTHON -m MODULE validate|train ...``."""

    python: str = "python3"
    """The interpreter in the pod."""

    git_timeout_s: float = 120.0
    """Timeout of each git command while fetching a feature set."""

    pip_index_url: str = ""
    """The package index the pod's pip installs a feature set's ``requirements.txt`` from;
    empty means pip's default (PyPI, or whatever the image configures)."""

    pip_find_links: tuple[Path, ...] = ()
    """Local folders of wheels, copied into each pod that installs requirements and given to
    pip as ``--find-links`` (air-gapped pods, tests)."""

    pip_no_index: bool = False
    """Only ``pip_find_links``, no index (``--no-index``)."""

    pip_timeout_s: float = Field(1800.0, gt=0)
    """Longest the requirements install in a pod may take (an infrastructure failure past it)."""

    run_timeout_s: float = Field(DEFAULT_TRAINING_TIMEOUT_S, gt=0)
    """The run deadline of a training whose schedule sets none: a trainer still running after
    this long is stopped (its pod terminated) and the attempt fails with class ``timeout``."""

    validation_timeout_s: float = Field(DEFAULT_VALIDATION_TIMEOUT_S, gt=0)
    """The run deadline of a validation (as ``run_timeout_s``)."""

    max_collect_bytes: int = 4 * 1024**3
    """Most bytes copied back from one pod (the pod is untrusted)."""

    # --- cost safety -----------------------------------------------------------------------

    reconcile_interval_s: float = 30.0
    """How often pods are listed and rogue ones reaped."""

    reap_grace_s: float = 15.0
    """A ``touchstone-`` pod that no live attempt owns is terminated after this long."""

    balance_interval_s: float = 60.0
    """How often the account balance is read."""

    balance_low_usd: float = 50.0
    """Below this balance: the low-balance alarm."""

    balance_stop_usd: float = 10.0
    """Below this balance: no new pods."""

    spend_alarm_usd_per_hour: float = 0.0
    """Above this spend per hour on our running pods: the high-spend alarm (an ``AlarmRaised`` that
    reaches people, and the Prometheus rule's threshold); 0 turns it off."""

    launch_retry_s: float = 10.0
    """A launch held back by the throttle, the balance or a rejected key is retried this much later;
    a launch handed back to the queue (``LaunchDeferred``) is placed again no sooner than this.
    How long a launch is held before it is handed back is ``launch_hold_s``, half the shared
    ``launch_timeout_s`` (the scheduler's launch deadline); a GPU type without stock is retried
    until then too."""

    catalog_interval_s: float = 300.0
    """How often the GPU catalog is refreshed into the system bucket."""

    heartbeat_interval_s: float = 5.0
    """How often the running attempts are announced (the scheduler's heartbeat)."""

    @property
    def peer_silence_s(self) -> float:
        """A pod a peer replica's heartbeat named within this long is the peer's to drive; a
        provider adopts nothing before it has listened this long (three heartbeats)."""
        return 3 * self.heartbeat_interval_s

    # --- commands --------------------------------------------------------------------------

    ack_wait_s: float = 30.0
    """Seconds a command may be in flight before JetStream redelivers it."""

    command_max_deliver: int = 360
    """Deliveries of one command; a launch held back that reaches the last is handed back to the
    queue (``LaunchDeferred``) like one held for ``launch_hold_s``."""

    @property
    def key_file(self) -> Path:
        """The provider's SSH key (ed25519, created on first start)."""
        return self.data_dir / "runpod-provider" / "id_ed25519"

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def cache_dir(self) -> Path:
        """Extracted trainer trees (``trainer/``), one per commit, shared by every attempt."""
        return self.data_dir / "runpod-provider" / "cache"

    def trainer_source(self) -> TrainerSource:
        """Where ``trainer_ref`` is resolved: ``trainer_repo``, else this checkout, else the
        repository's ``trainer/`` folder as it is (fixed). Runs git once; blocking."""
        cache = self.cache_dir / "trainer"
        repo = self.trainer_repo or default_trainer_repo(repository_trainer_dir())
        if repo:
            return TrainerSource(cache, repo=repo, timeout_s=self.git_timeout_s)
        if not (repository_trainer_dir() / "src").is_dir():
            raise ValueError("no trainer: set trainer_repo (TOUCHSTONE_TRAINER_REPO) or trainer_src_dir")
        return TrainerSource(cache, fixed_dir=repository_trainer_dir())

    @property
    def staging_dir(self) -> Path:
        """Where feature sets are fetched before they are copied into pods."""
        return self.data_dir / "runpod-provider" / "staging"
