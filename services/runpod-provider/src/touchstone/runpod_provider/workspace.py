"""``PodWorkspace``: the workspace protocol (``touchstone.shared.workspace``) in a pod, over
one SSH connection: SFTP for files, the detached start of ``detached.py`` for the command, and
``touchstone/`` (the pod layout's root) as the workspace. The pod is the task's own machine: its
run folder (console, exit status) lives there too, and a forged one only ends its own attempt."""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

import asyncssh
from touchstone.shared.workspace import WorkspaceState

from . import detached, ssh
from .domain import PodLayout

_IN_ROOT = 'cd "$0" && exec "$@"'
_STOP = 'p=$(cat "$1") || exit 0; pkill -TERM -P "$p"; kill -TERM "$p"; exit 0'


class PodWorkspace:
    def __init__(self, conn: asyncssh.SSHClientConnection, layout: PodLayout | None = None,
                 start_timeout_s: float = 30.0) -> None:
        self.conn = conn
        self.root = (layout or PodLayout()).root
        self.start_timeout_s = start_timeout_s

    async def put_tree(self, local: Path, rel: str) -> int:
        async with self.conn.start_sftp_client() as sftp:
            return await ssh.put_tree(sftp, local, f"{self.root}/{_plain(rel)}")

    async def run(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        async with self.conn.start_sftp_client() as sftp:
            await sftp.makedirs(self.root, exist_ok=True)
        pairs = [f"{k}={v}" for k, v in env.items()]
        await detached.start(self.conn, ["sh", "-c", _IN_ROOT, self.root, "env", "-i", *pairs, *argv],
                             self.start_timeout_s)

    async def state(self) -> WorkspaceState:
        async with self.conn.start_sftp_client() as sftp:
            if not await sftp.exists(self.root):
                return WorkspaceState("gone")
            if not await detached.started(sftp):
                return WorkspaceState("created")
            code = await detached.exit_code(sftp)
        if code is not None:
            return WorkspaceState("exited", code)
        if await detached.alive(self.conn):
            return WorkspaceState("running")
        async with self.conn.start_sftp_client() as sftp:  # it may have ended between the looks
            return WorkspaceState("exited", await detached.exit_code(sftp))

    async def read_file(self, rel: str, limit: int) -> bytes | None:
        async with self.conn.start_sftp_client() as sftp:
            data = await ssh.read_regular(sftp, f"{self.root}/{_plain(rel)}", limit + 1)
        return data if data is not None and len(data) <= limit else None

    async def console(self, offset: int, limit: int) -> bytes:
        async with self.conn.start_sftp_client() as sftp:
            return await ssh.read_regular(sftp, detached.CONSOLE, limit, offset) or b""

    async def remove(self) -> None:
        if await self.state() == WorkspaceState("running"):
            await asyncio.wait_for(self.conn.run(shlex.join(["sh", "-c", _STOP, "sh", detached.PID]), check=False), 30)
        await asyncio.wait_for(self.conn.run(shlex.join(["rm", "-rf", "--", self.root]), check=False), 60)


def _plain(rel: str) -> str:
    if rel.startswith("/") or ".." in rel.split("/"):
        raise ValueError(f"not a plain relative path: {rel!r}")
    return rel
