"""``FakeRunpod``: a local RunPod (REST v2 + GraphQL balance) whose pods are real SSH endpoints.

    async with FakeRunpod(api_key="k", root=tmp_path) as fake:
        httpx.get(fake.base_url + "/pods", headers={"Authorization": "Bearer k"})  # {"pods": []}

Pods move ``PROVISIONING → STARTING → RUNNING`` as they are observed (each GET of the pod or
of the list counts once): ``polls_to_starting`` and ``polls_to_running`` observations after
create or start. No clock is involved, except for the time-based faults (slow pulls, pods
that die after a while), which read ``clock``. Faults are set with ``fake.faults``,
``fake.inject()``, ``fake.kill_pod()``, or over HTTP under ``/_fake/`` (see ``app.py``).
``fake.ledger()`` lists every pod ever created, terminated or not.

Pods are real SSH endpoints of one of two kinds (``pod_backend``): ``docker``, a container of
``pod_image`` running sshd (``container.py``), chosen by ``auto`` when the engine answers and
the image has ``/usr/sbin/sshd``; otherwise ``ssh``, an asyncssh server that runs commands in a
per-pod directory on this host (``ssh.py``). ``auto`` logs why it fell back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import socket
import string
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Literal, Self

import asyncssh
import uvicorn

from . import catalog
from .app import build_app
from .container import DEFAULT_POD_IMAGE, ContainerPod, DockerPodError, sweep_orphans, why_not_docker
from .ratelimit import RateLimiter
from .schema import CreatePodRequest, GpuQuery
from .ssh import PodSsh
from .state import ACTIONS_BY_STATUS, Behaviour, FakePod, Faults, Injection, PodRecord, SshMode
from .validate import LOW_BALANCE, NO_CAPACITY, Problem

log = logging.getLogger(__name__)

_ID_ALPHABET = string.ascii_lowercase + string.digits
PodBackend = Literal["auto", "ssh", "docker"]


class FakeRunpod:
    """A faithful local RunPod API; see the module docstring."""

    def __init__(
        self,
        *,
        api_key: str = "fake-runpod-key",
        root: Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        polls_to_starting: int = 1,
        polls_to_running: int = 2,
        faults: Faults | None = None,
        rate_limiter: RateLimiter | None = None,
        exec_env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        pod_backend: PodBackend = "auto",
        pod_image: str = DEFAULT_POD_IMAGE,
    ) -> None:
        """``root``: where pod directories go (a temporary directory when None).
        ``exec_env``: extra environment for commands run in pods (e.g. a ``PATH``).
        ``pod_backend``: ``ssh`` (an asyncssh server per pod), ``docker`` (a container of
        ``pod_image`` running sshd per pod) or ``auto`` (docker when usable, see ``start``)."""
        self.api_key = api_key
        self.pod_backend: PodBackend = pod_backend
        self.pod_image = pod_image
        self.why_not_docker: str | None = None
        """Why pods are not containers (after ``start``), or None when they are."""
        self.faults = faults or Faults()
        self.polls_to_starting = polls_to_starting
        self.polls_to_running = max(polls_to_running, polls_to_starting)
        self.clock = clock
        self.rate_limiter = rate_limiter or RateLimiter(clock=clock)
        self.ssh_keys: list[str] = []
        self._host, self._port = host, port
        self._root_arg = root
        self._root: Path | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._exec_env = dict(exec_env or {})
        self._pods: dict[str, FakePod] = {}
        self._ledger: dict[str, PodRecord] = {}
        self._injections: list[Injection] = []
        self._host_key: asyncssh.SSHKey | None = None
        self._server: _QuietServer | None = None
        self._serving: asyncio.Task[None] | None = None
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Bind the HTTP port and serve; returns once requests are accepted."""
        if self._root_arg is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="fake-runpod-")
            self._root = Path(self._tmp.name)
        else:
            self._root = Path(self._root_arg)
            self._root.mkdir(parents=True, exist_ok=True)
        self._host_key = asyncssh.generate_private_key("ssh-ed25519")
        await self._choose_pod_backend()
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted sockets only then.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, self._port))
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            build_app(self),
            log_level="warning",
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        self._server = _QuietServer(config)
        self._serving = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._serving.done():
                await self._serving
                raise RuntimeError("the fake RunPod server did not start")
            await asyncio.sleep(0.005)

    async def _choose_pod_backend(self) -> None:
        """``auto`` becomes ``docker`` when containers with sshd can run here, else ``ssh``;
        an explicit ``docker`` that cannot run is an error."""
        if self.pod_backend == "ssh":
            self.why_not_docker = "asyncssh pods were asked for"
            return
        self.why_not_docker = await why_not_docker(self.pod_image)
        if self.why_not_docker is None:
            self.pod_backend = "docker"
            try:
                await sweep_orphans()
            except DockerPodError as e:
                log.warning("fake RunPod: could not sweep containers of dead fakes: %s", e)
        elif self.pod_backend == "docker":
            raise RuntimeError(f"fake RunPod: pods cannot be containers here: {self.why_not_docker}")
        else:
            log.info("fake RunPod: pods are asyncssh servers, not containers: %s", self.why_not_docker)
            self.pod_backend = "ssh"

    async def stop(self) -> None:
        """Stop serving, close every pod's SSH and kill its processes, remove its container."""
        for pod in list(self._pods.values()):
            await self._halt(pod)
            if pod.container is not None:
                await pod.container.remove()
        if self._server is not None and self._serving is not None:
            self._server.wake()
            await self._serving
            self._server = self._serving = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def pod_host(self) -> str:
        """Where asyncssh pods listen and what their ``ssh.direct`` names: the fake's own address
        (loopback when it serves on every address, which names no one host)."""
        return "127.0.0.1" if self._host in ("0.0.0.0", "") else self._host

    @property
    def base_url(self) -> str:
        """The REST v2 base URL (``.../v2``), for ``RunpodApiClient``."""
        return f"http://{self._host}:{self._port}/v2"

    @property
    def graphql_url(self) -> str:
        return f"http://{self._host}:{self._port}/graphql"

    # --- fault switches ---------------------------------------------------------------

    def inject(self, injection: Injection) -> None:
        """Answer the next matching requests with a canned response (see ``Injection``)."""
        self._injections.append(injection)

    def take_injection(self, method: str, path: str) -> Injection | None:
        """The first injection matching this request, used up by one."""
        for i, injection in enumerate(self._injections):
            if injection.matches(method, path):
                if injection.times <= 1:
                    del self._injections[i]
                else:
                    self._injections[i] = injection.model_copy(update={"times": injection.times - 1})
                return injection
        return None

    async def kill_pod(self, pod_id: str, status: str = "ERROR") -> None:
        """The pod dies mid-run: SSH closes, its processes are killed, its status changes."""
        pod = self._pods.get(pod_id)
        if pod is None:
            raise KeyError(pod_id)
        async with self._lock:
            pod.status = status
            self._record(pod)
            await self._halt(pod)

    def ssh_port(self, pod_id: str) -> int | None:
        """The port a pod's sshd listens on, even while ``ssh.direct`` hides it."""
        pod = self._pods.get(pod_id)
        return pod.ssh_port if pod else None

    def workdir(self, pod_id: str) -> Path:
        """The pod's directory: its commands run and its SFTP paths start there."""
        assert self._root is not None
        return self._root / pod_id

    # --- what tests assert on ---------------------------------------------------------

    def ledger(self) -> list[PodRecord]:
        """Every pod ever created, in creation order, with its last status."""
        return sorted(self._ledger.values(), key=lambda r: r.seq)

    def live_pods(self) -> list[str]:
        """Ids of pods not terminated (what ``GET /v2/pods`` would list)."""
        return list(self._pods)

    def spend_per_hour(self) -> float:
        now = self.clock()
        return round(sum(float(p.to_json(now)["cost"]) for p in self._pods.values()), 6)

    # --- the API's behaviour (called by app.py) ---------------------------------------

    def find(self, pod_id: str) -> FakePod:
        pod = self._pods.get(pod_id)
        if pod is None:
            raise Problem(404, "pod not found")
        return pod

    def pods(self) -> Iterator[FakePod]:
        return iter(list(self._pods.values()))

    async def create(self, request: CreatePodRequest) -> FakePod:
        """Place and store a pod for a schema-valid create body, or raise ``Problem``."""
        gpu = request.gpu
        if gpu is None:
            raise Problem(400, "cpu flavor not found: the fake rents GPU pods only")
        offer = catalog.find(gpu.id)
        if offer is None:
            raise Problem(400, f"gpu type not found: {gpu.id}")
        count, cloud = gpu.count or 1, request.cloud or "SECURE"
        if count > offer.max_count(cloud) and offer.offered(cloud):
            raise Problem(400, f"gpu.count exceeds maxCount {offer.max_count(cloud)} on {cloud}")
        if offer.id in self.faults.forbidden:
            raise Problem(403, "your account cannot access the requested pool")
        if request.globalNetworking and offer.manufacturer != "NVIDIA":
            raise Problem(400, "global networking requires an NVIDIA GPU")
        if request.mounts is not None and request.mounts.network:
            raise Problem(400, f"network volume not found: {request.mounts.network[0].volumeId}")
        cudas = catalog.cuda_versions(offer, gpu.allowedCudaVersions or (), gpu.minCudaVersion)
        wanted = GpuQuery(include=True, products=("POD",), count=count, cloud=cloud)
        stock = catalog.stock(offer, wanted, self.faults.no_capacity)
        places = [dc for dc in (request.dataCenterIds or catalog.DATA_CENTERS) if dc in stock]
        if not places or not cudas:
            raise Problem(400, NO_CAPACITY)
        cost = round(offer.price(cloud) * count, 6)
        if self.faults.balance < cost:
            raise Problem(402, LOW_BALANCE)
        echoed = request.model_dump(include={"image", "disk", "ports", "registry"}, exclude_none=True)
        echoed["args"] = request.args or ""
        if request.mounts is not None:
            echoed["mounts"] = request.mounts.model_dump(exclude_none=True)
        env = dict(request.env or {})
        if request.startSsh and "PUBLIC_KEY" not in env and self.ssh_keys:
            env["PUBLIC_KEY"] = "\n".join(self.ssh_keys)
        echoed["env"] = env
        pod = FakePod(
            id=self._new_id(), name=request.name, body=echoed, gpu={"id": offer.id, "count": count},
            cloud=cloud, data_center_id=places[0], cost=cost, created_ns=time.time_ns(),
            behaviour=Behaviour.from_faults(self.faults), cuda_version=cudas[0],
            global_networking=bool(request.globalNetworking),
            ssh_host=self.pod_host if self.pod_backend == "ssh" else "127.0.0.1",  # containers publish on loopback
        )
        assert self._root is not None
        self.workdir(pod.id).mkdir(parents=True)
        self._pods[pod.id] = pod
        self._record(pod)
        return pod

    async def observe(self, pod: FakePod) -> None:
        """One observation (a GET): advance a starting pod by one step."""
        async with self._lock:
            if pod.stopping and pod.id in self._pods:
                pod.status, pod.stopping = "EXITED", False
                self._record(pod)
                return
            if pod.status not in ("PROVISIONING", "STARTING") or pod.id not in self._pods:
                return
            pod.polls += 1
            if pod.status == "PROVISIONING" and pod.polls >= self.polls_to_starting:
                pod.status = "STARTING"
            if pod.status == "STARTING" and pod.polls >= self.polls_to_running:
                if pod.behaviour.fail_on_start:
                    pod.status = "ERROR"
                elif not pod.behaviour.stuck_starting:
                    await self._run(pod)
            self._record(pod)

    async def act(self, pod: FakePod, action: str) -> None:
        """Apply a pod action (already validated against the enum); 409 when illegal."""
        if action not in ACTIONS_BY_STATUS[pod.status]:
            raise Problem(409, f"action {action} is not valid for pod in status {pod.status}")
        if action == "stop" and pod.locked:
            raise Problem(409, "pod is locked; unlock it before stopping")
        if action == "terminate":
            await self.terminate(pod)
            return
        async with self._lock:
            if action == "stop":
                pod.stopping = True  # EXITED at the next observation; the container stops now
            else:
                pod.status, pod.stopping = "STARTING", False
                pod.polls = self.polls_to_starting
            self._record(pod)
            await self._halt(pod)

    async def terminate(self, pod: FakePod) -> None:
        """Delete the pod: SSH closed, processes killed, disk removed, kept in the ledger."""
        async with self._lock:
            pod.status = "TERMINATED"
            self._pods.pop(pod.id, None)
            self._ledger[pod.id] = replace(self._ledger[pod.id], status="TERMINATED", terminated=True)
            await self._halt(pod)
            if pod.container is not None:
                container, pod.container = pod.container, None
                await container.remove()
        shutil.rmtree(self.workdir(pod.id), ignore_errors=True)

    # --- internals ----------------------------------------------------------------------

    async def _run(self, pod: FakePod) -> None:
        pod.status = "RUNNING"
        pod.started_ns = time.time_ns()
        pod.running_since = self.clock()
        if pod.behaviour.ssh is not SshMode.NO_DIRECT and "22/tcp" in pod.body.get("ports", []):
            try:
                pod.ssh_port = await self._serve_ssh(pod)
            except DockerPodError as e:
                log.error("fake pod %s: its container did not start: %s", pod.id, e)
                pod.status = "ERROR"
                pod.running_since = None
                return
        if pod.behaviour.die_after_s is not None:
            loop = asyncio.get_running_loop()
            self._timers[pod.id] = loop.call_later(pod.behaviour.die_after_s, self._spawn_death, pod.id)

    async def _serve_ssh(self, pod: FakePod) -> int:
        """Start the pod's SSH endpoint (its container, or an asyncssh server); its port."""
        if self.pod_backend == "docker":
            if pod.container is None:
                pod.container = ContainerPod(pod_id=pod.id, image=self.pod_image, env=pod.body["env"],
                                             pull_s=pod.behaviour.pull_s, serve_ssh=pod.behaviour.ssh is SshMode.OK)
            return await pod.container.start()
        assert self._host_key is not None
        pod.ssh = PodSsh(
            pod_id=pod.id,
            workdir=self.workdir(pod.id),
            authorized_keys=pod.body["env"].get("PUBLIC_KEY", ""),
            host_key=self._host_key,
            accepting=lambda: pod.ssh_ready(self.clock()),
            env={**self._exec_env, **pod.body["env"]},
            host=self.pod_host,
        )
        return await pod.ssh.start()

    def _spawn_death(self, pod_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._die(pod_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _die(self, pod_id: str) -> None:
        self._timers.pop(pod_id, None)
        with contextlib.suppress(KeyError):
            await self.kill_pod(pod_id)

    async def _halt(self, pod: FakePod) -> None:
        """Stop whatever runs: the SSH server, its connections and processes, timers."""
        timer = self._timers.pop(pod.id, None)
        if timer is not None:
            timer.cancel()
        if pod.ssh is not None:
            ssh, pod.ssh = pod.ssh, None
            await ssh.close()
        if pod.container is not None:
            await pod.container.stop()
        pod.ssh_port = None
        pod.running_since = None

    def _record(self, pod: FakePod) -> None:
        old = self._ledger.get(pod.id)
        seq = old.seq if old else len(self._ledger) + 1
        self._ledger[pod.id] = PodRecord(
            seq=seq, id=pod.id, name=pod.name, gpu_type_id=pod.gpu.get("id"), status=pod.status
        )

    def _new_id(self) -> str:
        while True:
            candidate = "".join(secrets.choice(_ID_ALPHABET) for _ in range(14))
            if candidate not in self._ledger:
                return candidate


class _QuietServer(uvicorn.Server):
    """uvicorn without signal handlers (the fake lives inside someone else's event loop) that
    stops at once when asked (``wake()``) instead of at its next 0.1 s tick."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self.should_exit = True
        self._wake.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def main_loop(self) -> None:
        while not await self.on_tick(0):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.1)
