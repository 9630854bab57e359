"""The workspace protocol: what an attempt driver needs from the place an attempt runs, in a
handful of methods, so that the agent's runtimes (a bubblewrap-sandboxed process, a Docker
container) and a RunPod pod over SSH/SFTP keep the same rules. One contract suite
(``tests/test_workspace_contract.py``) runs the same cases against every implementation.

Rules every workspace keeps:

* paths are relative to the workspace (the task's work directory; ``touchstone/`` in a pod),
  plain (no ``..``, not absolute); the command runs there;
* ``put_tree`` copies a local folder in, leaving out what staging leaves out
  (``touchstone.shared.staging``) and links;
* ``run`` starts an argv list (never a shell string) with exactly ``env`` (nothing of the
  platform's own environment), detached: it outlives the driver, and starts at most once;
* ``read_file`` never follows a link on the way and never opens what is not a regular file;
  it answers None for those, for a missing file, and for one over ``limit`` bytes;
* ``console`` reads at most ``limit`` bytes of the command's stdout and stderr from ``offset``
  (the driver keeps the offset and cuts lines: ``touchstone.shared.console``);
* ``remove`` stops the command and removes the workspace; silent when already gone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

WorkspaceStatus = Literal["created", "running", "exited", "gone"]


@dataclass(frozen=True)
class WorkspaceState:
    status: WorkspaceStatus
    exit_code: int | None = None
    """For ``exited``: the command's exit status; none when it ended without one."""


class Workspace(Protocol):
    async def put_tree(self, local: Path, rel: str) -> int:
        """Copy the folder ``local`` to ``rel`` in the workspace; returns the files copied."""

    async def run(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        """Start ``argv`` in the workspace with exactly ``env``; once (again: nothing)."""

    async def state(self) -> WorkspaceState:
        """Where the command stands."""

    async def read_file(self, rel: str, limit: int) -> bytes | None:
        """The regular file ``rel`` if it holds at most ``limit`` bytes (see the rules)."""

    async def console(self, offset: int, limit: int) -> bytes:
        """At most ``limit`` bytes of the console from ``offset`` (empty: nothing new)."""

    async def remove(self) -> None:
        """Stop the command and remove the workspace; silent when already gone."""
