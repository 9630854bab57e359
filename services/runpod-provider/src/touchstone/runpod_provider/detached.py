"""The trainer runs detached in its pod, so that it outlives the provider that started it.

``start`` runs, over one SSH exec, a small ``sh`` script that takes the trainer's argv as its
positional parameters (no user text is ever parsed by a shell) and:

* creates ``touchstone/run/`` with ``mkdir``, which fails if it exists: a trainer is started at
  most once per pod, and that folder is how a provider that restarts knows it was started;
* starts the trainer in the background with stdin from ``/dev/null``, its console (stdout and
  stderr) into ``touchstone/run/console.log`` and SIGHUP ignored, then writes its exit status
  to ``touchstone/run/exit_code`` (through a rename, so the file is whole once it exists);
* writes the background shell's pid to ``touchstone/run/pid`` and returns at once.

``follow`` reads the console over SFTP from a byte offset (the caller keeps it, so a provider
that restarts goes on where the last one stopped), hands complete lines to ``on_lines``, and
returns the exit status once ``exit_code`` exists, or None when the trainer is gone without
one (the pod restarted, the shell was killed). Reads are bounded: a chunk per read, lines cut at
``MAX_LINE`` characters (the rest of an endless line skipped), only regular files,
``exit_code`` at most a few bytes. The pod is the trainer's own: what it forges there (an
early ``exit_code``) only ends its own attempt sooner.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import cast

import asyncssh
from touchstone.shared.console import split_console

from . import ssh
from .domain import command_line

log = logging.getLogger(__name__)

RUN_DIR = "touchstone/run"
CONSOLE = f"{RUN_DIR}/console.log"
EXIT_CODE = f"{RUN_DIR}/exit_code"
PID = f"{RUN_DIR}/pid"
CHUNK = 256 * 1024
MAX_LINE = 64 * 1024
ALREADY_STARTED = 17
LIVENESS_EVERY_S = 2.0

_START = (
    'd="$1"; shift; mkdir -p "${d%/*}" || exit 1; mkdir "$d" 2>/dev/null || exit 17; '
    '( trap "" HUP; "$@" >"$d/console.log" 2>&1 </dev/null; '
    'echo $? >"$d/exit_code.partial"; mv "$d/exit_code.partial" "$d/exit_code" ) </dev/null >/dev/null 2>&1 & '
    'echo $! >"$d/pid"'
)
_ALIVE = 'kill -0 "$(cat "$1")" 2>/dev/null'

RECONNECTS = 3
"""New SSH sessions to a running pod while following its trainer."""

OnLines = Callable[[list[str]], Awaitable[None]]
Reconnect = Callable[[], Awaitable[asyncssh.SSHClientConnection | None]]


class NotStarted(Exception):
    """The detached start did not go through (the pod refused the command)."""


class DeadlinePassed(Exception):
    """The trainer still ran at its run deadline (its console was read to the end)."""


class SessionLost(Exception):
    """The SSH connection broke while following; the trainer itself may still run."""


async def started(sftp: asyncssh.SFTPClient) -> bool:
    """Whether a trainer was started in this pod (its run folder exists)."""
    try:
        await sftp.lstat(RUN_DIR)
    except asyncssh.SFTPNoSuchFile:
        return False
    return True


async def start(conn: asyncssh.SSHClientConnection, argv: Sequence[str], timeout_s: float) -> bool:
    """Start ``argv`` detached; False when a trainer was already started in this pod."""
    line = command_line(["sh", "-c", _START, "sh", RUN_DIR, *argv])
    try:
        done = await asyncio.wait_for(conn.run(line, check=False), timeout_s)
    except (OSError, asyncssh.Error, TimeoutError) as e:
        raise NotStarted(f"could not start the trainer: {e!r}") from e
    if done.exit_status == ALREADY_STARTED:
        return False
    if done.exit_status != 0:
        raise NotStarted(f"could not start the trainer: the start script exited {done.exit_status}")
    return True


class Follower:
    """Follows one detached trainer from ``offset`` (bytes of its console already handled)."""

    def __init__(self, conn: asyncssh.SSHClientConnection, on_lines: OnLines, offset: int = 0,
                 on_offset: Callable[[int], None] | None = None) -> None:
        self.conn = conn
        self.sftp: asyncssh.SFTPClient | None = None
        self.on_lines = on_lines
        self.offset = offset
        self.on_offset = on_offset
        self._cutting = False

    async def follow(self, poll_s: float, deadline: float) -> int | None:
        """The trainer's exit status once it ends; ``DeadlinePassed`` past ``deadline``
        (``time.monotonic``); None when it is gone without one. ``SessionLost`` when the SSH connection breaks (the
        trainer may well go on: a new connection can follow it from ``offset``)."""
        try:
            async with self.conn.start_sftp_client() as self.sftp:
                return await self._follow(poll_s, deadline)
        except (OSError, asyncssh.Error) as e:
            raise SessionLost(f"lost the SSH session while following the trainer: {e!r}") from e
        finally:
            self.sftp = None

    async def _follow(self, poll_s: float, deadline: float) -> int | None:
        next_check = time.monotonic() + LIVENESS_EVERY_S
        while True:
            if await self._pump():
                continue  # more to read: read it before looking at anything else
            status = await self._exit_code()
            if status is not None:
                await self._drain()
                return status
            now = time.monotonic()
            if now >= deadline:
                await self._drain()
                raise DeadlinePassed(f"still running at its deadline ({self.offset} console bytes read)")
            if now >= next_check:
                next_check = now + LIVENESS_EVERY_S
                if not await self._alive():
                    status = await self._exit_code()  # it may have ended between the two looks
                    await self._drain()
                    return status
            await asyncio.sleep(poll_s)

    async def _drain(self) -> None:
        while await self._pump(final=True):
            pass

    async def _pump(self, *, final: bool = False) -> bool:
        """Read one chunk of new console and hand on its complete lines; True when it moved.
        The offset only passes whole lines (a partial one is read again once it ends, or at
        the end), and lines are split and cut as on every platform (``split_console``)."""
        assert self.sftp is not None
        data = await ssh.read_regular(self.sftp, CONSOLE, CHUNK, self.offset)
        if not data:  # missing, refused (a link, not a regular file) or nothing new
            return False
        consumed, got = split_console(data, final=final, cutting=self._cutting, limit=CHUNK, max_line=MAX_LINE)
        if got.cutting is not None:
            self._cutting = got.cutting
        if not consumed:
            return False
        self.offset += consumed
        lines = [line.rstrip("\r") for line in got.lines]
        if lines:
            await self.on_lines(lines)
        if self.on_offset is not None:
            self.on_offset(self.offset)
        return True

    async def _exit_code(self) -> int | None:
        assert self.sftp is not None
        return await exit_code(self.sftp)

    async def _alive(self) -> bool:
        return await alive(self.conn)


async def exit_code(sftp: asyncssh.SFTPClient) -> int | None:
    """The trainer's exit status once its ``exit_code`` file is whole; None before."""
    try:
        attrs = await sftp.lstat(EXIT_CODE)
    except asyncssh.SFTPError as e:  # missing, or refused (a link out of the pod's home)
        if isinstance(e, asyncssh.SFTPConnectionLost):
            raise
        return None
    if not stat.S_ISREG(attrs.permissions or 0) or (attrs.size or 0) > 16:
        return None
    async with sftp.open(EXIT_CODE, "rb") as f:
        text = cast(bytes, await f.read(16)).decode("ascii", errors="replace").strip()
    return int(text) if text.isdigit() else None


async def alive(conn: asyncssh.SSHClientConnection) -> bool:
    """Whether the background shell that runs the trainer still runs."""
    argv = ["sh", "-c", _ALIVE, "sh", PID]
    try:
        done = await asyncio.wait_for(conn.run(command_line(argv), check=False), 30)
    except TimeoutError as e:
        raise OSError("no answer from the pod within 30s") from e
    return done.exit_status == 0


async def follow_to_end(conn: asyncssh.SSHClientConnection, reconnect: Reconnect, on_lines: OnLines,
                        offsets: OffsetFile, poll_s: float, deadline: float
                        ) -> tuple[asyncssh.SSHClientConnection, int | None]:
    """Follow the trainer from the kept offset to its end; a broken session is replaced by
    ``reconnect()`` (None: the pod is gone) up to ``RECONNECTS`` times. Returns the connection
    in use and the exit status (None when gone without one); ``DeadlinePassed`` past ``deadline``."""
    offset = offsets.read()
    for _ in range(RECONNECTS + 1):
        follower = Follower(conn, on_lines, offset, offsets.write)
        try:
            status = await follower.follow(poll_s, deadline)
        except SessionLost as e:
            log.warning("%s; connecting again", e)
            offset = follower.offset
            conn.close()
            fresh = await reconnect()
            if fresh is None:
                return conn, None
            conn = fresh
            continue
        offsets.remove()
        return conn, status
    return conn, None


class OffsetFile:
    """The console offset of one attempt, kept in the provider's data folder (never in the pod)
    so that a restarted provider streams on from there; at worst one chunk is sent twice."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> int:
        try:
            text = self.path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            return 0
        return int(text) if text.isdigit() else 0

    def write(self, offset: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(str(offset), encoding="ascii")
        os.replace(partial, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
