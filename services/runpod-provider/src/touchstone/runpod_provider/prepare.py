"""What goes into a pod besides the feature set: the trainer at the task's ``trainer_ref`` and
the feature set's ``requirements.txt``.

* **The trainer** is resolved on the provider's side (``touchstone.shared.gitsource``, in a
  thread, cached per commit under ``{data_dir}/runpod-provider/cache/trainer``) before any pod is
  rented: an unknown ref fails the attempt for good (``PermanentFailure``) and costs no pod. The
  fixed ``trainer_src_dir`` setting serves one folder whatever the ref (stand-in trainers).
* **Requirements** are checked here (plain requirement lines only, ``touchstone.shared.requirements``)
  and installed in the pod, which has network, before the run: ``python3 -m pip install
  --only-binary=:all: --target touchstone/deps`` as one quoted argv, so no package's build code
  runs and no user text reaches a shell. ``touchstone/deps`` goes on ``PYTHONPATH`` after the
  trainer's ``src``. A pod image without pip, or a requirement pip cannot satisfy, is permanent;
  pip that cannot reach its index, or a lost pod, is an infrastructure failure.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncssh
from touchstone.shared.gitsource import SourceError, TrainerSource, UnknownRef
from touchstone.shared.requirements import REQUIREMENTS_FILE, BadRequirements, plain_requirements, read_file

from . import domain, requirements, ssh
from .config import RunpodProviderSettings
from .pods import InfraFailure

TAIL_LINES = 8


class PermanentFailure(Exception):
    """Retrying cannot help (an unknown ``trainer_ref``, a requirement without a wheel): the
    attempt fails with ``failure_class="permanent"`` and the scheduler does not retry."""


class RejectedInput(PermanentFailure):
    """The task's own inputs cannot work (``staging.Rejected``): ``failure_class="rejected"``."""


@dataclass(frozen=True)
class TrainerFiles:
    """The trainer folders copied into a pod."""

    src: Path
    configs: Path | None
    label: str
    """Which trainer, for the attempt's console: the ref and its commit, or the fixed folder."""


class TrainerTrees:
    """``trainer_ref`` → the trainer's files, from the settings' trainer source."""

    def __init__(self, settings: RunpodProviderSettings) -> None:
        self.settings = settings
        self._source: TrainerSource | None = None
        self._lock = threading.Lock()  # one git call on the trainer repository at a time

    async def at(self, ref: str) -> TrainerFiles:
        """The trainer at ``ref``: ``PermanentFailure`` for an unknown ref, ``InfraFailure``
        when the repository cannot be read."""
        return await asyncio.to_thread(self._resolve, ref)

    def _resolve(self, ref: str) -> TrainerFiles:
        fixed = self.settings.trainer_src_dir
        if fixed is not None:
            if not fixed.is_dir():
                raise InfraFailure(f"trainer source {fixed} is not a folder")
            configs = fixed.parent / "configs"
            return TrainerFiles(fixed, configs if configs.is_dir() else None, f"{fixed} (fixed; trainer_ref ignored)")
        with self._lock:
            try:
                if self._source is None:
                    self._source = self.settings.trainer_source()
                tree = self._source.resolve(ref)
            except UnknownRef as e:
                raise PermanentFailure(str(e)) from e
            except (SourceError, ValueError) as e:
                raise InfraFailure(f"could not get the trainer at {ref!r}: {e}") from e
        configs = tree.path / "configs"
        label = f"{ref} ({tree.commit[:12]})" if tree.commit else f"{tree.path} (fixed)"
        return TrainerFiles(tree.path / "src", configs if configs.is_dir() else None, label)


def read_requirements(checkout: Path, feature_set_path: str) -> list[str]:
    """The checked lines of the ``requirements.txt`` beside ``feature_set.py`` in a staged
    feature set (none when there is no such file). Blocking: run it in a thread."""
    file = checkout / feature_set_path / REQUIREMENTS_FILE
    if not (file.exists() or file.is_symlink()):
        return []
    try:
        return plain_requirements(read_file(file, checkout))
    except BadRequirements as e:
        raise PermanentFailure(str(e)) from None


async def put_requirements(sftp: asyncssh.SFTPClient, lines: list[str], settings: RunpodProviderSettings,
                           layout: domain.PodLayout) -> None:
    """The checked lines (what pip reads, not the user's file) and the ``pip_find_links``
    folders, into the pod."""
    async with sftp.open(layout.requirements, "w") as f:
        await f.write("\n".join(lines) + "\n")
    for index, folder in enumerate(settings.pip_find_links):
        if not folder.is_dir():
            raise InfraFailure(f"pip_find_links folder {folder} is not a folder")
        await ssh.put_tree(sftp, folder, layout.wheels(index))


async def install_requirements(conn: asyncssh.SSHClientConnection, settings: RunpodProviderSettings,
                               layout: domain.PodLayout, write: Callable[[list[str]], Awaitable[None]]) -> None:
    """Install the requirements put into the pod; pip's lines go to ``write`` (the console)."""
    python = settings.python
    probe = [python, "-m", "pip", "--version"]
    status, tail = await _run(conn, probe, write, settings.pip_timeout_s, "asking pip for its version")
    if status is None:
        raise InfraFailure("the pod went away while pip was asked for its version")
    if status != 0:
        raise PermanentFailure(
            f"the pod's image has no pip ({domain.command_line(probe)} exited {status}: {' | '.join(tail)[-300:]}), "
            "so requirements.txt cannot be installed; use an image with pip"
        )
    argv = requirements.pip_install_argv(layout, python, index_url=settings.pip_index_url,
                                   find_links=len(settings.pip_find_links), no_index=settings.pip_no_index)
    await write([f"[touchstone] installing requirements.txt: {domain.command_line(argv)}"])
    status, tail = await _run(conn, argv, write, settings.pip_timeout_s, "pip install of requirements.txt")
    outcome = requirements.install_outcome(status, tail)
    if outcome.succeeded:
        return
    if outcome.failure_class == "permanent":
        raise PermanentFailure(outcome.reason)
    raise InfraFailure(outcome.reason)


async def _run(conn: asyncssh.SSHClientConnection, argv: list[str], write: Callable[[list[str]], Awaitable[None]],
               timeout_s: float, what: str) -> tuple[int | None, list[str]]:
    """(exit status or None, last lines) of one command in the pod, within ``timeout_s``."""
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)

    async def lines(batch: list[str]) -> None:
        tail.extend(line for line in batch if line.strip())
        await write(batch)

    try:
        async with asyncio.timeout(timeout_s):
            status = await ssh.run_streaming(conn, domain.command_line(argv), lines, timeout_s * 2)
    except TimeoutError:
        raise InfraFailure(f"{what} took longer than {timeout_s:.0f}s in the pod") from None
    except ssh.SshFailed as e:
        raise InfraFailure(str(e)) from e
    return status, list(tail)
