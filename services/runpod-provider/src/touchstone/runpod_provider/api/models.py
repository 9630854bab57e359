"""Our models of RunPod things: what the rest of Touchstone sees instead of vendor dicts.

Every model is a frozen pydantic model. Vendor field names, vendor statuses and the pod's
environment values never appear here: ``parse.py`` is the only place that reads RunPod JSON.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class PodStatus(StrEnum):
    """Where a pod is in its life, in our words (``parse.STATUS_MAP`` maps RunPod's)."""

    PENDING = "pending"
    """A machine is being allocated (RunPod ``PROVISIONING``)."""
    STARTING = "starting"
    """The image is being pulled or the container is starting (``STARTING``)."""
    RUNNING = "running"
    """The container is up (``RUNNING``). SSH may still be minutes away: see ``Pod.ssh_ready``."""
    STOPPED = "stopped"
    """Stopped; the disk is kept and still billed (``EXITED``)."""
    FAILED = "failed"
    """The container failed and will not recover by itself (``ERROR``)."""
    TERMINATED = "terminated"
    """Deleted for good (``TERMINATED``)."""
    UNKNOWN = "unknown"
    """A status this code does not know yet; treat as not ready, not gone."""


class Cloud(StrEnum):
    """RunPod's two clouds. There is no "any": make one attempt per cloud."""

    SECURE = "SECURE"
    COMMUNITY = "COMMUNITY"


class Stock(StrEnum):
    """How much of a GPU type is free right now (advisory: a create can still fail)."""

    NONE = "none"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    UNKNOWN = "unknown"


class SshEndpoint(BaseModel):
    """A direct SSH endpoint (full SSH: exec, SFTP, forwarding). Changes on every start."""

    model_config = ConfigDict(frozen=True)

    host: str
    port: int
    username: str


class Pod(BaseModel):
    """One RunPod pod as we see it.

    ``env_keys`` holds only the names of the pod's environment variables: the values (which
    include ``PUBLIC_KEY`` and any token passed in) are dropped at the edge.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    status: PodStatus
    actions: tuple[str, ...] = ()
    """Transitions RunPod allows now (``start``, ``stop``, ``restart``, ``terminate``)."""
    image: str = ""
    gpu_type_id: str | None = None
    gpu_count: int = 0
    cost_per_hour: float = 0.0
    """USD per hour billed now; 0.0 when stopped or terminated."""
    ssh: SshEndpoint | None = None
    """The direct SSH endpoint, or None until the pod is running and has a public port."""
    data_center_id: str | None = None
    env_keys: tuple[str, ...] = ()
    created_at: datetime | None = None
    started_at: datetime | None = None

    @property
    def ssh_ready(self) -> bool:
        """Running with a direct SSH endpoint. The handshake may still fail while sshd starts."""
        return self.status is PodStatus.RUNNING and self.ssh is not None


class PodSpec(BaseModel):
    """What to create: one GPU type per pod (RunPod v2 has no fallback list).

    ``public_key`` becomes ``env.PUBLIC_KEY``, which RunPod images install as root's
    authorized key; it works whether or not keys are registered on the account.
    """

    model_config = ConfigDict(frozen=True)

    name: str = Field(min_length=1)
    """Not unique at RunPod: put a unique tag in it (``touchstone-{sub}-{task}-{attempt}``)."""
    image: str = Field(min_length=1)
    gpu_type_id: str = Field(min_length=1)
    gpu_count: int = Field(default=1, ge=1)
    cloud: Cloud = Cloud.SECURE
    disk_gb: int = Field(default=20, ge=1)
    """Container disk; always sent because v2 has no documented default."""
    ports: tuple[str, ...] = ("22/tcp",)
    """``"22/tcp"`` is needed for direct SSH; v2 exposes nothing by default."""
    public_key: str | None = None
    env: dict[str, str] = Field(default_factory=dict, repr=False)
    args: str | None = None
    """Arguments for the image's entrypoint, one string; omitted when None."""
    data_center_ids: tuple[str, ...] = ()
    """Enforced by RunPod: a GPU not offered there fails as no capacity."""
    min_cuda_version: str | None = None
    registry_id: str | None = None


class GpuType(BaseModel):
    """One entry of the GPU catalog, priced for the cloud it was asked for."""

    model_config = ConfigDict(frozen=True)

    id: str
    """The value for ``PodSpec.gpu_type_id``, e.g. ``"NVIDIA GeForce RTX 4090"``."""
    display_name: str
    manufacturer: str
    memory_gb: int
    price_per_hour: float
    """USD per hour for one GPU of this type on the cloud asked for (list price)."""
    offered: bool
    """Whether the cloud asked for offers this type at all."""
    max_count: int
    stock: Stock
    data_center_ids: tuple[str, ...] = ()
    """Data centers that have it now (empty when the stock is none or was not asked for)."""


class Balance(BaseModel):
    """The account's money, in USD."""

    model_config = ConfigDict(frozen=True)

    balance: float
    spend_per_hour: float
    spend_limit: float | None = None
