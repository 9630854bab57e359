"""The agent's side of operator access (``touchstone.shared.agentaccess``): one command (argv, no
shell) or one file under ``operator_root``, only when this agent's settings opt in.

Files are reached without following a symlink at any step: each folder is opened with
``O_NOFOLLOW | O_DIRECTORY`` relative to the one before, the file itself with ``O_NOFOLLOW``,
and only a regular file is read (never a FIFO or a device). A write goes to a new file in the
target's folder and is renamed over the target, so a link planted there is replaced, never
written through. Commands run as the agent's user, in a session of their own (killed whole at
the deadline), with an environment of ``PATH`` and ``LANG`` only: none of the agent's settings
or secrets.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import logging
import os
import secrets
import signal
import stat

from pydantic import ValidationError
from touchstone.agent.config import AgentSettings
from touchstone.shared.agentaccess import (
    MAX_GET_BYTES,
    MAX_OUTPUT_BYTES,
    MAX_PUT_BYTES,
    OPERATOR_ADAPTER,
    AgentExec,
    AgentGetFile,
    AgentPutFile,
    OperatorReply,
)

log = logging.getLogger(__name__)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Refused(Exception):
    """The request cannot be carried out (the message says why)."""


class OperatorAccess:
    def __init__(self, settings: AgentSettings) -> None:
        self.settings = settings

    async def handle(self, data: bytes) -> OperatorReply:
        if not self.settings.operator_access:
            return OperatorReply(ok=False, error=f"operator access is off on agent {self.settings.host} "
                                                 "(TOUCHSTONE_OPERATOR_ACCESS)")
        try:
            request = OPERATOR_ADAPTER.validate_json(data)
        except ValidationError as e:
            return OperatorReply(ok=False, error=f"malformed request: {str(e)[:300]}")
        log.warning("operator request %s from %s: %s", request.request_id, request.requested_by or "?",
                    request.type, extra={"request": request.model_dump(exclude={"data"})})
        try:
            if isinstance(request, AgentExec):
                return await self.execute(request)
            if isinstance(request, AgentGetFile):
                return await asyncio.to_thread(self.get, request)
            return await asyncio.to_thread(self.put, request)
        except Refused as e:
            return OperatorReply(ok=False, error=str(e))
        except OSError as e:
            return OperatorReply(ok=False, error=f"{type(e).__name__}: {e.strerror or e}")

    # --- exec --------------------------------------------------------------------------

    async def execute(self, request: AgentExec) -> OperatorReply:
        root = self.settings.operator_root
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        try:
            proc = await asyncio.create_subprocess_exec(
                *request.argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, cwd=str(root) if root else "/", env=env, start_new_session=True,
            )
        except OSError as e:
            raise Refused(f"cannot start {request.argv[0]!r}: {e.strerror or e}") from None
        assert proc.stdout is not None and proc.stderr is not None
        reading = asyncio.gather(_bounded(proc.stdout), _bounded(proc.stderr), proc.wait())
        timed_out = False
        try:
            (out, out_n), (err, err_n), code = await asyncio.wait_for(asyncio.shield(reading), request.timeout_s)
        except TimeoutError:
            timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            try:
                (out, out_n), (err, err_n), code = await asyncio.wait_for(reading, 5)
            except TimeoutError:  # something escaped the session and holds the pipes
                reading.cancel()
                (out, out_n), (err, err_n), code = (b"", 0), (b"", 0), None
        return OperatorReply(ok=True, exit_code=code, timed_out=timed_out,
                             stdout=base64.b64encode(out).decode(), stderr=base64.b64encode(err).decode(),
                             stdout_bytes=out_n, stderr_bytes=err_n)

    # --- files -------------------------------------------------------------------------

    def _folder(self, parts: list[str]) -> int:
        """A descriptor of the folder ``parts`` under the root, reached without a symlink."""
        root = self.settings.operator_root
        if root is None:
            raise Refused(f"no files on agent {self.settings.host}: operator_root is not set")
        fd = os.open(root, _DIR_FLAGS & ~os.O_NOFOLLOW)  # the root is the operator's own choice
        try:
            for name in parts:
                try:
                    nxt = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError as e:
                    raise Refused(f"{name}: not a folder under the root (or a symlink)") from e
                os.close(fd)
                fd = nxt
        except BaseException:
            os.close(fd)
            raise
        return fd

    def get(self, request: AgentGetFile) -> OperatorReply:
        *folders, name = request.path.split("/")
        parent = self._folder(folders)
        try:
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=parent)
            except OSError as e:
                raise Refused(f"{request.path}: {'a symlink' if e.errno == errno.ELOOP else e.strerror}") from None
            with os.fdopen(fd, "rb") as f:
                info = os.fstat(f.fileno())
                if not stat.S_ISREG(info.st_mode):
                    raise Refused(f"{request.path}: not a regular file")
                if info.st_size > MAX_GET_BYTES:
                    raise Refused(f"{request.path}: {info.st_size} bytes, more than {MAX_GET_BYTES}")
                body = f.read(MAX_GET_BYTES + 1)
            if len(body) > MAX_GET_BYTES:
                raise Refused(f"{request.path}: grew past {MAX_GET_BYTES} bytes while read")
        finally:
            os.close(parent)
        return OperatorReply(ok=True, data=base64.b64encode(body).decode(), size=len(body))

    def put(self, request: AgentPutFile) -> OperatorReply:
        body = base64.b64decode(request.data, validate=True)
        if len(body) > MAX_PUT_BYTES:
            raise Refused(f"{len(body)} bytes, more than {MAX_PUT_BYTES}")
        *folders, name = request.path.split("/")
        parent = self._folder(folders)
        partial = f".{name}.{secrets.token_hex(6)}.partial"
        try:
            with contextlib.suppress(FileNotFoundError):
                if not stat.S_ISREG(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode):
                    raise Refused(f"{request.path}: exists and is not a regular file")
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(body)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(partial, name, src_dir_fd=parent, dst_dir_fd=parent)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(partial, dir_fd=parent)
                raise
        finally:
            os.close(parent)
        return OperatorReply(ok=True, size=len(body))


async def _bounded(stream: asyncio.StreamReader) -> tuple[bytes, int]:
    """The first ``MAX_OUTPUT_BYTES`` of a stream and its whole length (the rest is read and
    dropped, so the command never blocks on a full pipe)."""
    kept = bytearray()
    total = 0
    while chunk := await stream.read(64 * 1024):
        total += len(chunk)
        if len(kept) < MAX_OUTPUT_BYTES:
            kept += chunk[: MAX_OUTPUT_BYTES - len(kept)]
    return bytes(kept), total
