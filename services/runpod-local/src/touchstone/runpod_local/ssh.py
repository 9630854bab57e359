"""A fake pod's sshd: a real asyncssh server on 127.0.0.1 with exec and SFTP.

* Auth: public key only, user ``root``, keys from the pod's ``env.PUBLIC_KEY`` (one
  authorized_keys line per key, as RunPod images install it).
* Exec: the command line is split with ``shlex.split`` and run with
  ``asyncio.create_subprocess_exec`` (never a shell) in the pod's directory, with
  ``HOME`` set to it, the pod's env, and ``RUNPOD_POD_ID``. Exit status and signals are
  passed back. Interactive shells are refused.
* SFTP: relative paths land in the pod's directory; absolute paths are allowed only
  inside it (``pwd`` over exec tells the absolute path).
* ``close()`` is the pod going away: the listener stops, live connections drop, and every
  process the pod started is killed with its process group, and so is every process left
  running in the background after its command returned (found by the pod's ``RUNPOD_POD_ID``
  in its environment, as a container's processes die with the container).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import asyncssh

log = logging.getLogger(__name__)

_INHERITED_ENV = ("PATH", "LANG", "LC_ALL", "TMPDIR", "TZ")


class PodSsh:
    """The SSH endpoint of one fake pod; ``start()`` returns its port."""

    def __init__(
        self,
        *,
        pod_id: str,
        workdir: Path,
        authorized_keys: str,
        host_key: asyncssh.SSHKey,
        accepting: Callable[[], bool],
        env: Mapping[str, str],
        host: str = "127.0.0.1",
    ) -> None:
        self.pod_id = pod_id
        self.host = host
        self.workdir = Path(os.path.realpath(workdir))
        self.accepting = accepting
        self._host_key = host_key
        self._keys = _import_keys(authorized_keys)
        self._env = {k: os.environ[k] for k in _INHERITED_ENV if k in os.environ}
        self._env.update(env)
        self._env.update({"HOME": str(self.workdir), "RUNPOD_POD_ID": pod_id})
        self._listener: asyncssh.SSHAcceptor | None = None
        self._connections: set[asyncssh.SSHServerConnection] = set()
        self._processes: set[asyncio.subprocess.Process] = set()

    async def start(self) -> int:
        """Listen on ``host`` (127.0.0.1 unless the fake serves elsewhere), port 0; return the port."""
        self._listener = await asyncssh.listen(
            self.host,
            0,
            server_factory=lambda: _Server(self),
            server_host_keys=[self._host_key],
            process_factory=self._run,
            sftp_factory=lambda chan: _Sftp(chan, self.workdir),
            encoding=None,
            login_timeout=10,
        )
        return int(self._listener.get_port())

    @property
    def authorized_keys(self) -> asyncssh.SSHAuthorizedKeys | None:
        return self._keys

    def track(self, conn: asyncssh.SSHServerConnection, *, live: bool) -> None:
        if live:
            self._connections.add(conn)
        else:
            self._connections.discard(conn)

    async def close(self) -> None:
        """Stop listening, drop every connection, kill every process of this pod."""
        if self._listener is not None:
            self._listener.close()
            with contextlib.suppress(Exception):
                await self._listener.wait_closed()
            self._listener = None
        for conn in list(self._connections):
            conn.abort()
        self._connections.clear()
        for proc in list(self._processes):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        for proc in list(self._processes):
            with contextlib.suppress(Exception):
                await proc.wait()
        self._processes.clear()
        await asyncio.to_thread(_kill_detached, self.pod_id)

    async def _run(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        """Serve one exec request."""
        command = process.command
        if not command:
            _finish(process, 1, b"this pod serves exec and sftp only, not shells\n")
            return
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            _finish(process, 2, f"cannot parse command line: {exc}\n".encode())
            return
        if not argv:
            _finish(process, 0)
            return
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=self.workdir,
                env=self._env,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except FileNotFoundError:
            _finish(process, 127, f"{argv[0]}: command not found\n".encode())
            return
        except PermissionError:
            _finish(process, 126, f"{argv[0]}: permission denied\n".encode())
            return
        self._processes.add(proc)
        feeder = asyncio.create_task(_feed(process, proc))
        try:
            assert proc.stdout is not None and proc.stderr is not None
            await asyncio.gather(_pump(proc.stdout, process.stdout), _pump(proc.stderr, process.stderr))
            returncode = await proc.wait()
        finally:
            feeder.cancel()
            self._processes.discard(proc)
        if returncode >= 0:
            _finish(process, returncode)
        else:
            with contextlib.suppress(Exception):
                process.exit_with_signal(signal.Signals(-returncode).name.removeprefix("SIG"))


class _Server(asyncssh.SSHServer):
    """Per-connection server: drops connections while the pod is not accepting."""

    def __init__(self, pod: PodSsh) -> None:
        self._pod = pod
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._pod.track(conn, live=True)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._pod.track(self._conn, live=False)

    def begin_auth(self, username: str) -> bool:
        assert self._conn is not None
        if not self._pod.accepting():
            log.debug("pod %s: sshd not up yet, dropping a connection", self._pod.pod_id)
            self._conn.abort()
            return True
        keys = self._pod.authorized_keys
        if username == "root" and keys is not None:
            self._conn.set_authorized_keys(keys)
        return True

    def password_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True


class _Sftp(asyncssh.SFTPServer):
    """SFTP confined to the pod's directory; relative paths start there."""

    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], root: Path) -> None:
        super().__init__(chan)
        self._root = os.fsencode(root)

    def map_path(self, path: bytes) -> bytes:
        local = os.path.normpath(os.path.join(self._root, path))
        if self._root.startswith(local.rstrip(b"/") + b"/"):
            local = self._root  # above the root is the root, as in a chroot ("..")
        real = os.path.realpath(local)
        if real != self._root and not real.startswith(self._root + b"/"):
            raise asyncssh.SFTPPermissionDenied("outside the pod's directory")
        return local


def _import_keys(text: str) -> asyncssh.SSHAuthorizedKeys | None:
    lines = "\n".join(line.strip() for line in text.splitlines() if line.strip())
    if not lines:
        return None
    try:
        return asyncssh.import_authorized_keys(lines + "\n")
    except (ValueError, asyncssh.KeyImportError):
        log.warning("fake pod: PUBLIC_KEY is not a valid authorized_keys text")
        return None


def _finish(process: asyncssh.SSHServerProcess[bytes], status: int, stderr: bytes = b"") -> None:
    with contextlib.suppress(Exception):
        if stderr:
            process.stderr.write(stderr)
        process.exit(status)


async def _pump(source: asyncio.StreamReader, sink: asyncssh.SSHWriter[bytes]) -> None:
    """Copy a process pipe to the channel; after the client is gone, keep draining."""
    connected = True
    while chunk := await source.read(65536):
        if connected:
            try:
                sink.write(chunk)
                await sink.drain()
            except (OSError, asyncssh.Error):
                connected = False


async def _feed(process: asyncssh.SSHServerProcess[bytes], proc: asyncio.subprocess.Process) -> None:
    """Copy the channel's stdin to the process; close its stdin at EOF."""
    assert proc.stdin is not None
    try:
        while data := await process.stdin.read(65536):
            proc.stdin.write(data)
            await proc.stdin.drain()
    except (OSError, asyncssh.Error):
        pass
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.close()


def _kill_detached(pod_id: str) -> None:
    """SIGKILL every process of this user whose environment names this pod (Linux ``/proc``);
    repeated until none is left, so children started meanwhile go too."""
    marker = f"RUNPOD_POD_ID={pod_id}".encode()
    for _ in range(10):
        found = False
        for entry in os.scandir("/proc") if os.path.isdir("/proc") else ():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry.name}/environ", "rb") as f:
                    env = f.read().split(b"\0")
            except OSError:
                continue
            if marker in env:
                found = True
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(entry.name), signal.SIGKILL)
        if not found:
            return
        time.sleep(0.05)
