"""SSH into a pod: the handshake that says a pod is ready, one command streamed line by line,
and SFTP copies both ways. The pod is untrusted: only regular files come back (checked on the
open file, not only in the listing), read in chunks within a byte budget however large they
claim to be or grow, and JSON read back is size-capped.

Paths in the pod are relative to the SSH user's home (where RunPod's and the fake's SFTP and
commands start).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import asyncssh
from touchstone.shared.staging import staging_ignored

from .api import SshEndpoint

log = logging.getLogger(__name__)

MAX_JSON_BYTES = 1_000_000


class SshFailed(Exception):
    """The pod's SSH endpoint did not work (an infrastructure failure)."""


async def connect(endpoint: SshEndpoint, key: asyncssh.SSHKey, timeout_s: float) -> asyncssh.SSHClientConnection:
    """TCP connect plus a full handshake and key authentication, within ``timeout_s``.

    Host keys are not checked: a pod's host key is new on every pod and RunPod publishes none."""
    try:
        return await asyncio.wait_for(
            asyncssh.connect(
                endpoint.host,
                endpoint.port,
                username=endpoint.username,
                client_keys=[key],
                known_hosts=None,
                agent_path=None,
                connect_timeout=timeout_s,
                keepalive_interval=15,
                keepalive_count_max=4,
            ),
            timeout_s + 1,
        )
    except (OSError, asyncssh.Error, TimeoutError) as e:
        raise SshFailed(f"SSH to {endpoint.host}:{endpoint.port}: {type(e).__name__}: {e}") from e


async def run_streaming(
    conn: asyncssh.SSHClientConnection,
    command: str,
    on_lines: Callable[[list[str]], Awaitable[None]],
    timeout_s: float,
) -> int | None:
    """Run ``command`` (stdout and stderr merged), hand its lines to ``on_lines`` as they come;
    return its exit status, or None when the connection or the pod went away."""
    try:
        process = await conn.create_process(command, stderr=asyncssh.STDOUT, encoding="utf-8", errors="replace")
    except (OSError, asyncssh.Error) as e:
        raise SshFailed(f"could not start the trainer: {e}") from e
    try:
        async with asyncio.timeout(timeout_s):
            await _pump_lines(process, on_lines)
            completed = await process.wait()
    except TimeoutError:
        process.kill()
        await on_lines([f"[touchstone] the trainer ran longer than {timeout_s:.0f}s and was stopped"])
        return 124
    except (OSError, asyncssh.Error) as e:
        log.warning("trainer session lost: %r", e)
        return None
    return completed.exit_status if completed.exit_status is not None and completed.exit_status >= 0 else None


async def _pump_lines(
    process: asyncssh.SSHClientProcess[str], on_lines: Callable[[list[str]], Awaitable[None]]
) -> None:
    partial = ""
    while True:
        chunk = await process.stdout.read(65536)
        if not chunk:
            break
        text = partial + chunk
        *complete, partial = text.split("\n")
        if complete:
            await on_lines([line.rstrip("\r") for line in complete])
    if partial:
        await on_lines([partial.rstrip("\r")])


def _local_tree(local: Path) -> list[tuple[str, Path | None]]:
    """(relative path, file or None for a folder) under ``local``, minus caches and symlinks."""
    entries: list[tuple[str, Path | None]] = []
    for path in sorted(local.rglob("*")):
        rel = path.relative_to(local)
        if any(staging_ignored(part) for part in rel.parts) or path.is_symlink():
            continue
        if path.is_dir():
            entries.append((rel.as_posix(), None))
        elif path.is_file():
            entries.append((rel.as_posix(), path))
    return entries


async def put_tree(sftp: asyncssh.SFTPClient, local: Path, remote: str) -> int:
    """Copy a local folder into the pod (no ``.git``, caches or symlinks); returns files copied."""
    count = 0
    await sftp.makedirs(remote, exist_ok=True)
    for rel, path in await asyncio.to_thread(_local_tree, local):
        target = f"{remote}/{rel}"
        if path is None:
            await sftp.makedirs(target, exist_ok=True)
        else:
            await sftp.put(str(path), target)
            count += 1
    return count


class Budget:
    """Bytes left to copy back from one pod."""

    def __init__(self, limit: int) -> None:
        self.left = limit

    def take(self, size: int) -> bool:
        if size > self.left:
            return False
        self.left -= size
        return True


MAX_FILES = 10_000
MAX_DEPTH = 16
READ_CHUNK = 256 * 1024


async def fetch_tree(sftp: asyncssh.SFTPClient, remote: str, local: Path, budget: Budget,
                     depth: int = MAX_DEPTH) -> list[Path]:
    """Copy the regular files under ``remote`` into ``local``; symlinks, devices, FIFOs and
    files past the budget are skipped, and so is anything deeper than ``depth`` folders.
    Returns the local files written. A missing folder copies nothing."""
    written: list[Path] = []
    try:
        names = await sftp.listdir(remote)
    except (asyncssh.SFTPError, OSError):
        return written
    for name in sorted(names)[:MAX_FILES]:
        if name in (".", "..") or "/" in name or "\\" in name or not name:
            continue
        source = f"{remote}/{name}"
        try:
            attrs = await sftp.lstat(source)
        except asyncssh.SFTPError:
            continue
        mode = attrs.permissions or 0
        if stat.S_ISDIR(mode) and depth > 0:
            written += await fetch_tree(sftp, source, local / name, budget, depth - 1)
        elif stat.S_ISREG(mode):
            if await _fetch_regular(sftp, source, local / name, budget):
                written.append(local / name)
    return written


async def fetch_file(sftp: asyncssh.SFTPClient, remote: str, local: Path, budget: Budget) -> Path | None:
    """One regular file from the pod, or None (missing, not a regular file, past the budget)."""
    try:
        attrs = await sftp.lstat(remote)
    except (asyncssh.SFTPError, OSError):
        return None
    if not stat.S_ISREG(attrs.permissions or 0):
        return None
    return local if await _fetch_regular(sftp, remote, local, budget) else None


async def left_behind(sftp: asyncssh.SFTPClient, remote: str) -> str | None:
    """Why a file that ``fetch_file`` did not bring back was left behind: None when it is
    missing, else what is there instead (a link, a special file, one past the budget)."""
    try:
        attrs = await sftp.lstat(remote)
    except (asyncssh.SFTPError, OSError):
        return None
    if stat.S_ISLNK(attrs.permissions or 0):
        return "a symlink"
    if not stat.S_ISREG(attrs.permissions or 0):
        return "not a regular file"
    return f"{attrs.size} bytes, past the collect budget"


async def _fetch_regular(sftp: asyncssh.SFTPClient, remote: str, local: Path, budget: Budget) -> bool:
    """Copy a file the pod listed as regular, never trusting that listing: the open file is
    checked again (a swap to a link to a FIFO or a device between the two looks is refused)
    and read in chunks up to what the budget allows, so a file that grows while it is copied
    costs at most the budget. The local copy is written without following links."""
    allowed = budget.left
    try:
        async with sftp.open(remote, "rb") as f:
            attrs = await f.stat()
            if not stat.S_ISREG(attrs.permissions or 0) or (attrs.size or 0) > allowed:
                log.warning("skipping %s: not a regular file, or past the collect budget", remote)
                return False
            await asyncio.to_thread(local.parent.mkdir, parents=True, exist_ok=True)
            fd = os.open(local, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            copied = 0
            try:
                while True:
                    data = cast(bytes, await f.read(min(READ_CHUNK, allowed + 1 - copied)))
                    if not data:
                        break
                    copied += len(data)
                    if copied > allowed:
                        break
                    await asyncio.to_thread(os.write, fd, data)
            finally:
                os.close(fd)
    except asyncssh.SFTPError as e:
        log.warning("skipping %s: %s", remote, e)
        return False
    if copied > allowed:
        log.warning("skipping %s: it grew past the collect budget while copied", remote)
        await asyncio.to_thread(local.unlink, True)
        return False
    budget.take(copied)
    return True


async def read_regular(sftp: asyncssh.SFTPClient, remote: str, limit: int, offset: int = 0) -> bytes | None:
    """At most ``limit`` bytes of the regular file ``remote`` from ``offset``, or None: missing,
    a link on the way (each folder of the path is looked at), not a regular file (checked on
    the listing and again on the open file)."""
    parts = remote.split("/")
    try:
        for i in range(1, len(parts)):
            if not stat.S_ISDIR((await sftp.lstat("/".join(parts[:i]))).permissions or 0):
                return None
        if not stat.S_ISREG((await sftp.lstat(remote)).permissions or 0):
            return None
        async with sftp.open(remote, "rb") as f:
            if not stat.S_ISREG((await f.stat()).permissions or 0):
                return None
            await f.seek(offset)
            return cast(bytes, await f.read(limit)) if limit > 0 else b""
    except asyncssh.SFTPError as e:
        if isinstance(e, asyncssh.SFTPConnectionLost):
            raise
        return None


def read_json(path: Path | None) -> dict[str, Any] | None:
    """A JSON object from a local copy of at most ``MAX_JSON_BYTES``; None otherwise."""
    if path is None:
        return None
    with contextlib.suppress(OSError, ValueError):
        if path.stat().st_size <= MAX_JSON_BYTES:
            body = json.loads(path.read_text(encoding="utf-8"))
            return body if isinstance(body, dict) else None
    return None

