"""``LocalWorkspace``: the workspace protocol (``touchstone.shared.workspace``) over one of the
agent's container runtimes (process, bubblewrap, Docker) and the attempt's folder
``{root}/{name}/``: the task's work directory ``work/`` is the workspace, the console file and
the runtime's bookkeeping stay beside it, out of the task's reach."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from touchstone.agent.prepare import CONSOLE_LOG
from touchstone.agent.runtime import ContainerRuntime, ContainerSpec, attempt_home, work_dir_of
from touchstone.shared import workdir
from touchstone.shared.staging import copytree_ignore
from touchstone.shared.workspace import WorkspaceState


class LocalWorkspace:
    def __init__(self, runtime: ContainerRuntime, root: Path, name: str, labels: Mapping[str, str] | None = None,
                 gpu: int | None = None) -> None:
        self.runtime = runtime
        self.name = name
        self.home = attempt_home(root, name)
        self.work = work_dir_of(root, name)
        self.spec = ContainerSpec(name, self.work, dict(labels or {}), gpu)
        self._provisioned = False

    async def _provision(self) -> None:
        if not self._provisioned:
            await asyncio.to_thread(self.work.mkdir, parents=True, exist_ok=True)
            await self.runtime.provision(self.spec)
            self._provisioned = True

    async def put_tree(self, local: Path, rel: str) -> int:
        await self._provision()
        dest = self.work / _plain(rel)

        def copy() -> int:
            shutil.copytree(local, dest, symlinks=True, ignore=_no_links(local), dirs_exist_ok=True)
            return sum(1 for p in dest.rglob("*") if p.is_file())

        return await asyncio.to_thread(copy)

    async def run(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        await self._provision()
        await self.runtime.run(self.name, list(argv), dict(env), self.home / CONSOLE_LOG)

    async def state(self) -> WorkspaceState:
        got = await self.runtime.status(self.name)
        return WorkspaceState(got.status, got.exit_code)

    async def read_file(self, rel: str, limit: int) -> bytes | None:
        try:
            data = await asyncio.to_thread(workdir.read_bounded, self.work, _plain(rel), limit + 1)
        except workdir.Refused:
            return None
        return data if len(data) <= limit else None

    async def console(self, offset: int, limit: int) -> bytes:
        try:
            return await asyncio.to_thread(workdir.read_bounded, self.home, CONSOLE_LOG, limit, offset)
        except workdir.Refused:
            return b""

    async def remove(self) -> None:
        await self.runtime.terminate(self.name)
        await asyncio.to_thread(shutil.rmtree, self.home, True)


def _plain(rel: str) -> str:
    if rel.startswith("/") or ".." in rel.split("/"):
        raise ValueError(f"not a plain relative path: {rel!r}")
    return rel


def _no_links(top: Path):  # type: ignore[no-untyped-def]
    """``copytree``'s ignore: staging's list, and every link."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        return copytree_ignore(folder, names) | {n for n in names if (Path(folder) / n).is_symlink()}

    return ignore
