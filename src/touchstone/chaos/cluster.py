"""Three NATS nodes on three hosts, each running the shipped ``deploy/nats/cluster.conf``.

Every node has its own host (namespace), its own store directory and its own log. Nodes can be
SIGKILLed, paused (SIGSTOP) and resumed, and restarted with their data. The monitoring port of
each node answers the questions the checks ask: who leads the meta group or a stream, and what
each node holds of a stream.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from touchstone.shared.natsserver import nats_password, nats_server_binary

from touchstone.chaos.netns import Host, Network
from touchstone.chaos.pki import write_pki

REPO = Path(__file__).resolve().parents[3]
CLUSTER_CONF = REPO / "deploy" / "nats" / "cluster.conf"
CLIENT_PORT = 4222
MONITOR_PORT = 8222
SERVICES_USER = "touchstone-services"


def _agent_user_script():  # deploy/nats/agent-user.py, a script an operator runs, loaded as one
    spec = importlib.util.spec_from_file_location("agent_user", CLUSTER_CONF.parent / "agent-user.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def agent_user(host: str) -> str:
    return str(_agent_user_script().agent_user(host))


def password_var(host: str) -> str:
    return str(_agent_user_script().password_var(host))


@dataclass
class Node:
    name: str
    host: Host
    store: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host.address}:{CLIENT_PORT}"

    @property
    def monitor(self) -> str:
        return f"http://{self.host.address}:{MONITOR_PORT}"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class NatsCluster:
    """nats-1..3 on hosts of ``network``; data under ``root`` (one folder per node)."""

    def __init__(self, network: Network, root: Path, *, size: int = 3, agents: tuple[str, ...] = ()) -> None:
        self.network = network
        self.password = nats_password(18)
        self.agent_passwords = {host: nats_password(18) for host in agents}
        self.config = self._write_config(root / "conf", agents)
        self.nodes = [
            Node(f"nats-{i}", network.add_host(f"nats-{i}"), root / f"nats-{i}", root / f"nats-{i}.log")
            for i in range(1, size + 1)
        ]
        # cluster.conf speaks only TLS: one CA, one certificate naming every node
        self.pki = write_pki(root / "conf" / "tls", [n.name for n in self.nodes], [n.host.address for n in self.nodes])

    def client_tls(self) -> ssl.SSLContext:
        """What a client needs to trust the nodes (services get ``ca_file`` as a setting)."""
        return self.pki.client_context()

    @property
    def ca_file(self) -> str:
        return str(self.pki.ca)

    @property
    def url(self) -> str:
        return ",".join(n.url for n in self.nodes)

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def start(self, timeout: float = 30.0) -> None:
        for node in self.nodes:
            self._spawn(node)
        self.wait_ready(timeout)

    @staticmethod
    def _write_config(folder: Path, agents: tuple[str, ...]) -> Path:
        """The shipped ``cluster.conf`` as it is, beside the shipped ``accounts.conf`` with one
        user per agent added as an operator adds them (``deploy/nats/agent-user.py``)."""
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(CLUSTER_CONF, folder / "cluster.conf")
        accounts = (CLUSTER_CONF.parent / "accounts.conf").read_text()
        services = "      { user: touchstone-services, password: $TOUCHSTONE_SERVICES_PASSWORD }"
        if services not in accounts:
            raise RuntimeError("deploy/nats/accounts.conf no longer lists the services user as expected")
        users = [services] + [agent_user(host) for host in agents]
        (folder / "accounts.conf").write_text(accounts.replace(services, "\n".join(users)))
        return folder / "cluster.conf"

    def _spawn(self, node: Node) -> None:
        node.store.mkdir(parents=True, exist_ok=True)
        env = {"PATH": os.environ.get("PATH", ""), "NATS_SERVER_NAME": node.name,
               "NATS_STORE_DIR": str(node.store), "TOUCHSTONE_SERVICES_PASSWORD": self.password,
               "NATS_TLS_CERT": str(self.pki.cert), "NATS_TLS_KEY": str(self.pki.key), "NATS_TLS_CA": str(self.pki.ca),
               **{password_var(h): pw for h, pw in self.agent_passwords.items()}}
        node.process = node.host.spawn([nats_server_binary(), "-c", str(self.config)], env=env, log=node.log)

    def wait_ready(self, timeout: float = 30.0, nodes: list[Node] | None = None) -> None:
        """Until every node (or the given ones) answers healthy with JetStream and a meta leader."""
        deadline = time.monotonic() + timeout
        waiting = list(nodes or self.nodes)
        while waiting:
            node = waiting[0]
            if node.process is not None and node.process.poll() is not None:
                raise RuntimeError(f"{node.name} exited with {node.process.returncode}; see {node.log}")
            if self._healthy(node):
                waiting.pop(0)
                continue
            if time.monotonic() > deadline:
                raise TimeoutError(f"{node.name} not healthy within {timeout}s; see {node.log}")
            time.sleep(0.2)

    def _healthy(self, node: Node) -> bool:
        try:
            answer = httpx.get(f"{node.monitor}/healthz", timeout=2)
            return answer.status_code == 200 and bool(self.meta_leader(node))
        except httpx.HTTPError:
            return False

    # --- faults -----------------------------------------------------------------------------

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """Stop a node with ``sig`` (SIGKILL: a crash; SIGTERM: a stop as systemd or Kubernetes
        ask for it) and wait until it is gone."""
        node = self.node(name)
        if node.process and node.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.process.pid, sig)
            node.process.wait(30)

    def start_node(self, name: str) -> Node:
        """Start a killed node again on its own data, without waiting for it."""
        node = self.node(name)
        if node.alive():
            raise RuntimeError(f"{name} is still running")
        self._spawn(node)
        return node

    def restart(self, name: str, timeout: float = 30.0) -> None:
        """Start a killed node again on its own data and wait until it is healthy."""
        self.wait_ready(timeout, [self.start_node(name)])

    def pause(self, name: str) -> None:
        os.killpg(self.node(name).process.pid, signal.SIGSTOP)  # type: ignore[union-attr]

    def resume(self, name: str) -> None:
        os.killpg(self.node(name).process.pid, signal.SIGCONT)  # type: ignore[union-attr]

    def close(self) -> None:
        for node in self.nodes:
            if node.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(node.process.pid, signal.SIGCONT)  # type: ignore[union-attr]
                    os.killpg(node.process.pid, signal.SIGKILL)  # type: ignore[union-attr]
                node.process.wait(10)  # type: ignore[union-attr]

    # --- what the nodes say -----------------------------------------------------------------

    def _jsz(self, node: Node, **params: str) -> dict:
        answer = httpx.get(f"{node.monitor}/jsz", params=params, timeout=3)
        answer.raise_for_status()
        return answer.json()

    def meta_leader(self, node: Node | None = None) -> str:
        """The meta group's leader as ``node`` (default: any live node) sees it ('' if none)."""
        for candidate in [node] if node else [n for n in self.nodes if n.alive()]:
            with contextlib.suppress(httpx.HTTPError):
                leader = self._jsz(candidate).get("meta_cluster", {}).get("leader", "")
                if leader:
                    return str(leader)
        return ""

    def stream_states(self, stream: str) -> dict[str, dict]:
        """Each live node's own state of ``stream`` (messages, first/last sequence), by node."""
        states = {}
        for node in self.nodes:
            if not node.alive():
                continue
            with contextlib.suppress(httpx.HTTPError):
                data = self._jsz(node, accounts="true", streams="true")
                for account in data.get("account_details", []):
                    for detail in account.get("stream_detail", []):
                        if detail.get("name") == stream:
                            states[node.name] = {**detail.get("state", {}),
                                                 "leader": detail.get("cluster", {}).get("leader", "")}
        return states

    def stream_leader(self, stream: str) -> str:
        for state in self.stream_states(stream).values():
            if state.get("leader"):
                return str(state["leader"])
        return ""

    def answers_direct_gets(self, name: str, stream: str) -> bool:
        """Whether the node itself answers direct gets of ``stream`` (a follower joins their
        queue group once it has caught up; from then on it may answer with what it has)."""
        subject = f"$JS.API.DIRECT.GET.{stream}"
        answer = httpx.get(f"{self.node(name).monitor}/subsz", timeout=3, params={"subs": "1", "test": subject})
        answer.raise_for_status()
        return any(sub.get("subject") == subject for sub in answer.json().get("subscriptions_list", []))

    def wait_agreement(self, streams: list[str], timeout: float = 60.0) -> dict[str, dict[str, dict]]:
        """Until every node holds the same last sequence and count of every stream; the states."""
        deadline = time.monotonic() + timeout
        while True:
            states = {s: self.stream_states(s) for s in streams}
            if all(_agree(states[s], len(self.nodes)) for s in streams):
                return states
            if time.monotonic() > deadline:
                return states
            time.sleep(0.5)


def _agree(by_node: dict[str, dict], size: int) -> bool:
    if len(by_node) < size:
        return False
    shapes = {(s.get("last_seq"), s.get("messages")) for s in by_node.values()}
    return len(shapes) == 1
