"""Container runtimes: where an attempt's command runs. One small protocol, so a Docker
runtime can sit beside the process runtime.

Rules every runtime keeps:

* names are container names (``touchstone-{submission}-{task}-{attempt}``); the prefix marks
  what Touchstone owns, and ``list_ours`` returns only those (the agent removes the ones no
  live attempt owns after ``stray_grace_s``);
* an attempt has a folder of the agent's own, ``{root}/{name}/`` (its state, the console
  file, the runtime's bookkeeping), and inside it the task's work directory ``work/``, the
  only place the task can write. The runtime makes the work directory visible to the command
  (the process runtime runs in it, bubblewrap and Docker bind it) and nothing else of the
  attempt's folder: what the task plants there cannot reach the agent's own files;
* the console file is opened or bound by the runtime, never replaced by the task (Docker
  binds the single file, the process runtime hands the command an open descriptor);
* ``provision`` is idempotent; ``terminate`` is silent when the container is already gone;
* a command keeps running when the agent stops, and a restarted agent finds it again through
  ``list_ours`` and ``status``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from touchstone.shared.commands import CONTAINER_PREFIX

ContainerStatus = Literal["created", "running", "exited", "gone"]


WORK_SUBDIR = "work"
"""The task's work directory inside the attempt's folder."""


def attempt_home(root: Path, name: str) -> Path:
    """The attempt's own folder (the agent's: state, console, bookkeeping)."""
    return root / check_name(name)


def work_dir_of(root: Path, name: str) -> Path:
    """The task's work directory of attempt ``name`` (the only place the task can write)."""
    return attempt_home(root, name) / WORK_SUBDIR


def check_name(name: str) -> str:
    """``name`` when it is a Touchstone container name that is safe as a path component."""
    if not name.startswith(CONTAINER_PREFIX) or "/" in name or name in (".", ".."):
        raise ValueError(f"not a Touchstone container name: {name!r}")
    return name


@dataclass(frozen=True)
class ContainerSpec:
    """A container to provision for one attempt."""

    name: str
    work_dir: Path
    labels: Mapping[str, str] = field(default_factory=dict)
    gpu: int | None = None
    """The GPU it may use (``CUDA_VISIBLE_DEVICES``); none for a CPU slot."""


@dataclass(frozen=True)
class ContainerState:
    name: str
    status: ContainerStatus
    labels: Mapping[str, str] = field(default_factory=dict)
    exit_code: int | None = None
    """For ``exited``: the command's exit status; none when it vanished without one."""
    created_at: float | None = None
    """When the container was created (epoch seconds), when known."""


class ContainerRuntime(Protocol):
    async def provision(self, spec: ContainerSpec) -> None:
        """Create the container around ``spec.work_dir`` (``{root}/{name}/work``, which
        exists); idempotent."""

    async def run(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], console: Path, read_only: Sequence[Path] = ()
    ) -> None:
        """Start ``argv`` (never a shell string) in the container, in its work directory, with
        exactly ``env``; its stdout and stderr are appended to ``console`` (in the attempt's
        folder, beside the work directory, never in it).
        ``read_only`` folders of the agent (installed requirements) are visible at the same
        path, read-only where the runtime can enforce it."""

    async def status(self, name: str) -> ContainerState:
        """Where the container stands now (``gone`` when there is none)."""

    async def terminate(self, name: str) -> None:
        """Stop the command (its whole process tree) and remove the container; silent when it
        is already gone. The work directory is the agent's to remove."""

    async def list_ours(self) -> list[ContainerState]:
        """Every container with Touchstone's prefix that this agent may own, running or not:
        its own, and ones no agent claims; never another agent's."""

    async def probe_python(self, code: str) -> str:
        """Run ``code`` with the interpreter that runs the trainer (a throw-away container, no
        network) and return its stdout."""
