"""Input rules at the HTTP boundary: pure checks that raise ``InvalidInputError`` with a message
a person can act on. No I/O: host names are judged as written (no DNS lookups), so whatever
fetches a source must check the address it actually connects to as well.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

from touchstone.shared.errors import InvalidInputError

MAX_URL = 2048
MAX_PATH = 256
MAX_REF = 200
MAX_NAME = 120
MAX_INTERVALS = 64
MAX_INTERVAL_MINUTES = 1_000_000
MAX_ARGS = 64
MAX_ARGS_BYTES = 4096

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_TRANSPORT = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*::")
_SCP = re.compile(r"^(?:(?P<user>[^@/:\s]+)@)?(?P<host>\[[^\]/]+\]|[^@/:\[\]\s]+):(?P<path>.*)$")
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")
_NUMERIC_HOST = re.compile(r"^[0-9a-fA-FxX.]+$")
_REF_FORBIDDEN = re.compile(r"[~^:?*\[\\\s]|\.\.|@\{|//")
_GPU_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.()-]{0,79}$")

REMOTE_SCHEMES = frozenset({"https", "ssh", "git+ssh", "ssh+git"})
LOCAL_SCHEMES = frozenset({"http", "git"})


@dataclass(frozen=True)
class SourcePolicy:
    """Where feature sets may come from."""

    allow_local: bool = False
    denied_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    denied_hosts: tuple[str, ...] = field(default=("localhost", "*.localhost"))

    @classmethod
    def build(cls, allow_local: bool, networks: Iterable[str], hosts: Iterable[str]) -> SourcePolicy:
        return cls(
            allow_local=allow_local,
            denied_networks=tuple(ipaddress.ip_network(n, strict=False) for n in networks),
            denied_hosts=tuple(h.lower() for h in hosts),
        )


def _bad(field_name: str, why: str) -> InvalidInputError:
    return InvalidInputError(f"{field_name}: {why}")


def _no_control(value: str, field_name: str) -> None:
    if _CONTROL.search(value):
        raise _bad(field_name, "must not contain control characters")


# --- git_url ------------------------------------------------------------------------------


def check_git_url(url: str, policy: SourcePolicy) -> str:
    """Accept ``https://`` and ``ssh://`` / scp-like (``git@host:org/repo.git``) URLs only."""
    f = "git_url"
    if not url or len(url) > MAX_URL:
        raise _bad(f, f"must be 1-{MAX_URL} characters")
    _no_control(url, f)
    if any(c.isspace() for c in url):
        raise _bad(f, "must not contain whitespace")
    if url.startswith("-"):
        raise _bad(f, "must not start with '-' (it would be read as an option)")
    if _TRANSPORT.match(url):
        raise _bad(f, "transport helpers such as 'ext::' are not allowed")
    if m := _SCHEME.match(url):
        return _check_url_form(url, m.group(1).lower(), policy)
    if url.startswith(("/", "./", "../", "~")) or url in (".", ".."):
        if not policy.allow_local:
            raise _bad(f, "local paths are not allowed; use an https:// or ssh:// URL")
        if not url.startswith("/"):
            raise _bad(f, "a local path must be absolute")
        return url
    scp = _SCP.match(url)
    if scp:
        return _check_scp_form(scp, policy)
    raise _bad(f, "not a git URL; use https://host/org/repo.git or git@host:org/repo.git")


def _check_url_form(url: str, scheme: str, policy: SourcePolicy) -> str:
    f = "git_url"
    if scheme == "file":
        raise _bad(f, "file:// URLs are not allowed")
    allowed = REMOTE_SCHEMES | (LOCAL_SCHEMES if policy.allow_local else frozenset())
    if scheme not in allowed:
        raise _bad(f, f"the scheme {scheme}:// is not allowed; use https:// or ssh://")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port
    except ValueError as e:
        raise _bad(f, f"not a valid URL ({e})") from e
    if parts.password is not None or (parts.username is not None and scheme in ("https", "http")):
        raise _bad(f, "must not embed credentials (user names, passwords or tokens)")
    if parts.username is not None and parts.username.startswith("-"):
        raise _bad(f, "the user name must not start with '-'")
    if not host:
        raise _bad(f, "has no host")
    check_host(host, policy)
    if parts.path in ("", "/"):
        raise _bad(f, "names no repository")
    return url


def _check_scp_form(scp: re.Match[str], policy: SourcePolicy) -> str:
    f = "git_url"
    user, host, path = scp.group("user"), scp.group("host"), scp.group("path")
    if user is not None and (user.startswith("-") or ":" in user):
        raise _bad(f, "the user name must not start with '-' or carry a password")
    check_host(host.strip("[]"), policy)
    if not path or path.startswith("-"):
        raise _bad(f, "the repository path must not be empty or start with '-'")
    return scp.string


def _as_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        ip = None
    if ip is None and _NUMERIC_HOST.match(host):
        # legacy forms git's resolver still accepts: 127.1, 0x7f.0.0.1, 2130706433, 0177.0.0.1
        try:
            ip = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def check_host(host: str, policy: SourcePolicy) -> None:
    """A host name or address literal that is not on the deny lists."""
    f = "git_url"
    h = host.lower().rstrip(".")
    if not h or h.startswith("-"):
        raise _bad(f, "the host must not be empty or start with '-'")
    ip = _as_ip(h)
    if ip is not None:
        if policy.allow_local:
            return
        for net in policy.denied_networks:
            if ip.version == net.version and ip in net:
                raise _bad(f, f"the host {host} is in a denied network ({net})")
        if ip.is_multicast or ip.is_unspecified or ip.is_reserved:
            raise _bad(f, f"the host {host} is not a public address")
        return
    if not _HOSTNAME.match(h):
        raise _bad(f, f"the host {host!r} is not a valid host name")
    if policy.allow_local:
        return
    for pattern in policy.denied_hosts:
        if h == pattern or (pattern.startswith("*.") and h.endswith(pattern[1:])):
            raise _bad(f, f"the host {host} is not allowed")


# --- paths, refs, names -------------------------------------------------------------------


def check_relative_path(value: str, field_name: str) -> str:
    """A path inside the repository: relative, no '..', no control characters."""
    if not value or len(value) > MAX_PATH:
        raise _bad(field_name, f"must be 1-{MAX_PATH} characters")
    _no_control(value, field_name)
    if value.startswith(("/", "~")) or re.match(r"^[A-Za-z]:", value):
        raise _bad(field_name, "must be a relative path inside the repository")
    if "\\" in value:
        raise _bad(field_name, "must use '/' as the separator")
    if ".." in value.split("/"):
        raise _bad(field_name, "must not contain '..'")
    if value.startswith("-"):
        raise _bad(field_name, "must not start with '-'")
    return value


def check_git_ref(value: str, field_name: str) -> str:
    """A branch, tag or commit: git's ref-name rules, no option-like values."""
    if not value or len(value) > MAX_REF:
        raise _bad(field_name, f"must be 1-{MAX_REF} characters")
    _no_control(value, field_name)
    if value.startswith(("-", "/", ".")) or value.endswith(("/", ".", ".lock")):
        raise _bad(field_name, "is not a valid git ref (it starts or ends badly)")
    if _REF_FORBIDDEN.search(value):
        raise _bad(field_name, "must not contain '..', '//', '@{', whitespace or any of ~^:?*[\\")
    return value


def check_name(value: str) -> str:
    name = value.strip()
    if not name or len(name) > MAX_NAME:
        raise _bad("name", f"must be 1-{MAX_NAME} characters")
    _no_control(name, "name")
    return name


def name_from_url(url: str) -> str:
    """A default display name: the repository's last path segment without ``.git``."""
    tail = re.split(r"[/:]", url.rstrip("/"))[-1]
    tail = tail.removesuffix(".git") or "feature-set"
    return tail[:MAX_NAME]


# --- schedule -----------------------------------------------------------------------------


def check_intervals(values: Sequence[int]) -> tuple[int, ...]:
    f = "prediction_intervals"
    if not 1 <= len(values) <= MAX_INTERVALS:
        raise _bad(f, f"give 1-{MAX_INTERVALS} intervals")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_INTERVAL_MINUTES:
            raise _bad(f, f"each must be a whole number of minutes from 1 to {MAX_INTERVAL_MINUTES}")
    if len(set(values)) != len(values):
        raise _bad(f, "must not repeat an interval")
    return tuple(values)


def split_args(value: Sequence[str] | str | None) -> tuple[str, ...]:
    """Passthrough args as an argv list; one string is split shell-style (never run by a shell)."""
    f = "passthrough_args"
    if value is None:
        return ()
    if isinstance(value, str):
        if "\x00" in value:
            raise _bad(f, "must not contain NUL")
        try:
            args = shlex.split(value)
        except ValueError as e:
            raise _bad(f, f"cannot be split shell-style ({e})") from e
    else:
        args = list(value)
    if len(args) > MAX_ARGS:
        raise _bad(f, f"at most {MAX_ARGS} arguments")
    if any("\x00" in a for a in args):
        raise _bad(f, "must not contain NUL")
    if sum(len(a.encode()) for a in args) > MAX_ARGS_BYTES:
        raise _bad(f, f"at most {MAX_ARGS_BYTES} bytes in all")
    return tuple(args)


def check_gpu_type(value: str | None) -> str | None:
    if value is None:
        return None
    if not _GPU_TYPE.match(value):
        raise _bad("gpu_type", "must be 1-80 letters, digits, spaces or ._()-")
    return value


def as_utc(value: datetime | None) -> datetime | None:
    """A time without a zone is read as UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
