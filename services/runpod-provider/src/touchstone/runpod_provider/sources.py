"""Fetching a feature set on the provider's side (never inside the pod): a git clone at the
task's ref, or, where allowed, a copy of a local folder. Every git call is an argv list with
``--`` / ``--end-of-options`` before user values, no prompts and no system config.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from touchstone.shared.events import TaskSpec

_IGNORE = shutil.ignore_patterns(".git", "__pycache__", "*.pyc", ".venv", ".pytest_cache")


class SourceError(Exception):
    """The feature set could not be fetched (an infrastructure failure)."""


@dataclass(frozen=True)
class Staged:
    root: Path
    """The checkout or copy; it goes into the pod whole."""
    commit: str | None = None


async def stage_feature_set(spec: TaskSpec, dest: Path, *, allow_local: bool, git_timeout_s: float) -> Staged:
    """Put the feature set's source into ``dest`` (replaced when present)."""
    url = spec.git_url
    if url.startswith("-"):
        raise SourceError(f"refusing git URL {url!r}")
    if url.startswith("/") and not allow_local:
        raise SourceError("local feature set sources are not allowed")
    copied = await asyncio.to_thread(_clear_or_copy, url, dest)
    commit = None if copied else await _checkout(url, spec.git_ref, dest, git_timeout_s)
    if not await asyncio.to_thread(_inside, dest, spec.feature_set_path):
        raise SourceError(f"feature_set_path {spec.feature_set_path!r} is not a folder inside the source")
    return Staged(dest, commit)


def _clear_or_copy(url: str, dest: Path) -> bool:
    """Empty ``dest``; copy a local folder without git into it (True), else leave it to git."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not url.startswith("/"):
        return False
    source = Path(url)
    if not source.is_dir():
        raise SourceError(f"feature set source {url} is not a directory")
    if (source / ".git").exists():
        return False
    shutil.copytree(source, dest, symlinks=True, ignore=_IGNORE)
    return True


def _inside(dest: Path, feature_set_path: str) -> bool:
    folder = (dest / feature_set_path).resolve()
    return folder.is_relative_to(dest.resolve()) and folder.is_dir()


async def _git(args: list[str], timeout_s: float, cwd: Path) -> str:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(cwd),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "LANG": "C.UTF-8",
    }
    try:
        proc = await asyncio.create_subprocess_exec(
            "git", "-c", "protocol.ext.allow=never", *args,
            cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
    except OSError as e:
        raise SourceError(f"git could not run: {e}") from e
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError as e:
        proc.kill()
        await proc.wait()
        raise SourceError(f"git {args[0]} took longer than {timeout_s:.0f}s") from e
    if proc.returncode != 0:
        detail = " ".join((err or out).decode(errors="replace").strip().splitlines()[-3:])
        raise SourceError(f"git {args[0]} failed ({proc.returncode}): {detail[:500]}")
    return out.decode().strip()


async def _checkout(url: str, ref: str, dest: Path, timeout_s: float) -> str:
    if not ref or ref.startswith("-"):
        raise SourceError(f"refusing git ref {ref!r}")
    await _git(["clone", "--quiet", "--no-checkout", "--", url, str(dest)], timeout_s, dest.parent)
    commit = ""
    for candidate in (ref, f"origin/{ref}"):
        try:
            commit = await _git(["rev-parse", "--verify", "--quiet", "--end-of-options", f"{candidate}^{{commit}}"],
                                timeout_s, dest)
        except SourceError:
            continue
        if commit:
            break
    if not commit:
        raise SourceError(f"git ref {ref!r} not found in {url}")
    await _git(["checkout", "--quiet", "--detach", commit], timeout_s, dest)
    return commit
