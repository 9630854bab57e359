"""The process runtime's sandbox: bubblewrap (Debian's ``bubblewrap``), for hosts without Docker.

A task in it gets new PID, network, mount, IPC, UTS and user namespaces and runs as
``nobody`` with no capabilities and ``no_new_privs``. It sees a read-only system (``/usr`` and
the usual links, a few harmless files of ``/etc``, the interpreter's prefix), a fresh ``/proc``
that shows only its own processes, a private ``/dev`` and ``/tmp``, its work directory
(writable: the only place it can write) and the read-only folders the agent hands it (its own
installed requirements). It does not see the agent's data directory (tokens, credentials,
other tasks' work directories, the requirements cache), other processes, or any network.

``probe()`` tells whether bubblewrap works here (it needs unprivileged user namespaces when the
agent is not root); an agent that cannot sandbox refuses work rather than run tasks bare.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from touchstone.agent.runtime import ContainerState

SYSTEM_DIRS = ("/usr",)
SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_FILES = (
    "/etc/alternatives", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime",
    "/etc/nsswitch.conf", "/etc/ssl/certs", "/etc/ca-certificates", "/etc/mime.types", "/etc/timezone",
)  # fmt: skip
NOBODY = 65534


@dataclass(frozen=True)
class Bubblewrap:
    """How to wrap a command in a bubblewrap sandbox."""

    binary: str = "bwrap"
    python_prefixes: tuple[Path, ...] = ()
    """Interpreter folders outside ``/usr`` to show read-only (a venv, a pyenv build)."""

    @classmethod
    def for_python(cls, python: str, binary: str = "") -> Bubblewrap:
        """A sandbox that can run ``python`` (its prefix and the agent's, when outside /usr)."""
        prefixes = {Path(sys.prefix), Path(sys.base_prefix)}
        resolved = Path(python if "/" in python else shutil.which(python) or python)
        for candidate in (resolved, resolved.resolve()):
            if candidate.parent.name == "bin":
                prefixes.add(candidate.parent.parent)
        outside = sorted(p for p in prefixes if not any(p.is_relative_to(d) for d in SYSTEM_DIRS))
        return cls(binary or shutil.which("bwrap") or "bwrap", tuple(outside))

    def describe(self) -> str:
        return f"bubblewrap ({self.binary}): no network, own PID/IPC/mount namespaces, read-only system"

    def wrap(self, argv: Sequence[str], work_dir: Path, read_only: Sequence[Path] = ()) -> list[str]:
        """``argv`` inside the sandbox, in ``work_dir``."""
        args = [
            self.binary, "--unshare-all", "--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY),
            "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--hostname", "task",
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--dir", "/var/tmp",
        ]  # fmt: skip
        for folder in SYSTEM_DIRS:
            args += ["--ro-bind", folder, folder]
        for link in SYSTEM_LINKS:
            if os.path.islink(link):
                args += ["--symlink", os.readlink(link), link]
            elif os.path.isdir(link):
                args += ["--ro-bind", link, link]
        for path in ETC_FILES:
            args += ["--ro-bind-try", path, path]
        for prefix in self.python_prefixes:
            args += ["--ro-bind", str(prefix), str(prefix)]
        work = str(work_dir.resolve())
        args += ["--bind", work, work, "--setenv", "HOME", work]
        for folder in read_only:
            args += ["--ro-bind", str(folder), str(folder)]
        return [*args, "--chdir", work, "--", *argv]

    def probe(self, timeout_s: float = 10.0) -> str | None:
        """None when a sandbox starts here, else why not."""
        if not shutil.which(self.binary) and not os.path.exists(self.binary):
            return f"bubblewrap is not installed ({self.binary}; Debian: apt-get install bubblewrap)"
        probe_dir = Path(os.environ.get("TMPDIR", "/tmp"))
        try:
            done = subprocess.run(self.wrap(["/bin/true"], probe_dir), capture_output=True, timeout=timeout_s,
                                  check=False, env={"PATH": "/usr/bin:/bin"})
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"bubblewrap could not run: {e}"
        if done.returncode != 0:
            return f"bubblewrap cannot make a sandbox here: {done.stderr.decode(errors='replace').strip()[:300]}"
        return None


class UnavailableRuntime:
    """The runtime of an agent that refuses work: nothing runs, nothing is there."""

    def __init__(self, why: str) -> None:
        self.why = why

    async def provision(self, spec: object) -> None:
        raise RuntimeError(self.why)

    async def run(self, name: str, *args: object, **kwargs: object) -> None:
        raise RuntimeError(self.why)

    async def status(self, name: str) -> ContainerState:
        return ContainerState(name, "gone")

    async def terminate(self, name: str) -> None:
        return None

    async def list_ours(self) -> list[ContainerState]:
        return []

    async def probe_python(self, code: str) -> str:
        raise RuntimeError(self.why)
