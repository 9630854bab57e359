"""Touchstone across hosts: the three-node cluster, a control host running two replicas of each
service, and GPU hosts each running an agent with a data directory of its own.

Every process is the one an operator runs (``python -m touchstone.<service>``), configured
only through its ``TOUCHSTONE_*`` settings, inside its host's namespace. The services reach
NATS with the services user and the server list; each agent with its own user, which may use
only its own subjects. GPU hosts reach the NATS nodes and the object store over the switch, and
nothing else (``Network.only_reach``: their firewall); nothing else of theirs is shared: each
process has its own data directory.

RunPod is the local one (``python -m touchstone.runpod_local``) on a host of its own,
``runpod``: its pods are SSH endpoints on that host's address, so the two RunPod providers on
the control host reach them over the switch, as they would reach RunPod's. The providers share
one SSH key, as an operator deploys replicas (either can reach a pod the other created); each
copy carries its replica's name as the key's comment, which RunPod echoes in the pod's
``env.PUBLIC_KEY``: the harness can tell which replica created a pod.

The object store is moto's S3 server (``python -m moto.server``, in memory) on a host of its own,
``objects``. The services that touch the store (APIs, results, both providers) are configured
for S3 through it, as the compose file configures them for a bucket (bucket, prefix, endpoint,
region; credentials as ``AWS_*``); the agents get no credentials: they upload their outputs
with the POST-policy grants the providers hand them, straight to that host over the switch.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh
import boto3  # type: ignore[import-untyped]
import httpx
from touchstone.shared.jetstream import LogLimits, connect, provision, system_bucket
from touchstone.shared.subjects import Subjects
from touchstone.shared.system import Server, SystemSettings, write_system

from touchstone.chaos.cluster import SERVICES_USER, NatsCluster
from touchstone.chaos.invariants import bucket_keys
from touchstone.chaos.netns import Host, Network

NAMESPACE = "touchstone"
API_PORTS = (8080, 8081)
REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples" / "feature-sets"

RUNPOD_PORT = 8787
RUNPOD_KEY = "rpa_chaos_fake_key_0123456789abcdef"
OBJECTS_PORT = 5000
S3_BUCKET = "touchstone-chaos"
S3_PREFIX = "chaos/"  # a prefix inside the bucket, as an operator may set one (keys in events carry none)
S3_REGION = "us-east-1"
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "chaos-testing", "AWS_SECRET_ACCESS_KEY": "chaos-testing"}
RUNPOD_MAX_RUNNING = 3  # the system setting: RunPod takes up to this many tasks beside on-prem

# (replica name, module); two of each service on the control host
SERVICES = (
    ("api-a", "touchstone.submission"), ("api-b", "touchstone.submission"),
    ("scheduler-a", "touchstone.scheduler"), ("scheduler-b", "touchstone.scheduler"),
    ("onprem-a", "touchstone.onprem_provider"), ("onprem-b", "touchstone.onprem_provider"),
    ("results-a", "touchstone.results"), ("results-b", "touchstone.results"),
)
RUNPOD_SERVICES = (("runpod-a", "touchstone.runpod_provider"), ("runpod-b", "touchstone.runpod_provider"))
RUNPOD_FAST = {  # the provider's periods on a test's clock (its reconcile period is the leak bound)
    "TOUCHSTONE_POLL_INTERVAL_S": "0.5", "TOUCHSTONE_RECONCILE_INTERVAL_S": "5", "TOUCHSTONE_REAP_GRACE_S": "3",
    "TOUCHSTONE_HEARTBEAT_INTERVAL_S": "1", "TOUCHSTONE_BALANCE_INTERVAL_S": "10", "TOUCHSTONE_ACK_WAIT_S": "10",
    "TOUCHSTONE_LAUNCH_RETRY_S": "1", "TOUCHSTONE_READY_TIMEOUT_S": "60", "TOUCHSTONE_API_TIMEOUT_S": "10",
}


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
    runpod: bool = True  # the local RunPod on its own host and two RunPod providers
    logs: LogLimits | None = None  # the logs stream's budget, the same for every process
    notes: dict[str, object] = field(default_factory=dict)  # what a fault measured
    procs: dict[str, Proc] = field(default_factory=dict)
    admin_token: str = "ts_chaos_admin_token_0123456789abcdef"

    def __post_init__(self) -> None:
        self.network = Network()
        agents = tuple(f"gpu-{i}" for i in range(1, self.gpu_hosts + 1))
        self.cluster = NatsCluster(self.network, self.root / "nats", agents=agents)
        self.control = self.network.add_host("control")
        self.gpus = [self.network.add_host(name) for name in agents]
        self.runpod_host = self.network.add_host("runpod") if self.runpod else None
        self.fake_runpod: subprocess.Popen[bytes] | None = None
        self.objects_host = self.network.add_host("objects")
        self.s3_server: subprocess.Popen[bytes] | None = None

    @property
    def s3_endpoint(self) -> str:
        """moto's S3 endpoint on the ``objects`` host, as every host (and the test) reaches it."""
        return f"http://{self.objects_host.address}:{OBJECTS_PORT}"

    def s3_client(self) -> Any:
        return boto3.client("s3", endpoint_url=self.s3_endpoint, region_name=S3_REGION,
                            aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])

    def bucket_keys(self) -> set[str]:
        """Every object key in the bucket under the store's prefix, as events name them."""
        return bucket_keys(self.s3_client(), S3_BUCKET, S3_PREFIX)

    def _start_objects(self) -> None:
        """moto's S3 server on the ``objects`` host, and the bucket (an operator's, made once)."""
        self.s3_server = self.objects_host.spawn(
            [sys.executable, "-m", "moto.server", "-H", self.objects_host.address, "-p", str(OBJECTS_PORT)],
            env={"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/root")},
            log=self.root / "logs" / "objects.log")
        deadline = time.monotonic() + 60
        while True:
            try:
                self.s3_client().create_bucket(Bucket=S3_BUCKET)
                return
            except Exception:  # not listening yet (botocore's connection errors have no common base)
                if self.s3_server.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    @property
    def runpod_url(self) -> str:
        """The local RunPod's HTTP root (``/v2``, ``/graphql`` and its ``/_fake/`` controls)."""
        assert self.runpod_host is not None
        return f"http://{self.runpod_host.address}:{RUNPOD_PORT}"

    @property
    def services_url(self) -> str:
        return ",".join(f"nats://{SERVICES_USER}:{self.cluster.password}@{n.host.address}:4222"
                        for n in self.cluster.nodes)

    def api_urls(self) -> list[str]:
        return [f"http://{self.control.address}:{port}" for port in API_PORTS]

    async def start(self) -> None:
        await asyncio.gather(asyncio.to_thread(self.cluster.start), asyncio.to_thread(self._start_objects))
        nc = await connect(self.cluster.url, "chaos-setup", user=SERVICES_USER, password=self.cluster.password,
                           tls=self.cluster.client_tls())
        js = nc.jetstream()
        subjects = Subjects(NAMESPACE)
        await provision(js, subjects, replicas=3, logs=self.logs)
        await write_system(await system_bucket(js, subjects, replicas=3), SystemSettings(
            servers=[Server(name=h.name, num_slots=self.slots) for h in self.gpus],
            runpod_max_running_tasks=RUNPOD_MAX_RUNNING if self.runpod else 0))
        await nc.close()
        base = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/root"),
                "TOUCHSTONE_NAMESPACE": NAMESPACE, "TOUCHSTONE_LOG_JSON": "false",
                "TOUCHSTONE_ALLOW_LOCAL_SOURCES": "true", "TOUCHSTONE_NATS_TLS_CA_FILE": self.cluster.ca_file,
                **self.settings}
        if self.logs is not None:  # every process provisions on start: the same budget, or it would change it
            base.update(TOUCHSTONE_LOGS_MAX_BYTES=str(self.logs.max_bytes),
                        TOUCHSTONE_LOGS_MAX_MSGS_PER_TASK=str(self.logs.max_msgs_per_task))
        ports = iter(API_PORTS)
        # the bucket on the objects host: the APIs and results read it, the providers sign POST
        # policies for it (with these credentials) that agents and pods upload through
        objects = {"TOUCHSTONE_ARTIFACT_STORE": "s3", "TOUCHSTONE_S3_BUCKET": S3_BUCKET,
                   "TOUCHSTONE_S3_PREFIX": S3_PREFIX, "TOUCHSTONE_S3_ENDPOINT_URL": self.s3_endpoint,
                   "TOUCHSTONE_S3_REGION": S3_REGION, "AWS_EC2_METADATA_DISABLED": "true", **S3_CREDENTIALS}
        for name, module in SERVICES:
            env = {**base, **objects, "TOUCHSTONE_NATS_URL": self.services_url,
                   "TOUCHSTONE_DATA_DIR": str(self.root / name), "TOUCHSTONE_INSTANCE_ID": name}
            if module == "touchstone.submission":
                env.update(TOUCHSTONE_HOST="0.0.0.0", TOUCHSTONE_PORT=str(next(ports)),
                           TOUCHSTONE_ADMIN_TOKEN=self.admin_token, TOUCHSTONE_DENIED_NETWORKS="[]")
            self._add(name, self.control, module, env)
        if self.runpod:
            self._add_runpod({**base, **objects})  # the providers upload the pods' outputs there too
        reachable = [n.host.address for n in self.cluster.nodes] + [self.objects_host.address]
        for host in self.gpus:  # a GPU server reaches NATS and the object store only
            self.network.only_reach(host.name, reachable)
            env = {**base, "TOUCHSTONE_NATS_URL": self.cluster.url, "TOUCHSTONE_DATA_DIR": str(self.root / host.name),
                   "TOUCHSTONE_HOST": host.name, "TOUCHSTONE_NATS_USER": f"agent-{host.name}",
                   "TOUCHSTONE_NATS_PASSWORD": self.cluster.agent_passwords[host.name],
                   "TOUCHSTONE_NUM_SLOTS": str(self.slots), "TOUCHSTONE_RUNTIME": self.runtime}
            self._add(f"agent-{host.name}", host, "touchstone.agent", env)
        for proc in self.procs.values():
            proc.start()
        await self.wait_api()

    def _add_runpod(self, base: dict[str, str]) -> None:
        """The local RunPod on its host, and two providers on the control host sharing one key."""
        assert self.runpod_host is not None
        self.fake_runpod = self.runpod_host.spawn(
            [sys.executable, "-m", "touchstone.runpod_local", "--host", self.runpod_host.address,
             "--port", str(RUNPOD_PORT), "--api-key", RUNPOD_KEY, "--pods", "ssh", "--root", str(self.root / "runpod"),
             "--rate-scale", "20"],
            env={"PATH": base["PATH"], "HOME": base["HOME"]}, log=self.root / "logs" / "fake-runpod.log")
        key = asyncssh.generate_private_key("ssh-ed25519")
        for name, module in RUNPOD_SERVICES:
            data = self.root / name
            key_file = data / "runpod-provider" / "id_ed25519"
            key_file.parent.mkdir(parents=True, exist_ok=True)
            key.set_comment(name)  # the same key; its comment says which replica asked for a pod
            key_file.write_bytes(key.export_private_key())
            key_file.chmod(0o600)
            env = {**base, **RUNPOD_FAST, "TOUCHSTONE_NATS_URL": self.services_url, "TOUCHSTONE_DATA_DIR": str(data),
                   "TOUCHSTONE_INSTANCE_ID": name, "TOUCHSTONE_RUNPOD_API_KEY": RUNPOD_KEY,
                   "TOUCHSTONE_RUNPOD_BASE_URL": f"{self.runpod_url}/v2",
                   "TOUCHSTONE_RUNPOD_GRAPHQL_URL": f"{self.runpod_url}/graphql",
                   # asyncssh pods run their commands on the runpod host: this interpreter has the
                   # trainer's dependencies; the trainer is the repository's, fixed
                   "TOUCHSTONE_PYTHON": sys.executable, "TOUCHSTONE_TRAINER_SRC_DIR": str(REPO / "trainer" / "src")}
            self._add(name, self.control, module, env)

    async def runpod_ledger(self) -> list[dict]:
        """Every pod the local RunPod ever created (its own ledger): id, name, status, terminated."""
        async with httpx.AsyncClient(timeout=5) as client:
            answer = await client.get(f"{self.runpod_url}/_fake/ledger")
            answer.raise_for_status()
            body = answer.json()
        return list(body["pods"] if isinstance(body, dict) else body)

    def _add(self, name: str, host: Host, module: str, env: dict[str, str]) -> None:
        self.procs[name] = Proc(name, host, module, env, self.root / "logs" / f"{name}.log")

    async def wait_api(self, timeout: float = 90.0) -> None:
        """Until both APIs answer ready. A process that exits meanwhile is started again, as its
        supervisor would (on a loaded machine a JetStream request at startup can time out, and
        a service exits rather than run half set up); ``notes['restarted']`` counts them."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=3) as client:
            for url in self.api_urls():
                while True:
                    with contextlib.suppress(httpx.HTTPError):
                        if (await client.get(f"{url}/readyz")).status_code == 200:
                            break
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{url} not ready; see {self.root / 'logs'}")
                    self.supervise()
                    await asyncio.sleep(0.3)
        self.supervise()

    def supervise(self) -> None:
        """Start again every service process that exited (not one a fault stopped: it is
        started again by the fault itself)."""
        for proc in self.procs.values():
            if proc.process is not None and proc.process.poll() is not None:
                proc.start()
                restarted = self.notes.setdefault("restarted", [])
                assert isinstance(restarted, list)
                restarted.append(proc.name)

    def close(self) -> None:
        for proc in self.procs.values():
            proc.signal(signal.SIGCONT)
            proc.signal(signal.SIGKILL)
        for host in [self.control, *self.gpus, self.objects_host, *([self.runpod_host] if self.runpod_host else [])]:
            host.kill_all()
        self.cluster.close()
        self.network.close()

    def tail(self, name: str, lines: int = 30) -> str:
        log = self.procs[name].log
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""
