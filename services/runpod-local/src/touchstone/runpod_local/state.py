"""The fake's state: fault switches, injected responses, the pod ledger and the pods.

Nothing here does I/O. ``FakePod.to_json`` renders the v2 ``Pod`` object exactly; the
server (``server.py``) moves pods through their statuses and owns their SSH endpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .schema import Mounts, UpdatePodRequest
from .validate import Problem

if TYPE_CHECKING:
    from .container import ContainerPod
    from .ssh import PodSsh

ACTIONS_BY_STATUS: dict[str, list[str]] = {
    "RUNNING": ["stop", "restart", "terminate"],
    "EXITED": ["start", "terminate"],
    "ERROR": ["start", "terminate"],
    "PROVISIONING": ["stop", "terminate"],
    "STARTING": ["stop", "terminate"],
    "TERMINATED": [],
}


class SshMode(StrEnum):
    """How a running pod's SSH behaves."""

    OK = "ok"
    """``ssh.direct`` appears and sshd accepts (after any slow pull)."""
    NO_DIRECT = "no_direct"
    """RUNNING forever with ``ssh.direct`` null and nothing listening."""
    REFUSE = "refuse"
    """``ssh.direct`` appears but every connection is dropped before the handshake."""


class Injection(BaseModel):
    """A canned answer for the next ``times`` matching requests (after auth).

    ``path`` matches as a prefix of the request path, ``method`` exactly (None: any).
    ``apply_first`` runs the real handler first and then answers with this instead: a
    create that makes the pod and still answers 500.
    ``body``: ``problem`` (v2 problem+json), ``v1`` (``{"error": ..., "status": N}``),
    ``graphql`` (``{"errors": [...], "data": {"myself": null}}``), ``html`` (not JSON).
    """

    model_config = ConfigDict(extra="forbid")

    status: int = 500
    method: str | None = None
    path: str = "/"
    times: int = Field(default=1, ge=1)
    retry_after: int | None = None
    body: Literal["problem", "v1", "graphql", "html"] = "problem"
    detail: str | None = None
    apply_first: bool = False

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and path.startswith(self.path)


class Faults(BaseModel):
    """Switches for the fake's behaviour. Pod-level switches are read when a pod is created,
    so a pod keeps the behaviour it was born with."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    balance: float = 100.0
    """Account balance in USD; a create needs one hour of the pod's cost (else 402)."""
    no_capacity: set[str] = Field(default_factory=set)
    """GPU type ids with no capacity: create answers 400 "no longer any instances"."""
    forbidden: set[str] = Field(default_factory=set)
    """GPU type ids in a pool this account may not use: create answers 403."""
    revoked: bool = False
    """The API key stopped working: every v2 call answers 401, GraphQL ``myself`` is null."""
    pull_s: float = 0.0
    """Slow image pull: seconds a pod is RUNNING before SSH accepts."""
    ssh_direct_during_pull: bool = False
    """During the pull, show ``ssh.direct`` anyway (connections are dropped until ready)."""
    ssh: SshMode = SshMode.OK
    stuck_starting: bool = False
    """New pods stay STARTING forever."""
    fail_on_start: bool = False
    """New pods go to ERROR instead of RUNNING."""
    die_after_s: float | None = None
    """New pods die (ERROR, SSH closed, processes killed) this long after RUNNING."""
    create_answer_delay_s: float = Field(0.0, ge=0, le=60)
    """The answer to a create is held this long after the pod is made: a caller can die
    between the create and its record of the pod (the pod exists, the caller never heard)."""


@dataclass(frozen=True)
class Behaviour:
    """The pod-level faults a pod was created with."""

    pull_s: float = 0.0
    ssh_direct_during_pull: bool = False
    ssh: SshMode = SshMode.OK
    stuck_starting: bool = False
    fail_on_start: bool = False
    die_after_s: float | None = None

    @classmethod
    def from_faults(cls, faults: Faults) -> Behaviour:
        return cls(
            pull_s=faults.pull_s,
            ssh_direct_during_pull=faults.ssh_direct_during_pull,
            ssh=faults.ssh,
            stuck_starting=faults.stuck_starting,
            fail_on_start=faults.fail_on_start,
            die_after_s=faults.die_after_s,
        )


@dataclass(frozen=True)
class PodRecord:
    """One line of the ledger of every pod ever created; no clock, only an order."""

    seq: int
    id: str
    name: str
    gpu_type_id: str | None
    status: str
    """The pod's last RunPod status (``TERMINATED`` once deleted)."""
    terminated: bool = False


@dataclass
class FakePod:
    """One pod: the v2 fields plus what the fake needs to run it."""

    id: str
    name: str
    body: dict[str, Any]
    """The create body's echoed fields: image, args, disk, ports, env, registry, mounts."""
    gpu: dict[str, Any]
    cloud: str
    data_center_id: str
    cost: float
    created_ns: int
    """Wall clock (ns since the epoch) of the create; rendered with RunPod's nanoseconds."""
    behaviour: Behaviour
    cuda_version: str | None = None
    """The CUDA version of the host it was placed on (each GPU type has its own)."""
    global_networking: bool = False
    status: str = "PROVISIONING"
    stopping: bool = False
    """A stop was asked: the pod shows its status until the next observation, then EXITED."""
    locked: bool = False
    started_ns: int | None = None
    polls: int = 0
    running_since: float | None = None
    """Fake clock value when the pod last reached RUNNING."""
    ssh: PodSsh | None = field(default=None, repr=False)
    """The asyncssh endpoint (the ``ssh`` pod backend) while running."""
    container: ContainerPod | None = field(default=None, repr=False)
    """The container (the ``docker`` pod backend), from its first start until terminated."""
    ssh_port: int | None = None
    ssh_host: str = "127.0.0.1"
    """The address the pod's sshd listens on and ``ssh.direct`` names: the fake's own address
    (a fake on a host of its own is reached over the network, not on loopback)."""

    def ssh_ready(self, now: float) -> bool:
        """Whether a connection to the pod's sshd would be accepted at ``now``."""
        return (
            self.status == "RUNNING"
            and self.behaviour.ssh is SshMode.OK
            and self.running_since is not None
            and now >= self.running_since + self.behaviour.pull_s
        )

    def _direct_visible(self, now: float) -> bool:
        if self.status != "RUNNING" or self.ssh_port is None or self.running_since is None:
            return False
        if self.behaviour.ssh is SshMode.NO_DIRECT:
            return False
        pulled = now >= self.running_since + self.behaviour.pull_s
        return pulled or self.behaviour.ssh_direct_during_pull

    def _ssh(self, now: float) -> dict[str, Any]:
        """``ssh``: no proxy until the pod is placed on a host, ``direct`` once sshd is reachable."""
        direct = proxy = None
        if self._direct_visible(now):
            command = f"ssh root@{self.ssh_host} -p {self.ssh_port}"
            direct = {"host": self.ssh_host, "port": self.ssh_port, "username": "root", "command": command}
        if self.status != "PROVISIONING":
            user = f"{self.id}-64411eb2"
            proxy = {"host": "ssh.runpod.io", "port": 22, "username": user, "command": f"ssh {user}@ssh.runpod.io"}
        return {"proxy": proxy, "direct": direct}

    def _runtime(self, now: float, direct: bool) -> dict[str, Any] | None:
        """``runtime``: null before the host has it, ``{}`` while starting, figures while running."""
        if self.status == "PROVISIONING":
            return None
        if self.status != "RUNNING" or self.running_since is None:
            return {}
        runtime: dict[str, Any] = {
            "uptime": int(now - self.running_since),
            "gpus": [{"util": 0, "memoryUtil": 0} for _ in range(int(self.gpu.get("count", 1)))],
            "cpu": {"util": 1},
            "memory": {"util": 3},
        }
        if direct:
            runtime["ports"] = [{"private": 22, "public": self.ssh_port, "type": "tcp", "ip": self.ssh_host}]
        return runtime

    def to_json(self, now: float) -> dict[str, Any]:
        """The v2 ``Pod`` object as RunPod would render it at fake-clock ``now``."""
        ssh = self._ssh(now)
        networking: dict[str, Any] = {"enabled": self.global_networking}
        if self.global_networking:
            networking.update(ip=f"10.65.{len(self.id)}.2", internalDns=f"{self.id}.runpod.internal")
        return {
            "id": self.id,
            "name": self.name,
            "image": self.body.get("image", ""),
            "args": self.body.get("args", ""),
            "disk": self.body.get("disk", 20),
            "ports": list(self.body.get("ports", [])),
            "env": dict(self.body.get("env", {})),
            "registry": self.body.get("registry"),
            "status": self.status,
            "actions": list(ACTIONS_BY_STATUS[self.status]),
            "mounts": dict(self.body.get("mounts", {})),
            "gpu": dict(self.gpu),
            "cloud": self.cloud,
            "dataCenterId": self.data_center_id,
            "cudaVersion": self.cuda_version,
            "ssh": ssh,
            "template": None,
            "cost": 0.0 if self.status in ("EXITED", "TERMINATED") else self.cost,
            "locked": self.locked,
            "globalNetworking": networking,
            "runtime": self._runtime(now, ssh["direct"] is not None),
            "createdAt": rfc3339_nano(self.created_ns),
            "startedAt": rfc3339_nano(self.started_ns) if self.started_ns is not None else None,
        }


def rfc3339_nano(ns: int) -> str:
    """UTC time as Go's ``RFC3339Nano`` writes it: up to nine fraction digits, trailing zeros
    dropped, no fraction at all on a whole second."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if fraction:
        text += "." + f"{fraction:09d}".rstrip("0")
    return text + "Z"


def apply_update(pod: FakePod, request: UpdatePodRequest) -> None:
    """A validated ``PATCH`` on ``pod``, with the handler's rules on mounts (400) and
    templates (404: the fake has none)."""
    if request.templateId is not None:
        raise Problem(404, f"template not found: {request.templateId}")
    if request.mounts is not None:
        pod.body["mounts"] = _patched_mounts(pod.body.get("mounts", {}), request.mounts)
    sent = request.model_dump(exclude_unset=True)
    for key in ("image", "args", "disk", "ports", "env", "registry"):
        if key in sent:
            pod.body[key] = sent[key]
    if request.name is not None:
        pod.name = request.name
    if request.locked is not None:
        pod.locked = request.locked
    if request.globalNetworking is not None:
        pod.global_networking = request.globalNetworking


def _patched_mounts(current: dict[str, Any], mounts: Mounts) -> dict[str, Any]:
    if mounts.persistent is not None and mounts.network is not None:
        raise Problem(400, "at most one of mounts.persistent and mounts.network may be set")
    if mounts.network == []:
        raise Problem(400, "mounts.network cannot be cleared")
    if mounts.network is not None:
        if "network" not in current:
            raise Problem(400, "the mount kind is fixed at create: this pod has no network mount")
        if mounts.network[0].volumeId != current["network"][0]["volumeId"]:
            raise Problem(400, "the volumeId of a network mount cannot be changed")
        return {"network": [mounts.network[0].model_dump()]}
    if mounts.persistent is not None:
        if "persistent" not in current:
            raise Problem(400, "the mount kind is fixed at create: this pod has no persistent mount")
        return {"persistent": mounts.persistent.model_dump()}
    return current
