"""``DockerRuntime``: each attempt is a hardened container of the Docker engine (its API, through
the ``docker`` SDK). Nothing is kept beside the work directory: the engine holds the state, and
a restarted agent finds its containers again by their labels.

* ``provision`` creates the container (name, labels, limits, GPU), so a missing image or GPU
  fails early; the command is not known yet, so ``run`` replaces it by one with the same
  settings and the command, then starts it.
* the work directory is bind-mounted at the same path, so the paths in the command and its
  environment mean the same inside; it is the only writable place besides a small ``/tmp``.
* the command's stdout and stderr go to the console file in the attempt's folder, beside the
  work directory (through ``sh``, with the command as separate arguments, never a shell
  string), so they survive an agent restart and the agent streams them from there. That one
  file is bound into the container on its own: the task can write to it but cannot replace it
  by a link (a mount point cannot be renamed or removed), and sees nothing else of the
  attempt's folder.
* hardening (DESIGN §5): a non-root user, every capability dropped, ``no-new-privileges``, a
  read-only root, no network, pids / memory / CPU limits, no Docker socket, only the
  environment the agent passes, and an init process that forwards signals and reaps zombies.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
from docker.errors import DockerException, ImageNotFound, NotFound
from docker.types import DeviceRequest, Mount
from touchstone.agent.runtime import ContainerSpec, ContainerState, ContainerStatus, check_name
from touchstone.shared.commands import CONTAINER_PREFIX

OURS = "touchstone"
"""Label (value ``1``) on every container Touchstone created."""
OWNER_LABEL = "touchstone.agent"
"""The agent (host) that owns the container: agents sharing an engine leave each other's alone."""
WORK_DIR_LABEL = "touchstone.work_dir"
GPU_LABEL = "touchstone.gpu"
KEYS_LABEL = "touchstone.labels"
"""The keys of the spec's own labels (a container also carries its image's labels)."""

_STATUS: dict[str, ContainerStatus] = {
    "created": "created",
    "running": "running",
    "paused": "running",
    "restarting": "running",
    "removing": "exited",
    "exited": "exited",
    "dead": "exited",
}

_REDIRECT = 'exec "$@" >>"$0" 2>&1'


@dataclass(frozen=True)
class DockerLimits:
    """What one task container may use."""

    user: str = ""
    """``uid:gid`` inside; empty means ``65534:65534`` (nobody) for an agent running as root,
    else the agent's own uid and gid (it must be able to read what the task writes)."""
    pids: int = 512
    memory: str = "8g"
    cpus: float = 0.0
    """CPUs (fractions allowed); 0 means no limit."""
    tmp_size: str = "256m"
    """Size of the ``/tmp`` tmpfs."""


def default_user() -> str:
    return "65534:65534" if os.geteuid() == 0 else f"{os.geteuid()}:{os.getegid()}"


def engine_client(base_url: str = "", timeout_s: float = 30.0) -> docker.DockerClient:
    """A client of the engine (``base_url`` empty: ``DOCKER_HOST`` or the local socket)."""
    if base_url:
        return docker.DockerClient(base_url=base_url, timeout=int(timeout_s))
    return docker.from_env(timeout=int(timeout_s))


def docker_usable(image: str, base_url: str = "") -> str | None:
    """Why the Docker runtime cannot run here, or none when the engine answers and has ``image``."""
    try:
        client = engine_client(base_url, timeout_s=5)
    except DockerException as e:
        return f"no Docker engine: {e}"
    try:
        client.ping()
        client.images.get(image)
    except ImageNotFound:
        return f"the image {image} is missing (make images)"
    except DockerException as e:
        return f"the Docker engine does not answer: {e}"
    finally:
        client.close()
    return None


class DockerRuntime:
    """Containers of the local Docker engine, built from one task image."""

    python = "python3"
    """The interpreter inside the image (the agent's own does not exist there)."""

    def __init__(
        self,
        image: str = "touchstone-task:latest",
        *,
        owner: str = "local",
        limits: DockerLimits | None = None,
        kill_grace_s: float = 10.0,
        base_url: str = "",
        client: docker.DockerClient | None = None,
        root: Path | None = None,
    ) -> None:
        """``root``: the agent's work root; with it, ``list_ours`` leaves out containers whose
        work directory lies elsewhere (another agent of the same name sharing the engine)."""
        self.image = image
        self.owner = owner
        self.root = root.resolve() if root is not None else None
        self.limits = limits or DockerLimits()
        self.user = self.limits.user or default_user()
        if self.user.split(":")[0] == "0":
            raise ValueError("task containers never run as root")
        self.kill_grace_s = kill_grace_s
        self.client = client or engine_client(base_url)

    # --- protocol --------------------------------------------------------------------

    async def provision(self, spec: ContainerSpec) -> None:
        check_name(spec.name)
        await asyncio.to_thread(self._provision, spec)

    async def run(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], console: Path, read_only: Sequence[Path] = ()
    ) -> None:
        check_name(name)
        if not argv:
            raise ValueError("an empty command")
        await asyncio.to_thread(self._run, name, list(argv), dict(env), console, [p.resolve() for p in read_only])

    async def status(self, name: str) -> ContainerState:
        check_name(name)
        return await asyncio.to_thread(self._status, name)

    async def terminate(self, name: str) -> None:
        check_name(name)
        await asyncio.to_thread(self._terminate, name)

    async def list_ours(self) -> list[ContainerState]:
        return await asyncio.to_thread(self._list_ours)

    # --- engine calls (blocking; run in a thread) --------------------------------------

    def _get(self, name: str) -> Any | None:
        try:
            return self.client.containers.get(name)
        except NotFound:
            return None

    def _provision(self, spec: ContainerSpec) -> None:
        if self._get(spec.name) is not None:
            return
        work_dir = spec.work_dir.resolve()
        work_dir.mkdir(parents=True, exist_ok=True)
        labels = {**spec.labels, OURS: "1", OWNER_LABEL: self.owner, WORK_DIR_LABEL: str(work_dir),
                  KEYS_LABEL: ",".join(sorted(spec.labels))}
        if spec.gpu is not None:
            labels[GPU_LABEL] = str(spec.gpu)
        self._create(spec.name, ["true"], {}, labels)

    def _create(
        self, name: str, command: list[str], env: dict[str, str], labels: dict[str, str],
        read_only: Sequence[Path] = (), console: Path | None = None,
    ) -> Any:
        work_dir = labels[WORK_DIR_LABEL]
        extra = [Mount(target=str(console), source=str(console), type="bind", read_only=False)] if console else []
        gpu = labels.get(GPU_LABEL)
        env = {**env, "CUDA_VISIBLE_DEVICES": "" if gpu is None else "0"}  # its one GPU is 0 inside
        devices = [DeviceRequest(device_ids=[gpu], capabilities=[["gpu"]])] if gpu is not None else []
        lim = self.limits
        return self.client.containers.create(
            self.image,
            command=command,
            name=name,
            labels=labels,
            environment=env,
            working_dir=work_dir,
            user=self.user,
            mounts=[Mount(target=work_dir, source=work_dir, type="bind", read_only=False),
                    *(Mount(target=str(p), source=str(p), type="bind", read_only=True) for p in read_only),
                    *extra],
            tmpfs={"/tmp": f"rw,noexec,nosuid,nodev,size={lim.tmp_size}"},
            read_only=True,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            network_mode="none",
            pids_limit=lim.pids,
            mem_limit=lim.memory,
            memswap_limit=lim.memory,
            nano_cpus=int(lim.cpus * 1e9) if lim.cpus > 0 else None,
            device_requests=devices,
            init=True,
            ipc_mode="private",
            log_config={"type": "json-file", "config": {"max-size": "1m"}},
            stdin_open=False,
            tty=False,
        )

    def _run(self, name: str, argv: list[str], env: dict[str, str], console: Path, read_only: list[Path]) -> None:
        container = self._get(name)
        if container is None:
            raise RuntimeError(f"{name} is not provisioned")
        if container.status != "created":
            return  # already started
        labels = dict(container.labels)
        work_dir = Path(labels[WORK_DIR_LABEL])
        console = console.parent.resolve() / console.name
        if console.parent != work_dir.parent or console.is_relative_to(work_dir):
            raise ValueError(f"the console file {console} is not beside the work directory {work_dir}")
        fd = os.open(console, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        os.close(fd)
        self._hand_over(work_dir, console)
        container.remove(force=True)
        command = ["sh", "-c", _REDIRECT, str(console), *argv]
        self._create(name, command, env, labels, read_only, console).start()

    def _hand_over(self, work_dir: Path, console: Path) -> None:
        """Let the container's user write the work directory and the console file (an agent
        running as root gives them away, never the attempt's folder; any other agent runs the
        container as itself)."""
        if os.geteuid() != 0:
            return
        uid, _, gid = self.user.partition(":")
        uid_n, gid_n = int(uid), int(gid or uid)
        os.lchown(console, uid_n, gid_n)
        for folder, dirs, files in os.walk(work_dir):
            for entry in (folder, *(os.path.join(folder, n) for n in (*dirs, *files))):
                with contextlib.suppress(FileNotFoundError):
                    os.lchown(entry, uid_n, gid_n)

    def _status(self, name: str) -> ContainerState:
        container = self._get(name)
        if container is None:
            return ContainerState(name, "gone")
        return self._state(container)

    @staticmethod
    def _state(container: Any) -> ContainerState:
        attrs = container.attrs
        every = container.labels or {}
        labels = {k: every[k] for k in every.get(KEYS_LABEL, "").split(",") if k in every}
        state = attrs.get("State") or {}
        status = _STATUS.get(state.get("Status", ""), "exited")
        code = state.get("ExitCode") if status == "exited" else None
        return ContainerState(container.name, status, labels, code, _epoch(attrs.get("Created")))

    def _terminate(self, name: str) -> None:
        container = self._get(name)
        if container is None:
            return
        with contextlib.suppress(NotFound):
            if container.status == "running":
                container.stop(timeout=max(0, round(self.kill_grace_s)))
            container.remove(force=True)

    def _list_ours(self) -> list[ContainerState]:
        mine = [f"{OURS}=1", f"{OWNER_LABEL}={self.owner}"]
        found = self.client.containers.list(all=True, filters={"label": mine})
        return sorted(
            (self._state(c) for c in found if c.name.startswith(CONTAINER_PREFIX) and self._in_root(c)),
            key=lambda s: s.name,
        )

    def _in_root(self, container: Any) -> bool:
        if self.root is None:
            return True
        work_dir = (container.labels or {}).get(WORK_DIR_LABEL, "")
        return bool(work_dir) and Path(work_dir).parent.parent == self.root

    async def probe_python(self, code: str) -> str:
        return await asyncio.to_thread(self._probe, code)

    def _probe(self, code: str) -> str:
        out = self.client.containers.run(
            self.image, ["python3", "-c", code], remove=True, network_mode="none", user=self.user, read_only=True,
            cap_drop=["ALL"], security_opt=["no-new-privileges"], stdout=True, stderr=False,
        )
        return out.decode() if isinstance(out, bytes) else str(out)


def _epoch(created: str | None) -> float | None:
    """The engine's ``Created`` (RFC 3339 with nanoseconds) as epoch seconds."""
    if not created:
        return None
    head, _, rest = created.partition(".")
    fraction = "".join(ch for ch in rest if ch.isdigit())[:6]
    try:
        stamp = datetime.fromisoformat(head).replace(tzinfo=UTC)
    except ValueError:
        return None
    return stamp.timestamp() + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)
