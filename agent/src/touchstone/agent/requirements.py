"""A feature set's ``requirements.txt``: installed by the agent during prepare, never by the task
(whose container has no network), into a cache shared by every attempt.

* Only plain requirement lines (``name[extras] <specifiers> ; markers``) are accepted: no pip
  options (``-r``, ``--index-url``, ``-e``), no URLs or paths. A symlink is refused.
* ``pip install --only-binary=:all: --target CACHE/<key>``: wheels only, so no ``setup.py`` of an
  untrusted package ever runs; pip gets an argv list (never a shell), no configuration files
  and no credentials in its environment (``PIP_CONFIG_FILE=/dev/null``, a clean ``HOME``).
* pip is always told the task's interpreter (``--python-version``, ``--implementation``,
  ``--abi``, every ``--platform`` it accepts), so the wheels fit the interpreter that runs the
  trainer, whatever Python pip itself runs on: the agent's own for the process runtime, the
  image's ``python3`` for Docker (asked once, or the ``docker_python_tags`` setting).
* The cache key is the sha256 of the file and that target, so a warm prepare runs no pip at
  all; a folder appears under its key only complete (installed aside, then renamed).
* The folder goes on the trainer's ``PYTHONPATH`` after the trainer's ``src/`` (Docker: mounted
  read-only at the same path).

A failed install (no such package, no wheel for the target) is permanent: retrying cannot
help, and the message carries pip's last lines. pip that cannot reach the index, times out or
does not run is an infrastructure failure.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from touchstone.agent.prepare import PermanentPrepareError, PrepareError
from touchstone.shared import requirements
from touchstone.shared.requirements import BadRequirements, read_file

log = logging.getLogger(__name__)

REQUIREMENTS_FILE = requirements.REQUIREMENTS_FILE

PROBE = r"""
import json, platform, sys, sysconfig
impl = {"cpython": "cp", "pypy": "pp"}.get(sys.implementation.name, "cp")
major, minor = sys.version_info[:2]
machine = platform.machine()
plats = []
libc, libc_version = platform.libc_ver()
if sys.platform.startswith("linux") and libc == "glibc" and libc_version:
    glibc = tuple(int(p) for p in libc_version.split(".")[:2])
    plats += ["manylinux_2_%d_%s" % (m, machine) for m in range(glibc[1], 4, -1)]
    legacy = [(17, "manylinux2014")]
    if machine in ("x86_64", "i686"):
        legacy += [(12, "manylinux2010"), (5, "manylinux1")]
    plats += ["%s_%s" % (name, machine) for need, name in legacy if glibc >= (2, need)]
plats.append(sysconfig.get_platform().replace("-", "_").replace(".", "_"))
print(json.dumps({"version": "%d.%d" % (major, minor), "implementation": impl,
                  "abi": "%s%d%d" % (impl, major, minor), "platforms": plats}))
"""
"""Run by the task's interpreter (standard library only): the tags its wheels must have."""

@dataclass(frozen=True)
class PythonTarget:
    """The interpreter the trainer runs with, as pip's target options."""

    version: str
    implementation: str
    abi: str
    platforms: tuple[str, ...]

    @classmethod
    def from_probe(cls, output: str) -> PythonTarget:
        data = json.loads(output.strip().splitlines()[-1])
        return cls(str(data["version"]), str(data["implementation"]), str(data["abi"]),
                   tuple(str(p) for p in data["platforms"]))

    @classmethod
    def parse(cls, text: str) -> PythonTarget:
        """``VERSION/ABI/PLATFORM,PLATFORM...`` (the ``docker_python_tags`` setting)."""
        try:
            version, abi, platforms = text.split("/")
        except ValueError:
            raise ValueError(f"python tags {text!r} are not VERSION/ABI/PLATFORM,...") from None
        return cls(version, re.sub(r"\d.*", "", abi) or "cp", abi, tuple(p for p in platforms.split(",") if p))

    def key(self) -> str:
        return f"{self.implementation}{self.version}-{self.abi}-{'.'.join(self.platforms)}"

    def pip_args(self) -> list[str]:
        args = ["--python-version", self.version, "--implementation", self.implementation, "--abi", self.abi]
        for platform in self.platforms:
            args += ["--platform", platform]
        return args


@dataclass(frozen=True)
class PipOptions:
    command: tuple[str, ...] = ()
    """pip's argv prefix; empty means find one (``find_pip``)."""
    index_url: str = ""
    find_links: tuple[str, ...] = ()
    no_index: bool = False
    timeout_s: float = 600.0


def plain_requirements(data: bytes) -> list[str]:
    """The requirement lines of a ``requirements.txt``; a ``PermanentPrepareError`` naming the
    first line that is not a plain requirement (the rules of ``touchstone.shared.requirements``)."""
    try:
        return requirements.plain_requirements(data)
    except requirements.BadRequirements as e:
        raise PermanentPrepareError(str(e)) from None


def find_pip() -> list[str]:
    """``python -m pip`` of the agent's interpreter, else of the first ``python3`` on ``PATH``
    that has pip (resolved to the real interpreter, so a version-manager shim is not needed
    at install time)."""
    candidates = [sys.executable]
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        on_path = Path(folder or ".") / "python3"
        if not os.access(on_path, os.X_OK):
            continue
        try:
            real = subprocess.run(
                [str(on_path), "-c", "import sys; print(sys.executable)"],
                capture_output=True, text=True, timeout=30, check=True,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            continue
        if real and real not in candidates:
            candidates.append(real)
    for python in candidates:
        try:
            done = subprocess.run([python, "-m", "pip", "--version"], capture_output=True, timeout=60, check=False)
        except (OSError, subprocess.SubprocessError):
            continue
        if done.returncode == 0:
            log.info("requirements are installed with %s -m pip", python)
            return [python, "-m", "pip"]
    raise PrepareError("no pip to install requirements with: set pip (TOUCHSTONE_PIP)")


class RequirementsCache:
    """Installed requirements, one folder per (file, target) under ``root``."""

    def __init__(self, root: Path, options: PipOptions) -> None:
        self.root = root
        self.options = options
        self._pip: list[str] | None = list(options.command) or None
        self._lock = threading.Lock()
        self._keys: dict[str, threading.Lock] = {}

    def key(self, data: bytes, target: PythonTarget) -> str:
        return hashlib.sha256(data + b"\0" + target.key().encode()).hexdigest()

    def install(self, requirements: Path, checkout: Path, target: PythonTarget) -> Path | None:
        """The folder holding ``requirements`` installed for ``target`` (installed now unless
        cached); none when the file lists nothing. Blocking: run it in a thread."""
        try:
            data = read_file(requirements, checkout)
        except BadRequirements as e:
            raise PermanentPrepareError(str(e)) from None
        lines = plain_requirements(data)
        if not lines:
            return None
        key = self.key(data, target)
        folder = self.root / key
        if folder.is_dir():
            return folder
        with self._lock:
            lock = self._keys.setdefault(key, threading.Lock())
        with lock:  # one install per key at a time; the others then find it done
            if folder.is_dir():
                return folder
            self._install(lines, folder, target)
        return folder

    def _install(self, lines: list[str], folder: Path, target: PythonTarget) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name[:12]}-", dir=self.root))
        try:
            listed = staging / "requirements.txt"
            listed.write_text("\n".join(lines) + "\n")
            site = staging / "site"
            argv = [*self._pip_command(), "install", "--quiet", "--no-input", "--disable-pip-version-check",
                    "--root-user-action=ignore", "--only-binary=:all:", "--no-compile", "--target", str(site),
                    *target.pip_args()]
            o = self.options
            if o.index_url:
                argv += ["--index-url", o.index_url]
            for link in o.find_links:
                argv += ["--find-links", link]
            if o.no_index:
                argv.append("--no-index")
            argv += ["--requirement", str(listed)]
            self._run(argv, staging)
            for path in (site, *site.rglob("*")):  # readable by the task's user, writable by nobody else
                if not path.is_symlink():
                    path.chmod(0o755 if path.is_dir() else 0o644)
            site.rename(folder)
            log.info("installed requirements %s for %s: %s", folder.name[:12], target.key(), ", ".join(lines))
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _pip_command(self) -> list[str]:
        if self._pip is None:
            self._pip = find_pip()
        return self._pip

    def _run(self, argv: list[str], staging: Path) -> None:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(staging),
            "LANG": "C.UTF-8",
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_CACHE_DIR": str(self.root / ".pip-cache"),
            "PYTHONNOUSERSITE": "1",
        }
        try:
            done = subprocess.run(argv, cwd=staging, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, timeout=self.options.timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise PrepareError(f"pip install took longer than {self.options.timeout_s:.0f}s") from None
        except OSError as e:
            raise PrepareError(f"pip could not run: {e}") from e
        if done.returncode == 0:
            return
        output = f"{done.stdout}\n{done.stderr}"
        tail = " | ".join(line.strip() for line in output.strip().splitlines()[-5:] if line.strip())[:1500]
        message = f"pip install of requirements.txt failed ({done.returncode}): {tail}"
        if requirements.unreachable_index(output.splitlines()):
            raise PrepareError(message)
        raise PermanentPrepareError(message)

