"""The fetch policy, tried as an attacker would: every source below is typed by a hostile user
and reaches ``gitsource.checkout`` on an agent or the RunPod provider.

Real git against real servers: a git repository served over HTTP (git's "dumb" protocol, a
plain file server) and over SSH (asyncssh running ``git-upload-pack``), both on 127.0.0.1.
Names are mapped to addresses through the policy's resolver seam, never the system's.
"""

from __future__ import annotations

import asyncio
import functools
import http.server
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest
from touchstone.shared.fetchpolicy import FetchPolicy, FetchRefused
from touchstone.shared.gitsource import SourceRefused, checkout

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x", "PATH": "/usr/bin:/bin"}


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, env={**GIT_ENV, "HOME": str(cwd)}, check=True,
                          capture_output=True, text=True)
    return done.stdout.strip()


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    """A bare repository with one commit on main, ready to serve over dumb HTTP."""
    work = tmp_path / "work"
    work.mkdir()
    _git(work, "init", "-q", "-b", "main")
    (work / "feature_set.py").write_text("X = 1\n")
    _git(work, "add", ".")
    _git(work, "commit", "-q", "-m", "one")
    bare = tmp_path / "served" / "repo.git"
    bare.parent.mkdir()
    _git(tmp_path, "clone", "-q", "--bare", str(work), str(bare))
    _git(bare, "update-server-info")
    return bare


@pytest.fixture
def http_port(bare: Path) -> Iterator[int]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(bare.parent))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def resolver(table: dict[str, list[str]]):
    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise FetchRefused(f"{host} does not resolve")
        return table[host]
    return resolve


# --- local sources -------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["file://{p}", "{p}", "FILE://{p}"])
def test_file_urls_and_paths_are_local_sources_refused_by_default(bare: Path, tmp_path: Path, form: str) -> None:
    with pytest.raises(SourceRefused, match="local"):
        checkout(form.format(p=bare), "main", tmp_path / "out", policy=FetchPolicy())
    assert not (tmp_path / "out").exists()


def test_a_local_source_works_where_the_operator_enables_it(bare: Path, tmp_path: Path) -> None:
    commit = checkout(f"file://{bare}", "main", tmp_path / "out", policy=FetchPolicy(allow_local=True))
    assert commit == _git(bare, "rev-parse", "main")


def test_relative_paths_and_transport_helpers_are_refused_even_when_local_is_allowed() -> None:
    policy = FetchPolicy(allow_local=True)
    for url in ["repo.git", "./repo", "ext::sh -c touch% /tmp/pwned", "fd::17", "--upload-pack=x"]:
        with pytest.raises(FetchRefused):
            policy.plan(url)


# --- addresses -----------------------------------------------------------------------------


def test_a_name_resolving_to_loopback_is_refused_with_a_server_listening_there(bare: Path, http_port: int,
                                                                                tmp_path: Path) -> None:
    policy = FetchPolicy(allow_private=True, resolve=resolver({"git.attacker.test": ["127.0.0.1"]}))
    with pytest.raises(SourceRefused, match=r"127\.0\.0\.1"):
        checkout(f"http://git.attacker.test:{http_port}/repo.git", "main", tmp_path / "out", policy=policy)
    assert not (tmp_path / "out").exists()


def test_localhost_through_the_systems_resolver_is_refused() -> None:
    with pytest.raises(FetchRefused, match="denied network"):
        FetchPolicy().plan("https://localhost/org/repo.git")


def test_one_bad_address_among_good_ones_is_enough_to_refuse() -> None:
    policy = FetchPolicy(resolve=resolver({"git.example.com": ["93.184.216.34", "169.254.169.254"]}))
    with pytest.raises(FetchRefused, match=r"169\.254\.169\.254"):
        policy.plan("https://git.example.com/org/repo.git")


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data.git",
    "https://169.254.169.254/x.git",
    "https://0xa9fea9fe/x.git",  # 169.254.169.254 written in hex
    "https://2852039166/x.git",  # ... and as one number
    "https://[::ffff:169.254.169.254]/x.git",
    "https://[fe80::1]/x.git",
    "https://[fd00:ec2::254]/x.git",
    "https://100.100.100.200/x.git",
    "https://0.0.0.0/x.git",
    "ssh://git@169.254.169.254/x.git",
    "git@169.254.169.254:x.git",
    "https://metadata.google.internal/x.git",
])
def test_link_local_and_metadata_are_refused_whatever_else_is_allowed(url: str, tmp_path: Path) -> None:
    key = tmp_path / "deploy_key"
    policy = FetchPolicy(allow_local=True, allow_private=True, ssh_key=key,
                         resolve=resolver({"metadata.google.internal": ["169.254.169.254"]}))
    with pytest.raises(FetchRefused):
        policy.plan(url)


@pytest.mark.parametrize("url", ["https://127.1/x.git", "https://[::1]/x.git", "https://2130706433/x.git",
                                 "https://[::ffff:127.0.0.1]/x.git", "git@127.0.0.1:x.git"])
def test_loopback_is_a_local_source_refused_unless_local_sources_are_on(url: str, tmp_path: Path) -> None:
    with pytest.raises(FetchRefused, match="local source"):
        FetchPolicy(allow_private=True, ssh_key=tmp_path / "key").plan(url)
    FetchPolicy(allow_local=True, ssh_key=tmp_path / "key").plan(url)  # the embedded `touchstone up`


def test_private_addresses_need_the_setting() -> None:
    resolve = resolver({"git.corp.example": ["10.1.2.3"]})
    with pytest.raises(FetchRefused, match="private"):
        FetchPolicy(resolve=resolve).plan("https://git.corp.example/org/repo.git")
    plan = FetchPolicy(allow_private=True, resolve=resolve).plan("https://git.corp.example/org/repo.git")
    assert "http.curloptResolve=git.corp.example:443:10.1.2.3" in plan.config


def test_the_allowlist_of_hosts() -> None:
    resolve = resolver({"github.com": ["140.82.121.4"], "evil.example": ["93.184.216.34"]})
    policy = FetchPolicy(allowed_hosts=("github.com", "*.gitlab.example"), resolve=resolve)
    assert policy.plan("https://github.com/org/repo.git").config[0].endswith(":140.82.121.4")
    with pytest.raises(FetchRefused, match="allowed list"):
        policy.plan("https://evil.example/org/repo.git")


def test_plain_http_needs_an_embedded_or_in_house_setting() -> None:
    with pytest.raises(FetchRefused, match="plain http"):
        FetchPolicy(resolve=resolver({"a.example": ["93.184.216.34"]})).plan("http://a.example/r.git")


def test_git_connects_to_the_checked_address_not_a_second_dns_answer(bare: Path, http_port: int,
                                                                     tmp_path: Path) -> None:
    """The name exists only in the policy's resolver: git's own lookup would fail, so a clone
    that works went to the pinned address (on loopback: local sources on, as embedded)."""
    policy = FetchPolicy(allow_local=True, resolve=resolver({"git.touchstone.test": ["127.0.0.1"]}))
    commit = checkout(f"http://git.touchstone.test:{http_port}/repo.git", "main", tmp_path / "out", policy=policy)
    assert commit == _git(bare, "rev-parse", "main")
    assert (tmp_path / "out" / "feature_set.py").read_text() == "X = 1\n"


# --- ssh -----------------------------------------------------------------------------------


class _GitSshd(asyncssh.SSHServer):
    """Accepts the authorized keys only; records every key a client offered."""

    def __init__(self, authorized: list[asyncssh.SSHKey], offered: list[str]) -> None:
        self.authorized = {k.export_public_key().split()[1] for k in authorized}
        self.offered = offered

    def begin_auth(self, username: str) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        blob = key.export_public_key().decode().split()[1]
        self.offered.append(blob)
        return blob in {b.decode() for b in self.authorized}


async def _upload_pack(repo_root: Path, process: asyncssh.SSHServerProcess) -> None:
    path = (process.command or "").split(" ", 1)[-1].strip("'")
    proc = await asyncio.create_subprocess_exec(
        "git-upload-pack", str(repo_root / path.lstrip("/")),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    await process.redirect(stdin=proc.stdin, stdout=proc.stdout, stderr=proc.stderr)
    process.exit(await proc.wait())


def _write_key(key: asyncssh.SSHKey, path: Path) -> Path:
    key.write_private_key(str(path))
    path.chmod(0o600)
    return path


def _ssh_agent_with(key: Path) -> dict[str, str]:
    out = subprocess.run(["ssh-agent", "-s"], capture_output=True, text=True, check=True).stdout
    env = dict(line.split(";")[0].split("=", 1) for line in out.splitlines() if "=" in line.split(";")[0])
    subprocess.run(["ssh-add", str(key)], env={**os.environ, **env}, check=True, capture_output=True)
    return env


async def _ssh_case(bare: Path, tmp_path: Path, *, authorize_service_key: bool) -> tuple[bool, list[str], dict]:
    service_key = asyncssh.generate_private_key("ssh-ed25519")
    deploy_key = asyncssh.generate_private_key("ssh-ed25519")
    offered: list[str] = []
    authorized = [service_key] if authorize_service_key else [deploy_key]
    listener = await asyncssh.listen(
        "127.0.0.1", 0, server_host_keys=[asyncssh.generate_private_key("ssh-ed25519")],
        server_factory=lambda: _GitSshd(authorized, offered),
        process_factory=lambda p: _upload_pack(bare.parent, p), encoding=None)
    port = listener.get_port()
    # the service account's own key, loaded in an ssh agent the service's environment points at
    agent_env = await asyncio.to_thread(_ssh_agent_with, _write_key(service_key, tmp_path / "service_key"))
    try:
        policy = FetchPolicy(ssh_key=_write_key(deploy_key, tmp_path / "deploy_key"), allow_local=True,
                             resolve=resolver({"git.touchstone.test": ["127.0.0.1"]}))
        old = {k: os.environ.get(k) for k in agent_env}
        os.environ.update(agent_env)
        try:
            await asyncio.to_thread(checkout, f"ssh://git@git.touchstone.test:{port}/repo.git", "main",
                                    tmp_path / "out", policy=policy, timeout_s=30)
            cloned = True
        except Exception:
            cloned = False
        finally:
            for k, v in old.items():
                os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
        keys = {"service": service_key.export_public_key().decode().split()[1],
                "deploy": deploy_key.export_public_key().decode().split()[1]}
        return cloned, offered, keys
    finally:
        await asyncio.to_thread(subprocess.run, ["ssh-agent", "-k"], env={**os.environ, **agent_env},
                                capture_output=True)
        listener.close()


async def test_ssh_never_offers_the_service_accounts_keys(bare: Path, tmp_path: Path) -> None:
    cloned, offered, keys = await _ssh_case(bare, tmp_path, authorize_service_key=True)
    assert not cloned
    assert keys["service"] not in offered
    assert keys["deploy"] in offered


async def test_ssh_clones_with_the_configured_deploy_key(bare: Path, tmp_path: Path) -> None:
    cloned, offered, keys = await _ssh_case(bare, tmp_path, authorize_service_key=False)
    assert cloned, "the deploy key should have been accepted"
    assert set(offered) == {keys["deploy"]}
    assert (tmp_path / "out" / "feature_set.py").exists()


def test_ssh_without_a_deploy_key_is_refused_before_connecting() -> None:
    with pytest.raises(FetchRefused, match="deploy key"):
        FetchPolicy(resolve=resolver({"github.com": ["140.82.121.4"]})).plan("git@github.com:org/repo.git")
