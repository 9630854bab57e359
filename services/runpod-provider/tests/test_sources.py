"""Feature sets are fetched by the provider (git or a local copy), never inside the pod."""

from __future__ import annotations

from pathlib import Path

import pytest
from touchstone.runpod_provider.sources import SourceError, stage_feature_set
from touchstone.runpod_provider.testing import git
from touchstone.shared.events import TaskSpec
from touchstone.shared.fetchpolicy import FetchPolicy

LOCAL = FetchPolicy(allow_local=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "fs").mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    (root / "fs" / "feature_set.py").write_text("VERSION = 1\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "one")
    git(root, "tag", "v1")
    (root / "fs" / "feature_set.py").write_text("VERSION = 2\n")
    git(root, "commit", "-q", "-am", "two")
    return root


async def test_a_git_source_is_cloned_at_its_ref(repo, tmp_path):
    staged = await stage_feature_set(TaskSpec(git_url=str(repo), git_ref="v1", feature_set_path="fs"),
                                     tmp_path / "stage", policy=LOCAL, git_timeout_s=30)

    assert (staged.root / "fs" / "feature_set.py").read_text() == "VERSION = 1\n"
    assert staged.commit == git(repo, "rev-parse", "v1^{commit}")


async def test_a_plain_folder_is_copied_without_caches(tmp_path):
    source = tmp_path / "plain"
    (source / "__pycache__").mkdir(parents=True)
    (source / "feature_set.py").write_text("X = 1\n")
    (source / "__pycache__" / "x.pyc").write_bytes(b"")

    staged = await stage_feature_set(TaskSpec(git_url=str(source)), tmp_path / "stage", policy=LOCAL,
                                     git_timeout_s=30)

    assert (staged.root / "feature_set.py").exists() and not (staged.root / "__pycache__").exists()


@pytest.mark.parametrize(
    ("spec", "allow_local"),
    [
        (TaskSpec(git_url="--upload-pack=touch /tmp/pwned"), True),
        (TaskSpec(git_url="/somewhere"), False),
        (TaskSpec(git_url="/does/not/exist"), True),
    ],
)
async def test_refused_sources(spec, allow_local, tmp_path):
    with pytest.raises(SourceError):
        await stage_feature_set(spec, tmp_path / "stage", policy=FetchPolicy(allow_local=allow_local), git_timeout_s=30)


async def test_a_feature_set_path_may_not_leave_the_source(repo, tmp_path):
    with pytest.raises(SourceError):
        await stage_feature_set(TaskSpec(git_url=str(repo), feature_set_path="../.."), tmp_path / "stage",
                                policy=LOCAL, git_timeout_s=30)
    with pytest.raises(SourceError):
        await stage_feature_set(TaskSpec(git_url=str(repo), git_ref="no-such-ref"), tmp_path / "stage",
                                policy=LOCAL, git_timeout_s=30)
