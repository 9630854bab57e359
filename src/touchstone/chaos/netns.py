"""Hosts on one machine: Linux network namespaces plugged into one switch.

A ``Network`` owns a switch (a bridge inside a namespace of its own) and the hosts plugged
into it, each a namespace with one veth link (``eth0``) and an address in a /24 that the
network picked as unused on this machine. The machine itself (the test process) is plugged in
too, so a test reaches every host; hosts reach one another by name through a hosts file per
namespace (``ip netns exec`` mounts ``/etc/netns/NAME/hosts`` over ``/etc/hosts``).

``cut(host)`` takes a host's link down on the switch side, as a pulled cable would;
``heal(host)`` puts it back. ``only_reach(host, addresses)`` lets a host open connections to
those addresses only (an nftables output policy inside its namespace), as a GPU server's
firewall lets it reach NATS and the object store and nothing else. Needs root, iproute2
(``ip``) and nftables (``nft``).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

ETC_NETNS = Path("/etc/netns")
SUBNET_BASE = "10.213"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=30)


def available() -> str | None:
    """Why this machine cannot run the harness, or None when it can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    if shutil.which("nft") is None:
        return "nftables (nft) is not installed"
    return None


def _used_third_octets() -> set[int]:
    out = ip("-o", "-4", "addr", "show").stdout
    used = set()
    for line in out.splitlines():
        for word in line.split():
            if word.startswith(SUBNET_BASE + "."):
                used.add(int(word.split(".")[2]))
    return used


@dataclass
class Host:
    """One namespace with one link to the switch."""

    name: str
    namespace: str
    address: str
    link: str  # the switch-side end of the host's veth
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(self, argv: list[str], *, env: dict[str, str], log: Path, cwd: Path | None = None,
              ) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside this host (its own process group, output to ``log``)."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            process = subprocess.Popen(
                ["ip", "netns", "exec", self.namespace, *argv],
                env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True,
            )
        self.processes.append(process)
        return process

    def run(self, argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.namespace, *argv],
                              capture_output=True, text=True, timeout=timeout)

    def kill_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(5)
        self.processes.clear()


class Network:
    """A switch and the hosts plugged into it; ``close()`` removes every trace."""

    def __init__(self, tag: str = "") -> None:
        reason = available()
        if reason:
            raise RuntimeError(reason)
        used = _used_third_octets()
        free = [n for n in range(20, 250) if n not in used]
        self.octet = random.choice(free)
        self.prefix = f"ts{self.octet}{tag}"[:8]
        self.switch = f"{self.prefix}-sw"
        self.hosts: dict[str, Host] = {}
        self._next = 1
        ip("netns", "add", self.switch)
        self._in_switch("link", "add", "br0", "type", "bridge")
        self._in_switch("link", "set", "br0", "up")
        self._in_switch("link", "set", "lo", "up")
        # the machine itself (the test process) at .254
        self.local_link = f"{self.prefix}-me"
        self.local_address = f"{SUBNET_BASE}.{self.octet}.254"
        self._plug(self.local_link, None, self.local_address)

    def _in_switch(self, *args: str) -> None:
        ip("-n", self.switch, *args)

    def _plug(self, name: str, namespace: str | None, address: str) -> str:
        """A veth from ``namespace`` (None: this machine) to the bridge; returns the switch end."""
        peer = f"{name}-p"[:15]
        inner = name[:15]
        ip("link", "add", inner, "type", "veth", "peer", "name", peer)
        ip("link", "set", peer, "netns", self.switch)
        self._in_switch("link", "set", peer, "master", "br0")
        self._in_switch("link", "set", peer, "up")
        if namespace is None:
            ip("addr", "add", f"{address}/24", "dev", inner)
            ip("link", "set", inner, "up")
        else:
            ip("link", "set", inner, "netns", namespace)
            ip("-n", namespace, "link", "set", inner, "name", "eth0")
            ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
            ip("-n", namespace, "link", "set", "eth0", "up")
            ip("-n", namespace, "link", "set", "lo", "up")
        return peer

    def add_host(self, name: str) -> Host:
        namespace = f"{self.prefix}-{name}"[:15]
        ip("netns", "add", namespace)
        address = f"{SUBNET_BASE}.{self.octet}.{self._next}"
        self._next += 1
        link = self._plug(f"{self.prefix}{self._next - 1:02d}", namespace, address)
        host = Host(name=name, namespace=namespace, address=address, link=link)
        self.hosts[name] = host
        self._write_hosts_files()
        return host

    def _write_hosts_files(self) -> None:
        lines = ["127.0.0.1 localhost"] + [f"{h.address} {h.name}" for h in self.hosts.values()]
        for host in self.hosts.values():
            folder = ETC_NETNS / host.namespace
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "hosts").write_text("\n".join(lines) + "\n")

    def cut(self, name: str) -> None:
        """Pull the host's cable: nothing reaches it and it reaches nothing."""
        self._in_switch("link", "set", self.hosts[name].link, "down")

    def heal(self, name: str) -> None:
        self._in_switch("link", "set", self.hosts[name].link, "up")

    def split(self, name: str, others: list[str]) -> None:
        """Drop every packet between the host and the hosts ``others``, both ways; the rest of
        the network (this machine included) still reaches it. ``unsplit`` undoes it."""
        addresses = ", ".join(self.hosts[o].address for o in others)
        rules = (
            "table inet split {\n"
            f" chain in {{\n  type filter hook input priority 0;\n  ip saddr {{ {addresses} }} drop\n }}\n"
            f" chain out {{\n  type filter hook output priority 0;\n  ip daddr {{ {addresses} }} drop\n }}\n"
            "}\n"
        )
        self._nft(name, rules)

    def unsplit(self, name: str) -> None:
        self._nft(name, "delete table inet split\n")

    def _nft(self, name: str, rules: str) -> None:
        subprocess.run(["ip", "netns", "exec", self.hosts[name].namespace, "nft", "-f", "-"], input=rules,
                       check=True, capture_output=True, text=True, timeout=30)

    def only_reach(self, name: str, addresses: list[str]) -> None:
        """From now on the host opens connections to ``addresses`` only (and to itself): every
        other packet it sends, but replies on connections opened to it, is dropped."""
        allowed = ", ".join(addresses)
        rules = (
            "table inet reach {\n chain out {\n  type filter hook output priority 0; policy drop;\n"
            '  oif "lo" accept\n  ct state established,related accept\n'
            f"  ip daddr {{ {allowed} }} accept\n }}\n}}\n"
        )
        self._nft(name, rules)

    def close(self) -> None:
        for host in self.hosts.values():
            host.kill_all()
            ip("netns", "del", host.namespace, check=False)
            shutil.rmtree(ETC_NETNS / host.namespace, ignore_errors=True)
        ip("link", "del", self.local_link, check=False)
        ip("netns", "del", self.switch, check=False)
        self.hosts.clear()

