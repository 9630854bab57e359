"""``ProcessRuntime``: each attempt is a subprocess (its own session and process group) in its
work directory, inside a bubblewrap sandbox (``sandbox.py``) unless the operator turned the
sandbox off by name (``process_sandbox=none``: development and tests; it isolates nothing).

Bookkeeping lives in the attempt's folder beside the work directory (where the task, which
sees only ``work/``, cannot write), so a restarted agent re-adopts what still runs:
``.runtime.json`` (labels, GPU, the work directory, the pid and its start time, which guards
against a reused pid) and ``.exit_code``, written by ``launcher.py`` when the command ends.
The console is opened here (never following a link) and handed to the command as its stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from touchstone.agent import launcher
from touchstone.agent.runtime import WORK_SUBDIR, ContainerSpec, ContainerState, check_name
from touchstone.agent.sandbox import Bubblewrap
from touchstone.shared.commands import CONTAINER_PREFIX
from touchstone.shared.workdir import Refused, read_bounded, write_private

log = logging.getLogger(__name__)

STATE_FILE = ".runtime.json"
EXIT_FILE = ".exit_code"


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux); none when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def _alive(pid: int, ticks: int | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    if ticks is not None and _start_ticks(pid) not in (None, ticks):
        return False  # the pid now belongs to someone else
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError, IndexError):
        if stat.read_text().rsplit(")", 1)[-1].split()[0] == "Z":
            return False
    return True


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


class ProcessRuntime:
    """Containers as process groups under ``root/{name}/``."""

    def __init__(
        self, root: Path, *, python: str = "", kill_grace_s: float = 10.0, sandbox: Bubblewrap | None = None
    ) -> None:
        self.root = root
        self.python = python or sys.executable
        self.sandbox = sandbox
        self.kill_grace_s = kill_grace_s
        self._children: dict[str, asyncio.subprocess.Process] = {}
        self._reapers: set[asyncio.Task[Any]] = set()

    def _dir(self, name: str) -> Path:
        return self.root / check_name(name)

    def _read(self, name: str) -> dict[str, Any] | None:
        home = self._dir(name)
        try:
            data = json.loads(read_bounded(home, STATE_FILE, 100_000))
        except (Refused, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _write(self, name: str, data: dict[str, Any]) -> None:
        write_private(self._dir(name) / STATE_FILE, json.dumps(data).encode())

    def _work_dir(self, name: str, state: dict[str, Any]) -> Path:
        work = state.get("work_dir")
        return Path(work) if isinstance(work, str) and work else self._dir(name) / WORK_SUBDIR

    async def provision(self, spec: ContainerSpec) -> None:
        if self._read(spec.name) is not None:
            return
        spec.work_dir.mkdir(parents=True, exist_ok=True)
        self._write(spec.name, {"name": spec.name, "labels": dict(spec.labels), "gpu": spec.gpu, "pid": None,
                                "created": time.time(), "work_dir": str(spec.work_dir)})

    async def run(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], console: Path, read_only: Sequence[Path] = ()
    ) -> None:
        """In the sandbox, ``read_only`` folders are mounted read-only and nothing else of the
        host is visible; without it they are visible as they are, like everything else."""
        state = self._read(name)
        if state is None:
            raise RuntimeError(f"{name} is not provisioned")
        if state.get("pid"):
            return  # already started
        work_dir = self._work_dir(name, state)
        full_env = dict(env)
        gpu = state.get("gpu")
        full_env["CUDA_VISIBLE_DEVICES"] = "" if gpu is None else str(gpu)
        command = list(argv)
        if self.sandbox is not None:
            command = self.sandbox.wrap(argv, work_dir, read_only)
        wrapped = [self.python, launcher.__file__, str(self._dir(name) / EXIT_FILE), "--", *command]
        fd = os.open(console, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "ab") as out:
            proc = await asyncio.create_subprocess_exec(
                *wrapped,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                cwd=work_dir,
                env=full_env,
                start_new_session=True,
            )
        self._children[name] = proc
        reaper = asyncio.ensure_future(proc.wait())
        self._reapers.add(reaper)
        reaper.add_done_callback(self._reapers.discard)
        self._write(name, {**state, "pid": proc.pid, "ticks": _start_ticks(proc.pid), "started": time.time()})

    async def status(self, name: str) -> ContainerState:
        state = self._read(name)
        if state is None:
            return ContainerState(name, "gone")
        labels = state.get("labels") or {}
        created = state.get("created")
        if created is None:  # written by an older agent: the state file's age will do
            with contextlib.suppress(OSError):
                created = (self._dir(name) / STATE_FILE).stat().st_mtime
        pid = state.get("pid")
        if not pid:
            return ContainerState(name, "created", labels, created_at=created)
        exit_code = self._exit_code(name)
        if exit_code is not None:
            return ContainerState(name, "exited", labels, exit_code, created)
        child = self._children.get(name)
        if child is not None:
            if child.returncode is None:
                return ContainerState(name, "running", labels, created_at=created)
            code = self._exit_code(name)  # the launcher may have just written it
            return ContainerState(name, "exited", labels, code if code is not None else child.returncode, created)
        if _alive(pid, state.get("ticks")):
            return ContainerState(name, "running", labels, created_at=created)
        return ContainerState(name, "exited", labels, self._exit_code(name), created)

    def _exit_code(self, name: str) -> int | None:
        try:
            return int(read_bounded(self._dir(name), EXIT_FILE, 32).strip())
        except (Refused, ValueError):
            return None

    async def terminate(self, name: str) -> None:
        state = self._read(name)
        if state is None:
            return
        pid = int(state.get("pid") or 0)
        child = self._children.pop(name, None)
        if pid and (child is not None or _alive(pid, state.get("ticks"))):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + self.kill_grace_s
            while _group_alive(pid) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            if child is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(child.wait(), 5.0)
        with contextlib.suppress(OSError):
            (self._dir(name) / STATE_FILE).unlink()

    async def probe_python(self, code: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            self.python, "-c", code, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        if proc.returncode != 0:
            raise RuntimeError(f"{self.python} -c failed ({proc.returncode}): {err.decode(errors='replace')[-300:]}")
        return out.decode()

    async def list_ours(self) -> list[ContainerState]:
        """The work directories under ``root`` that hold a runtime state (one agent per root)."""
        if not self.root.is_dir():
            return []
        found = []
        for path in sorted(self.root.iterdir()):
            if path.is_dir() and path.name.startswith(CONTAINER_PREFIX) and (path / STATE_FILE).exists():
                found.append(await self.status(path.name))
        return found
