"""Upload grants the agent holds for its attempts, kept where no task can read them.

A launch's grant is write access to the attempt's prefix in the object store. The attempt's
own state (``attempt.json``) lives in its work directory, which the task can read, so the grant
is taken out of the command before that is saved and kept here instead: in memory, and in
``{data_dir}/grants/{container}.json`` (mode 0600, outside every work directory) for a
restarted agent that adopts the attempt.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from pydantic import ValidationError
from touchstone.shared.commands import LaunchTask
from touchstone.shared.objects.grants import UploadGrant

MAX_GRANT_BYTES = 64 * 1024


class Grants:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._held: dict[str, UploadGrant] = {}

    def take(self, command: LaunchTask) -> LaunchTask:
        """The command without its grant (safe to save where the task can read); the grant is kept."""
        if command.upload is None:
            return command
        self._held[command.container_name] = command.upload
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.root / f"{command.container_name}.json"
        partial = path.with_suffix(".partial")
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(command.upload.model_dump_json())
        os.replace(partial, path)
        return command.model_copy(update={"upload": None})

    def give(self, command: LaunchTask) -> LaunchTask:
        """The command with its grant again (for the upload), when one is held."""
        grant = self._held.get(command.container_name) or self._load(command.container_name)
        return command.model_copy(update={"upload": grant}) if grant is not None else command

    def forget(self, name: str) -> None:
        self._held.pop(name, None)
        with contextlib.suppress(OSError):
            (self.root / f"{name}.json").unlink()

    def _load(self, name: str) -> UploadGrant | None:
        path = self.root / f"{name}.json"
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as f:
                grant = UploadGrant.model_validate_json(f.read(MAX_GRANT_BYTES))
        except (OSError, ValidationError):
            return None
        self._held[name] = grant
        return grant
