"""Fetching a feature set on the provider's side (never inside the pod): the one staging of
every platform (``touchstone.shared.staging.stage_feature_set``: a git clone at the task's ref,
or, where the fetch policy allows, a copy of a local folder), off the event loop.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from touchstone.shared import staging
from touchstone.shared.events import TaskSpec
from touchstone.shared.fetchpolicy import FetchPolicy
from touchstone.shared.gitsource import SourceError, SourceRefused, UnknownRef
from touchstone.shared.staging import Staged

__all__ = ["SourceError", "SourceRefused", "Staged", "UnknownRef", "stage_feature_set"]


async def stage_feature_set(spec: TaskSpec, dest: Path, *, policy: FetchPolicy, git_timeout_s: float) -> Staged:
    """Put the feature set's source into ``dest`` (replaced when present). ``policy`` decides
    which sources and addresses may be fetched (``SourceRefused``, permanent, when not)."""
    return await asyncio.to_thread(staging.stage_feature_set, spec, dest, policy=policy, git_timeout_s=git_timeout_s)
