"""Fetching a feature set on the provider's side (never inside the pod): a git clone at the
task's ref, or, where the fetch policy allows, a copy of a local folder. Every git call is an argv list with
``--`` / ``--end-of-options`` before user values, no prompts and no system config.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from touchstone.shared.events import TaskSpec
from touchstone.shared.fetchpolicy import FetchPolicy, FetchRefused
from touchstone.shared.gitsource import SourceError, SourceRefused, UnknownRef, checkout

__all__ = ["SourceError", "SourceRefused", "Staged", "UnknownRef", "stage_feature_set"]

_IGNORE = shutil.ignore_patterns(".git", "__pycache__", "*.pyc", ".venv", ".pytest_cache")


@dataclass(frozen=True)
class Staged:
    root: Path
    """The checkout or copy; it goes into the pod whole."""
    commit: str | None = None


async def stage_feature_set(spec: TaskSpec, dest: Path, *, policy: FetchPolicy, git_timeout_s: float) -> Staged:
    """Put the feature set's source into ``dest`` (replaced when present). ``policy`` decides
    which sources and addresses may be fetched (``SourceRefused``, permanent, when not)."""
    try:
        plan = policy.plan(spec.git_url)
    except FetchRefused as e:
        raise SourceRefused(f"feature set source refused: {e}") from e
    copied = await asyncio.to_thread(_clear_or_copy, plan.url if plan.local else None, dest)
    commit = None if copied else await _checkout(spec.git_url, spec.git_ref, dest, git_timeout_s, policy)
    if not await asyncio.to_thread(_inside, dest, spec.feature_set_path):
        raise SourceError(f"feature_set_path {spec.feature_set_path!r} is not a folder inside the source")
    return Staged(dest, commit)


def _clear_or_copy(local: str | None, dest: Path) -> bool:
    """Empty ``dest``; copy a local folder without git into it (True), else leave it to git."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if local is None:
        return False
    source = Path(urlsplit(local).path if local.lower().startswith("file:") else local)
    if not source.is_dir():
        raise SourceError(f"feature set source {local} is not a directory")
    if (source / ".git").exists():
        return False
    shutil.copytree(source, dest, symlinks=True, ignore=_IGNORE)
    return True


def _inside(dest: Path, feature_set_path: str) -> bool:
    folder = (dest / feature_set_path).resolve()
    return folder.is_relative_to(dest.resolve()) and folder.is_dir()


async def _checkout(url: str, ref: str, dest: Path, timeout_s: float, policy: FetchPolicy) -> str:
    return await asyncio.to_thread(checkout, url, ref, dest, policy=policy, timeout_s=timeout_s)
