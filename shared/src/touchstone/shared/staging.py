"""What goes into an attempt and where its results come out, once for every platform
(DESIGN §5): the staging of the feature set (fetched by the control plane or the agent, never
by the task), the one list of what staging leaves out, the attempt's work layout and the
artifact layout. The agent's ``prepare``/``collect`` and the RunPod provider's
``sources``/``attempt`` use these, so the two cannot drift apart.

Work layout (the task's work directory on a host, ``touchstone/`` in a pod)::

    feature-set/   the feature set's checkout or copy
    trainer/       the trainer's folder (src/, configs/)
    out/           what the trainer writes: report.json, models/, metrics.json, curves.json

Artifact layout (the artifact store)::

    models/{submission}/{task}/attempt-{n}/models/..., metrics.json, curves.json, report.json
    logs/{submission}/{task}/attempt-{n}.log
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from touchstone.shared.events import TaskSpec
from touchstone.shared.fetchpolicy import FetchPolicy, FetchRefused
from touchstone.shared.gitsource import SourceError, SourceRefused, UnknownRef, checkout

FEATURE_SET_DIR = "feature-set"
TRAINER_DIR = "trainer"
OUTPUT_DIR = "out"
MODELS_DIR = "models"
METRICS_FILE = "metrics.json"
CURVES_FILE = "curves.json"
REPORT_FILE = "report.json"
COLLECTED_FILES = (METRICS_FILE, CURVES_FILE, REPORT_FILE)
"""The single files collected from ``out/`` beside ``out/models/``."""

STAGING_IGNORED = frozenset({".git", "__pycache__", ".venv", ".pytest_cache", ".mypy_cache", ".ruff_cache"})
"""Folder names staging leaves out (with ``*.pyc`` and ``*.egg-info``), on every platform."""


def staging_ignored(name: str) -> bool:
    return name in STAGING_IGNORED or name.endswith((".pyc", ".egg-info"))


def copytree_ignore(_folder: str, names: Iterable[str]) -> set[str]:
    """``shutil.copytree``'s ``ignore`` for ``STAGING_IGNORED``."""
    return {n for n in names if staging_ignored(n)}


def artifact_paths(artifacts_root: Path, submission_id: str, task_id: str, attempt: int) -> tuple[Path, Path]:
    """(outputs folder, log file) of one attempt in the artifact store."""
    outputs = artifacts_root / "models" / submission_id / task_id / f"attempt-{attempt}"
    log_file = artifacts_root / "logs" / submission_id / task_id / f"attempt-{attempt}.log"
    return outputs, log_file


def artifact_name(relative_model_path: str) -> str:
    """The artifact name of a file under ``out/models/`` (``sub/long.json`` → ``sub_long.json``)."""
    return relative_model_path.replace("/", "_")


class Rejected(UnknownRef):
    """The task's own inputs cannot work on any platform (a ``feature_set_path`` that is not a
    folder inside the source): failure class ``rejected``, never retried."""


@dataclass(frozen=True)
class Staged:
    root: Path
    """The checkout or copy (it goes into the work directory or the pod whole)."""
    folder: Path
    """The feature set's folder inside it (``feature_set_path``)."""
    commit: str | None = None


def stage_feature_set(spec: TaskSpec, dest: Path, *, policy: FetchPolicy, git_timeout_s: float) -> Staged:
    """Put the feature set's source into ``dest`` (replaced when present): a git checkout at
    ``spec.git_ref``, or, where ``policy`` allows local sources, a copy of a folder without git.
    Blocking. ``SourceRefused`` (permanent) when the policy forbids the source, ``UnknownRef``
    (permanent) for a ref the repository lacks, ``Rejected`` for a ``feature_set_path`` that
    is not a folder inside the source, ``SourceError`` for other trouble."""
    try:
        plan = policy.plan(spec.git_url)
    except FetchRefused as e:
        raise SourceRefused(f"feature set source refused: {e}") from e
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    source = Path(urlsplit(plan.url).path if plan.url.lower().startswith("file:") else plan.url)
    if plan.local and not source.is_dir():
        raise SourceError(f"feature set source {spec.git_url} is not a directory")
    if plan.local and not (source / ".git").exists():
        shutil.copytree(source, dest, symlinks=True, ignore=copytree_ignore)
        commit = None
    else:
        commit = checkout(spec.git_url, spec.git_ref, dest, policy=policy, timeout_s=git_timeout_s)
    folder = (dest / spec.feature_set_path).resolve()
    if not folder.is_relative_to(dest.resolve()) or not folder.is_dir():
        raise Rejected(f"feature_set_path {spec.feature_set_path!r} is not a folder inside the source")
    return Staged(dest, folder, commit)
