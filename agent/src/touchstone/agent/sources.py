"""What prepare puts beside the feature set, from caches shared by every attempt: the trainer
at the attempt's ``trainer_ref`` (``touchstone.shared.gitsource``) and the feature set's
installed ``requirements.txt`` (``requirements.py``). Blocking work runs in threads."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path

from touchstone.agent import prepare
from touchstone.agent.config import AgentSettings
from touchstone.agent.requirements import PROBE, REQUIREMENTS_FILE, PipOptions, PythonTarget, RequirementsCache
from touchstone.agent.runtime import ContainerRuntime
from touchstone.shared.gitsource import TrainerSource, TrainerTree

log = logging.getLogger(__name__)


class Sources:
    def __init__(self, settings: AgentSettings, runtime: ContainerRuntime) -> None:
        self.runtime = runtime
        self.trainer: TrainerSource = settings.trainer_source()
        self._trainer_lock = threading.Lock()  # one git call on the trainer repository at a time
        options = PipOptions(tuple(settings.pip), settings.pip_index_url, tuple(settings.pip_find_links),
                             settings.pip_no_index, settings.pip_timeout_s)
        self.requirements = RequirementsCache(settings.cache_root / "requirements", options)
        self._python = PythonTarget.parse(settings.python_tags) if settings.python_tags else None
        self._python_lock = asyncio.Lock()

    async def trainer_at(self, ref: str) -> TrainerTree:
        """The trainer folder at ``ref``; ``PermanentPrepareError`` for an unknown ref."""
        return await asyncio.to_thread(self._resolve, ref)

    def _resolve(self, ref: str) -> TrainerTree:
        with self._trainer_lock:
            tree: TrainerTree = prepare.resolve_trainer(self.trainer, ref)
        return tree

    async def requirements_of(self, feature_set: Path, checkout: Path) -> Path | None:
        """The installed ``requirements.txt`` beside ``feature_set.py`` (installed now unless
        cached), or none when there is none."""
        file = feature_set / REQUIREMENTS_FILE
        if not (file.exists() or file.is_symlink()):
            return None
        target = await self.python_target()
        return await asyncio.to_thread(self.requirements.install, file, checkout, target)

    async def python_target(self) -> PythonTarget:
        """pip's target: the trainer's interpreter, asked once (or the ``python_tags`` setting)."""
        async with self._python_lock:
            if self._python is None:
                try:
                    self._python = PythonTarget.from_probe(await self.runtime.probe_python(PROBE))
                except Exception as e:
                    raise prepare.PrepareError(f"could not ask the trainer's Python for its tags: {e}") from e
                log.info("requirements are installed for %s", self._python.key())
            return self._python
