"""Fetching a feature set on the provider's side (never inside the pod): a git clone at the
task's ref, or, where allowed, a copy of a local folder. Every git call is an argv list with
``--`` / ``--end-of-options`` before user values, no prompts and no system config.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path

from touchstone.shared.events import TaskSpec
from touchstone.shared.gitsource import SourceError, UnknownRef, checkout

__all__ = ["SourceError", "Staged", "UnknownRef", "stage_feature_set"]

_IGNORE = shutil.ignore_patterns(".git", "__pycache__", "*.pyc", ".venv", ".pytest_cache")


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


async def _checkout(url: str, ref: str, dest: Path, timeout_s: float) -> str:
    return await asyncio.to_thread(checkout, url, ref, dest, timeout_s=timeout_s)
