"""Touchstone across hosts: the three-node cluster, a control host running two replicas of each
service, and GPU hosts each running an agent with a data directory of its own.

Every process is the one an operator runs (``python -m touchstone.<service>``), configured
only through its ``TOUCHSTONE_*`` settings, inside its host's namespace. The services reach
NATS with the services user and the server list; each agent with its own user, which may use
only its own subjects. GPU hosts reach the NATS nodes over the switch; nothing else of theirs
is shared: each process has its own data directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from touchstone.shared.jetstream import connect, provision, system_bucket
from touchstone.shared.subjects import Subjects
from touchstone.shared.system import Server, SystemSettings, write_system

from touchstone.chaos.cluster import SERVICES_USER, NatsCluster
from touchstone.chaos.netns import Host, Network

NAMESPACE = "touchstone"
API_PORTS = (8080, 8081)
REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples" / "feature-sets"

# (replica name, module); two of each service on the control host
SERVICES = (
    ("api-a", "touchstone.submission"), ("api-b", "touchstone.submission"),
    ("scheduler-a", "touchstone.scheduler"), ("scheduler-b", "touchstone.scheduler"),
    ("onprem-a", "touchstone.onprem_provider"), ("onprem-b", "touchstone.onprem_provider"),
)


@dataclass
class Proc:
    name: str
    host: Host
    module: str
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = self.host.spawn([sys.executable, "-m", self.module], env=self.env, log=self.log)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, as a deploy would, then SIGKILL if it lingers."""
        if not self.alive():
            return
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)  # type: ignore[union-attr]
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.process.wait(5)  # type: ignore[union-attr]


@dataclass
class System:
    root: Path
    gpu_hosts: int = 3
    slots: int = 2
    runtime: str = "process"
    settings: dict[str, str] = field(default_factory=dict)  # extra TOUCHSTONE_* for every process
    network: Network = field(init=False)
    cluster: NatsCluster = field(init=False)
    control: Host = field(init=False)
    procs: dict[str, Proc] = field(default_factory=dict)
    admin_token: str = "ts_chaos_admin_token_0123456789abcdef"

    def __post_init__(self) -> None:
        self.network = Network()
        agents = tuple(f"gpu-{i}" for i in range(1, self.gpu_hosts + 1))
        self.cluster = NatsCluster(self.network, self.root / "nats", agents=agents)
        self.control = self.network.add_host("control")
        self.gpus = [self.network.add_host(name) for name in agents]

    @property
    def services_url(self) -> str:
        return ",".join(f"nats://{SERVICES_USER}:{self.cluster.password}@{n.host.address}:4222"
                        for n in self.cluster.nodes)

    def api_urls(self) -> list[str]:
        return [f"http://{self.control.address}:{port}" for port in API_PORTS]

    async def start(self) -> None:
        await asyncio.to_thread(self.cluster.start)
        nc = await connect(self.cluster.url, "chaos-setup", user=SERVICES_USER, password=self.cluster.password,
                           tls=self.cluster.client_tls())
        js = nc.jetstream()
        subjects = Subjects(NAMESPACE)
        await provision(js, subjects, replicas=3)
        await write_system(await system_bucket(js, subjects, replicas=3), SystemSettings(
            servers=[Server(name=h.name, num_slots=self.slots) for h in self.gpus], runpod_max_running_tasks=0))
        await nc.close()
        base = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/root"),
                "TOUCHSTONE_NAMESPACE": NAMESPACE, "TOUCHSTONE_LOG_JSON": "false",
                "TOUCHSTONE_ALLOW_LOCAL_SOURCES": "true", "TOUCHSTONE_NATS_TLS_CA_FILE": self.cluster.ca_file,
                **self.settings}
        ports = iter(API_PORTS)
        # the control host's embedded object store: one folder and one grant key for the API (which
        # takes the agents' uploads), the results service and the providers (which sign the grants)
        objects = {"TOUCHSTONE_OBJECTS_DIR": str(self.root / "objects"),
                   "TOUCHSTONE_OBJECTS_URL": f"{self.api_urls()[0]}/objects",
                   "TOUCHSTONE_UPLOAD_GRANT_KEY": secrets.token_hex(32)}
        for name, module in SERVICES:
            env = {**base, **objects, "TOUCHSTONE_NATS_URL": self.services_url,
                   "TOUCHSTONE_DATA_DIR": str(self.root / name), "TOUCHSTONE_INSTANCE_ID": name}
            if module == "touchstone.submission":
                env.update(TOUCHSTONE_HOST="0.0.0.0", TOUCHSTONE_PORT=str(next(ports)),
                           TOUCHSTONE_ADMIN_TOKEN=self.admin_token, TOUCHSTONE_DENIED_NETWORKS="[]")
            self._add(name, self.control, module, env)
        for host in self.gpus:
            env = {**base, "TOUCHSTONE_NATS_URL": self.cluster.url, "TOUCHSTONE_DATA_DIR": str(self.root / host.name),
                   "TOUCHSTONE_HOST": host.name, "TOUCHSTONE_NATS_USER": f"agent-{host.name}",
                   "TOUCHSTONE_NATS_PASSWORD": self.cluster.agent_passwords[host.name],
                   "TOUCHSTONE_NUM_SLOTS": str(self.slots), "TOUCHSTONE_RUNTIME": self.runtime}
            self._add(f"agent-{host.name}", host, "touchstone.agent", env)
        for proc in self.procs.values():
            proc.start()
        await self.wait_api()

    def _add(self, name: str, host: Host, module: str, env: dict[str, str]) -> None:
        self.procs[name] = Proc(name, host, module, env, self.root / "logs" / f"{name}.log")

    async def wait_api(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=3) as client:
            for url in self.api_urls():
                while True:
                    with contextlib.suppress(httpx.HTTPError):
                        if (await client.get(f"{url}/readyz")).status_code == 200:
                            break
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{url} not ready; see {self.root / 'logs'}")
                    await asyncio.sleep(0.3)

    def close(self) -> None:
        for proc in self.procs.values():
            proc.signal(signal.SIGCONT)
            proc.signal(signal.SIGKILL)
        for host in [self.control, *self.gpus]:
            host.kill_all()
        self.cluster.close()
        self.network.close()

    def tail(self, name: str, lines: int = 30) -> str:
        log = self.procs[name].log
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""
