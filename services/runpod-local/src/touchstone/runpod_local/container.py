"""A fake pod as a Docker container running sshd, where a Docker engine runs.

The pod image (default the task image ``touchstone-task:latest``, built by ``make images``)
must hold ``/usr/sbin/sshd``; ``why_not_docker`` says why a host cannot run such pods, and the
fake then falls back to asyncssh pods (``ssh.py``).

* The container is named ``fake-runpod-{pod id}`` and labelled ``touchstone.fake-runpod=1``
  plus its owner (host and process of the fake) and pod id, so the fake removes its own and
  those a dead fake left behind (``sweep_orphans``), never anyone else's.
* It starts like a RunPod image's ``start.sh``: the pod's ``env.PUBLIC_KEY`` becomes root's
  ``authorized_keys``, the pod's other (single-line) env variables reach every SSH session,
  then ``sshd`` runs in the foreground (key auth only, no PAM). Port 22 is published on
  127.0.0.1 at a port Docker picks. Commands run through root's login shell, as with any sshd.
* The SSH user is ``root``, as on RunPod (``ssh.direct.username`` is ``root`` there): the
  provider's commands run as root inside the container, in ``/root``. That is the contract the
  provider is written for; the container, not the user, is the boundary (default capabilities,
  ``no-new-privileges``, pids and memory limits).
* Faults: a slow pull is a container whose sshd starts ``pull_s`` later (connections to the
  published port are dropped until then); ``refuse`` is a container without sshd.
* ``stop`` kills the container and keeps its filesystem (a stopped pod keeps its disk);
  ``start`` starts it again, at a new port. ``remove`` is the pod terminated.

The ``docker`` CLI does the work (no SDK needed), every call with a timeout; secrets in the
pod's env reach the container through the CLI's environment, never its argv.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)

DEFAULT_POD_IMAGE = "touchstone-task:latest"
LABEL = "touchstone.fake-runpod"
OWNER_LABEL = "touchstone.fake-runpod.owner"
POD_LABEL = "touchstone.fake-runpod.pod"
SSHD = "/usr/sbin/sshd"
CALL_TIMEOUT_S = 60.0

_START = """\
set -e
umask 077
mkdir -p /root/.ssh /run/sshd
printf '%s\\n' "$PUBLIC_KEY" >/root/.ssh/authorized_keys
printf '%s\\n' "$FAKE_RUNPOD_ENVIRONMENT" >/root/.ssh/environment
ssh-keygen -A >/dev/null 2>&1 || true
if [ "$FAKE_RUNPOD_SSHD" != 1 ]; then exec sleep infinity; fi
sleep "$FAKE_RUNPOD_PULL_S"
exec /usr/sbin/sshd -D -e -o PermitRootLogin=prohibit-password -o PasswordAuthentication=no \\
  -o KbdInteractiveAuthentication=no -o UsePAM=no -o AllowUsers=root -o PermitUserEnvironment=yes
"""
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_usable: dict[str, str | None] = {}


class DockerPodError(Exception):
    """The engine refused or did not answer."""


async def docker(*args: str, env: Mapping[str, str] | None = None, timeout: float = CALL_TIMEOUT_S) -> str:
    """Run ``docker ARGS`` and return its stdout; ``DockerPodError`` on failure or timeout."""
    try:
        proc = await asyncio.create_subprocess_exec(
            "docker", *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=None if env is None else {**os.environ, **env},
        )
    except OSError as e:
        raise DockerPodError(f"docker: {e}") from e
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError as e:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise DockerPodError(f"docker {args[0]}: no answer within {timeout:.0f}s") from e
    if proc.returncode != 0:
        raise DockerPodError(f"docker {args[0]}: {err.decode(errors='replace').strip()}")
    return out.decode()


async def why_not_docker(image: str = DEFAULT_POD_IMAGE) -> str | None:
    """Why pods cannot be containers of ``image`` here (no CLI, no engine, no image, no sshd in
    it), or None when they can. Asked once per image and process."""
    if image not in _usable:
        _usable[image] = await _why_not(image)
    return _usable[image]


async def _why_not(image: str) -> str | None:
    if shutil.which("docker") is None:
        return "no docker CLI on PATH"
    try:
        await docker("image", "inspect", "--format", "{{.Id}}", image, timeout=15)
    except DockerPodError as e:
        return f"the pod image {image} is not available (make images): {e}"
    try:
        await docker("run", "--rm", "--network", "none", "--user", "0:0", "--entrypoint", "/bin/sh", image,
                     "-c", f"test -x {SSHD}", timeout=60)
    except DockerPodError:
        return f"the pod image {image} has no {SSHD} (rebuild it with make images)"
    return None


def owner_id() -> str:
    """This process, as the owner label of the containers it starts."""
    return f"{socket.gethostname()}-{os.getpid()}"


async def sweep_orphans() -> int:
    """Remove fake pod containers whose fake process (on this host) is gone; returns how many."""
    host = socket.gethostname()
    out = await docker("ps", "-a", "--filter", f"label={LABEL}=1", "--format",
                       f'{{{{.ID}}}} {{{{.Label "{OWNER_LABEL}"}}}}')
    dead = []
    for line in out.splitlines():
        cid, _, owner = line.partition(" ")
        owner_host, _, pid = owner.rpartition("-")
        if owner_host == host and pid.isdigit() and not _alive(int(pid)):
            dead.append(cid)
    if dead:
        log.info("removing %d fake pod containers left by dead fakes", len(dead))
        await docker("rm", "-f", *dead)
    return len(dead)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ContainerPod:
    """The container of one fake pod; ``start()`` returns the published SSH port."""

    def __init__(self, *, pod_id: str, image: str, env: Mapping[str, str], pull_s: float = 0.0,
                 serve_ssh: bool = True) -> None:
        self.pod_id = pod_id
        self.image = image
        self.name = f"fake-runpod-{pod_id}"
        self._env = {k: v for k, v in env.items() if _ENV_NAME.match(k)}
        self._env["RUNPOD_POD_ID"] = pod_id
        self._pull_s = max(0.0, pull_s)
        self._serve_ssh = serve_ssh
        self._created = False

    async def start(self) -> int:
        """Create and start the container, or start it again after ``stop``; the SSH port."""
        if self._created:
            await docker("start", self.name)
        else:
            await self._create()
        return await self._port()

    async def _create(self) -> None:
        # sshd sessions do not inherit the container's env (RunPod's start.sh exports it for
        # shells); here ~/.ssh/environment gives every session the pod's single-line variables
        session_env = "\n".join(f"{k}={v}" for k, v in sorted(self._env.items())
                                 if k != "PUBLIC_KEY" and "\n" not in v and "\r" not in v)
        env = {**self._env, "FAKE_RUNPOD_PULL_S": f"{self._pull_s:.3f}",
               "FAKE_RUNPOD_SSHD": "1" if self._serve_ssh else "0", "FAKE_RUNPOD_ENVIRONMENT": session_env}
        env_args = [arg for key in sorted(env) for arg in ("-e", key)]
        await docker(
            "run", "-d", "--name", self.name,
            "--label", f"{LABEL}=1", "--label", f"{OWNER_LABEL}={owner_id()}", "--label", f"{POD_LABEL}={self.pod_id}",
            "--user", "0:0", "--workdir", "/root", "--security-opt", "no-new-privileges",
            "--pids-limit", "512", "--memory", "2g", "--publish", "127.0.0.1::22",
            *env_args, "--entrypoint", "/bin/sh", self.image, "-c", _START,
            env=env,
        )
        self._created = True

    async def _port(self) -> int:
        out = await docker("port", self.name, "22/tcp")
        for line in out.splitlines():
            host, _, port = line.strip().rpartition(":")
            if host == "127.0.0.1" and port.isdigit():
                return int(port)
        raise DockerPodError(f"container {self.name} publishes no port for 22/tcp: {out!r}")

    async def stop(self) -> None:
        """The pod stops or dies: every process killed, the filesystem kept."""
        if self._created:
            with contextlib.suppress(DockerPodError):
                await docker("kill", self.name)

    async def remove(self) -> None:
        """The pod is terminated: the container and its filesystem are gone."""
        if self._created:
            try:
                await docker("rm", "-f", "-v", self.name)
            except DockerPodError as e:
                log.warning("could not remove fake pod container %s: %s", self.name, e)
            self._created = False
