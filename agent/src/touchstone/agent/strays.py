"""Stray containers: ones with Touchstone's prefix that this agent's runtime lists (its own, see
``ContainerRuntime.list_ours``) but no live attempt owns, for example left by an attempt whose
agent crashed between provision and recording it. They are stopped and removed, with their
work directory, once ``grace_s`` old: counted from their creation when the runtime knows it,
else from when they were first seen. Nothing without the prefix, and nothing of another agent,
is ever listed, so nothing of theirs is touched."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Callable, Container
from pathlib import Path

from touchstone.agent.runtime import ContainerRuntime

log = logging.getLogger(__name__)


class StrayReaper:
    def __init__(
        self, runtime: ContainerRuntime, root: Path, grace_s: float, owned: Callable[[], Container[str]]
    ) -> None:
        self.runtime = runtime
        self.root = root
        self.grace_s = grace_s
        self.owned = owned
        """The names of the live attempts, asked afresh for every container."""
        self._since: dict[str, float] = {}

    async def sweep(self, now: float | None = None) -> list[str]:
        """Remove the strays old enough; returns their names."""
        now = time.time() if now is None else now
        listed = await self.runtime.list_ours()
        names = {s.name for s in listed}
        self._since = {n: t for n, t in self._since.items() if n in names}
        removed = []
        for state in listed:
            name = state.name
            if name in self.owned():
                self._since.pop(name, None)
                continue
            since = self._since.setdefault(name, now)
            if state.created_at is not None:
                since = min(since, state.created_at)
            if now - since < self.grace_s:
                continue
            log.warning("removing stray container %s: no live attempt owns it", name)
            await self.runtime.terminate(name)
            if name not in self.owned():
                await asyncio.to_thread(shutil.rmtree, self.root / name, True)
            self._since.pop(name, None)
            removed.append(name)
        return removed
