"""Where a feature set may be fetched from, decided where the fetch happens.

The API judges a git URL as written; this module judges the address git will actually connect
to. ``FetchPolicy.plan(url)`` classifies the URL the way git does (a URL with ``scheme://``,
an scp-like ``[user@]host:path``, else a local path), resolves a network host once, refuses
addresses that must never be reached, and returns the git options that pin the connection to
the address it checked, so a second DNS answer (rebinding) cannot send git elsewhere:

* https/http: ``http.curloptResolve=host:port:addr`` and no redirects;
* ssh: ``GIT_SSH_COMMAND`` with ``HostName=addr`` (``HostKeyAlias`` keeps the host key check on
  the name), only the configured deploy key (``IdentitiesOnly``, no agent, no user or system
  ssh config), never the service account's own keys;
* git://: the URL's host replaced by the address (no TLS, so nothing else names the host).

Always refused: link-local (``169.254.0.0/16``, ``fe80::/10``), cloud metadata addresses,
unspecified, multicast and reserved ones. Loopback is a local source: refused unless the
operator enables local sources (``allow_local``: an embedded ``touchstone up`` on one machine;
never production), like local paths and ``file://``. Private ranges only with
``allow_private``.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]


class FetchRefused(Exception):
    """The fetch policy forbids this source (permanent: retrying cannot help)."""


LOOPBACK: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
ALWAYS_DENIED: tuple[str, ...] = (
    "0.0.0.0/8",
    "169.254.0.0/16",  # link-local, AWS/GCP/Azure metadata at 169.254.169.254
    "100.100.100.200/32",  # Alibaba Cloud metadata
    "192.0.0.192/32",  # Oracle Cloud metadata
    "::/128",
    "fe80::/10",
    "fd00:ec2::254/128",  # AWS metadata over IPv6
)
PRIVATE: tuple[str, ...] = (
    "10.0.0.0/8",
    "100.64.0.0/10",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",
)
NETWORK_SCHEMES = frozenset({"https", "http", "ssh", "git+ssh", "ssh+git", "git"})
_DEFAULT_PORTS = {"https": 443, "http": 80, "ssh": 22, "git+ssh": 22, "ssh+git": 22, "git": 9418}
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_SCP = re.compile(r"^(?:(?P<user>[^@/:]+)@)?(?P<host>\[[^\]/]+\]|[^@/:\[\]]+):(?P<path>.*)$")


def _networks(cidrs: Sequence[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (the system's resolver, as git's would use)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as e:
        raise FetchRefused(f"the git host {host} does not resolve: {e}") from e
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class GitPlan:
    """How to run git for one source: the URL to hand it, ``-c`` options and extra env."""

    url: str
    local: bool = False
    config: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FetchPolicy:
    """The rules one fetching process applies (built from its settings)."""

    allow_local: bool = False
    """Local sources: paths, ``file://`` URLs and git servers on loopback (an embedded
    ``touchstone up``; never production)."""
    allow_private: bool = False
    """Private ranges (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7): an in-house git server."""
    allowed_hosts: tuple[str, ...] = ()
    """Host names (``*.`` matches subdomains) a source may name; empty means any public host."""
    ssh_key: Path | None = None
    """The deploy key for ssh sources; without one, ssh sources are refused."""
    ssh_known_hosts: Path | None = None
    """Known host keys for ssh; unset means trust on first use, kept beside the deploy key."""
    resolve: Resolver = system_resolver
    """The resolver seam (tests map names without touching the system's)."""
    always_denied: tuple[str, ...] = ALWAYS_DENIED
    """Never reached whatever else is allowed (tests of pinning may narrow it)."""

    def plan(self, url: str) -> GitPlan:
        """Classify ``url`` as git would and check it; ``FetchRefused`` when not allowed."""
        if not url or url.startswith("-") or any(ord(c) < 0x20 or c == "\x7f" for c in url):
            raise FetchRefused(f"refusing git URL {url!r}")
        if "::" in url.split("/", 1)[0] and not _SCHEME.match(url):
            raise FetchRefused("git transport helpers (such as ext::) are not allowed")
        if m := _SCHEME.match(url):
            scheme = m.group(1).lower()
            if scheme == "file":
                return self._local(urlsplit(url).path, url)
            if scheme not in NETWORK_SCHEMES:
                raise FetchRefused(f"the scheme {scheme}:// is not allowed")
            return self._network_url(url, scheme)
        scp = _SCP.match(url)
        if scp and "/" not in url.split(":", 1)[0]:
            host = scp.group("host").strip("[]")
            return self._ssh(url, host, 22)
        return self._local(url, url)

    # --- the three kinds ------------------------------------------------------------------

    def _local(self, path: str, url: str) -> GitPlan:
        if not self.allow_local:
            raise FetchRefused("local feature set sources (paths, file://) are not allowed here")
        if not path.startswith("/"):
            raise FetchRefused(f"a local source must be an absolute path, not {path!r}")
        return GitPlan(url, local=True, config=("protocol.file.allow=always",))

    def _network_url(self, url: str, scheme: str) -> GitPlan:
        try:
            parts = urlsplit(url)
            host, port = parts.hostname, parts.port or _DEFAULT_PORTS[scheme]
        except ValueError as e:
            raise FetchRefused(f"not a valid URL ({e})") from e
        if not host:
            raise FetchRefused("the git URL has no host")
        if scheme in ("http", "git") and not (self.allow_local or self.allow_private):
            raise FetchRefused(f"plain {scheme}:// is not allowed; use https:// or ssh://")
        if scheme in ("ssh", "git+ssh", "ssh+git"):
            return self._ssh(url, host, port)
        addr = self.check_host(host, port)
        literal = f"[{addr}]" if ":" in addr else addr
        if scheme == "git":
            netloc = f"{literal}:{port}"
            return GitPlan(urlunsplit((scheme, netloc, parts.path, parts.query, parts.fragment)))
        return GitPlan(url, config=(f"http.curloptResolve={host}:{port}:{literal}", "http.followRedirects=false"))

    def _ssh(self, url: str, host: str, port: int) -> GitPlan:
        if self.ssh_key is None:
            raise FetchRefused("ssh sources need a deploy key, and none is configured")
        addr = self.check_host(host, port)
        known = self.ssh_known_hosts or self.ssh_key.with_name(self.ssh_key.name + ".known_hosts")
        options = [
            "-F", "/dev/null", "-i", str(self.ssh_key),
            "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "BatchMode=yes",
            "-o", f"HostName={addr}", "-o", f"HostKeyAlias={host}",
            "-o", f"UserKnownHostsFile={known}", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=" + ("yes" if self.ssh_known_hosts else "accept-new"),
            "-o", "ForwardAgent=no", "-o", "ControlMaster=no", "-o", "ControlPath=none",
            "-o", "ConnectTimeout=15",
        ]  # fmt: skip
        return GitPlan(url, config=("ssh.variant=ssh",), env={"GIT_SSH_COMMAND": shlex.join(["ssh", *options])})

    # --- hosts and addresses --------------------------------------------------------------

    def check_host(self, host: str, port: int) -> str:
        """The one address git may connect to for ``host``; ``FetchRefused`` when the name is
        not allowed or any address it resolves to is denied."""
        name = host.lower().rstrip(".")
        if self.allowed_hosts and not any(_matches(name, p) for p in self.allowed_hosts):
            raise FetchRefused(f"the git host {host} is not on the allowed list")
        literal = _as_ip(name)
        addresses = [str(literal)] if literal is not None else list(self.resolve(name, port))
        if not addresses:
            raise FetchRefused(f"the git host {host} does not resolve")
        for text in addresses:
            self._check_address(host, _as_ip(text))
        return str(_as_ip(addresses[0]))

    def _check_address(self, host: str, ip: IP | None) -> None:
        if ip is None:
            raise FetchRefused(f"the git host {host} resolves to something that is not an address")
        for net in _networks(self.always_denied):
            if ip.version == net.version and ip in net:
                raise FetchRefused(f"the git host {host} is {ip}, in a denied network ({net})")
        if not self.allow_local:
            for net in _networks(LOOPBACK):
                if ip.version == net.version and ip in net:
                    raise FetchRefused(f"the git host {host} is {ip}, in a denied network ({net}): a local source")
        if not self.allow_private:
            for net in _networks(PRIVATE):
                if ip.version == net.version and ip in net:
                    raise FetchRefused(f"the git host {host} is {ip}, a private address")
        if ip.is_loopback:
            return  # allowed above: local sources are on
        if ip.is_multicast or ip.is_reserved or (ip.is_unspecified and bool(self.always_denied)):
            raise FetchRefused(f"the git host {host} is {ip}, not a public address")


def _matches(name: str, pattern: str) -> bool:
    p = pattern.lower().rstrip(".")
    return name == p or (p.startswith("*.") and name.endswith(p[1:]))


def _as_ip(text: str) -> IP | None:
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        if not re.fullmatch(r"[0-9a-fA-FxX.]+", text):
            return None
        try:  # forms the C resolver still accepts: 127.1, 0x7f.0.0.1, 2130706433
            ip = ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip
