"""The prepare phase: the agent (never the task) puts the feature set and the trainer into an
attempt's work directory, then builds the trainer's command line and environment.

The work directory's layout is ``touchstone.shared.staging``'s (the same in a RunPod pod); the
console file ``console.log`` lives beside the work directory, in the attempt's own folder.

Every external program is called with an argv list, and ``--`` (or ``--end-of-options``) stands
before every value that came from a user.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from touchstone.shared.commands import LaunchTask, trainer_args
from touchstone.shared.fetchpolicy import FetchPolicy
from touchstone.shared.gitsource import SourceError, TrainerSource, TrainerTree, UnknownRef
from touchstone.shared.staging import (
    FEATURE_SET_DIR,
    REPORT_FILE,
    TRAINER_DIR,
    Rejected,
    copytree_ignore,
    stage_feature_set,
)

CONSOLE_LOG = "console.log"
"""In the attempt's own folder, beside the work directory (never in it)."""


class PrepareError(Exception):
    """The feature set or the trainer could not be put in place (an infrastructure failure:
    retrying, maybe elsewhere, may help)."""

    permanent = False


class PermanentPrepareError(PrepareError):
    """Retrying cannot help: an unknown ``trainer_ref``, a requirement without a wheel."""

    permanent = True
    failure_class = "permanent"


class RejectedPrepareError(PermanentPrepareError):
    """The task's own inputs cannot work (``staging.Rejected``)."""

    failure_class = "rejected"


@dataclass(frozen=True)
class Prepared:
    feature_set: Path
    commit: str | None = None


def fetch_feature_set(
    command: LaunchTask, work_dir: Path, *, policy: FetchPolicy, git_timeout_s: float
) -> Prepared:
    """Clone (or, for an allowed local directory without git, copy) the feature set into
    ``work_dir/feature-set`` and return the feature set's folder inside it
    (``touchstone.shared.staging``, as on every platform). ``policy`` decides which sources and
    addresses may be fetched (a refusal is permanent, as is an unknown ref)."""
    try:
        staged = stage_feature_set(command.spec, work_dir / FEATURE_SET_DIR, policy=policy,
                                   git_timeout_s=git_timeout_s)
    except Rejected as e:
        raise RejectedPrepareError(str(e)) from e
    except UnknownRef as e:  # and SourceRefused
        raise PermanentPrepareError(str(e)) from e
    except SourceError as e:
        raise PrepareError(str(e)) from e
    return Prepared(staged.folder, staged.commit)


def resolve_trainer(source: TrainerSource, ref: str) -> TrainerTree:
    """The trainer folder at ``ref`` (blocking: git). An unknown ref is permanent."""
    try:
        return source.resolve(ref)
    except UnknownRef as e:
        raise PermanentPrepareError(str(e)) from e
    except SourceError as e:
        raise PrepareError(str(e)) from e


def place_trainer(trainer_dir: Path, work_dir: Path) -> Path:
    """Copy the trainer's folder into ``work_dir/trainer``; returns its ``src`` folder."""
    dest = work_dir / TRAINER_DIR
    if dest.exists():
        shutil.rmtree(dest)
    if not (trainer_dir / "src").is_dir():
        raise PrepareError(f"trainer folder {trainer_dir} has no src/")
    shutil.copytree(trainer_dir, dest, symlinks=True, ignore=copytree_ignore)
    return dest / "src"


def trainer_argv(python: str, module: str, command: LaunchTask, feature_set: Path, output: Path) -> list[str]:
    """``python -m MODULE validate|train ...`` for this attempt (DESIGN §6)."""
    try:
        args = trainer_args(command, feature_set=str(feature_set), output=str(output),
                            report=str(output / REPORT_FILE))
    except ValueError as e:
        raise PrepareError(str(e)) from e
    return [python, "-m", module, *args]


def trainer_env(
    passthrough: tuple[str, ...], work_dir: Path, trainer_src: Path, requirements: Path | None = None
) -> dict[str, str]:
    """The trainer's whole environment: a few harmless variables, nothing of the agent's
    (no NATS credentials, no cloud keys). ``PYTHONPATH`` is the trainer's ``src/``, then the
    feature set's installed requirements."""
    env = {name: os.environ[name] for name in passthrough if name in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.setdefault("LANG", "C.UTF-8")
    env.update(
        HOME=str(work_dir),
        PYTHONPATH=os.pathsep.join(str(p) for p in (trainer_src, requirements) if p is not None),
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",
        MPLCONFIGDIR=str(work_dir / ".cache"),
    )
    return env
