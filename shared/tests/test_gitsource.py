"""The trainer source: a ref of a real git repository resolved to an extracted trainer folder."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from touchstone.shared.fetchpolicy import FetchPolicy
from touchstone.shared.gitsource import SourceError, TrainerSource, UnknownRef, checkout, default_trainer_repo

LOCAL = FetchPolicy(allow_local=True)


def _git(repo: Path, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@x",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@x",
        "PATH": "/usr/bin:/bin",
        "HOME": str(repo),
    }
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A trainer repository: main says v1, tag v2 and branch feature say v2."""
    repo = tmp_path / "repo"
    (repo / "trainer" / "src").mkdir(parents=True)
    _git(repo, "init", "--quiet", "--initial-branch=main")
    (repo / "trainer" / "src" / "version.txt").write_text("v1")
    _git(repo, "add", ".")
    _git(repo, "commit", "--quiet", "-m", "v1")
    _git(repo, "checkout", "--quiet", "-b", "feature")
    (repo / "trainer" / "src" / "version.txt").write_text("v2")
    _git(repo, "commit", "--quiet", "-am", "v2")
    _git(repo, "tag", "v2")
    _git(repo, "checkout", "--quiet", "main")
    return repo


@pytest.mark.parametrize("ref, expected", [("main", "v1"), ("feature", "v2"), ("v2", "v2")])
def test_a_branch_or_tag_gives_that_commits_trainer(repo: Path, tmp_path: Path, ref: str, expected: str) -> None:
    tree = TrainerSource(tmp_path / "cache", repo=str(repo)).resolve(ref)
    assert (tree.path / "src" / "version.txt").read_text() == expected
    assert tree.commit == _git(repo, "rev-parse", ref + "^{commit}")


def test_a_commit_id_works_and_the_working_tree_is_not_used(repo: Path, tmp_path: Path) -> None:
    (repo / "trainer" / "src" / "version.txt").write_text("uncommitted")
    first = _git(repo, "rev-list", "--max-parents=0", "HEAD")
    tree = TrainerSource(tmp_path / "cache", repo=str(repo)).resolve(first)
    assert (tree.path / "src" / "version.txt").read_text() == "v1"


@pytest.mark.parametrize("ref", ["no-such-branch", "--upload-pack=touch", "main extra", ""])
def test_an_unknown_ref_is_a_permanent_failure_naming_it(repo: Path, tmp_path: Path, ref: str) -> None:
    with pytest.raises(UnknownRef) as caught:
        TrainerSource(tmp_path / "cache", repo=str(repo)).resolve(ref)
    assert repr(ref) in str(caught.value)


def test_a_git_url_is_mirrored_and_follows_new_commits(repo: Path, tmp_path: Path) -> None:
    source = TrainerSource(tmp_path / "cache", repo=f"file://{repo}", refetch_after_s=0)
    assert (source.resolve("feature").path / "src" / "version.txt").read_text() == "v2"
    _git(repo, "checkout", "--quiet", "feature")
    (repo / "trainer" / "src" / "version.txt").write_text("v3")
    _git(repo, "commit", "--quiet", "-am", "v3")
    assert (source.resolve("feature").path / "src" / "version.txt").read_text() == "v3"


def test_the_extracted_tree_is_cached_by_commit(repo: Path, tmp_path: Path) -> None:
    source = TrainerSource(tmp_path / "cache", repo=str(repo))
    first = source.resolve("main")
    (first.path / "src" / "marker").write_text("kept")
    assert (source.resolve("main").path / "src" / "marker").exists()


def test_a_ref_without_the_trainer_folder_is_a_clear_error(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(UnknownRef, match="has no tools/src"):
        TrainerSource(tmp_path / "cache", repo=str(repo), subdir="tools").resolve("main")


def test_a_fixed_folder_serves_every_ref(tmp_path: Path) -> None:
    tree = TrainerSource(tmp_path / "cache", fixed_dir=tmp_path).resolve("anything")
    assert tree.path == tmp_path and tree.commit is None


def test_the_default_repository_is_the_checkout_holding_the_trainer(repo: Path, tmp_path: Path) -> None:
    assert default_trainer_repo(repo / "trainer") == str(repo)
    plain = tmp_path / "plain"
    plain.mkdir()
    assert default_trainer_repo(plain) is None


@pytest.mark.parametrize("ref, expected", [("main", "v1"), ("feature", "v2"), ("v2", "v2")])
def test_a_feature_set_checkout_finds_branches_of_the_remote_side_and_tags(repo: Path, tmp_path: Path,
                                                                           ref: str, expected: str) -> None:
    commit = checkout(str(repo), ref, tmp_path / "checkout", policy=LOCAL)
    assert (tmp_path / "checkout" / "trainer" / "src" / "version.txt").read_text() == expected
    assert commit == _git(repo, "rev-parse", ref + "^{commit}")


@pytest.mark.parametrize("ref", ["no-such-branch", "--upload-pack=touch", ""])
def test_a_feature_set_ref_the_repository_lacks_is_permanent(repo: Path, tmp_path: Path, ref: str) -> None:
    with pytest.raises(UnknownRef):
        checkout(str(repo), ref, tmp_path / "checkout", policy=LOCAL)


def test_an_unreachable_repository_is_not_permanent(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as caught:
        checkout(str(tmp_path / "nowhere"), "main", tmp_path / "checkout", policy=LOCAL)
    assert not isinstance(caught.value, UnknownRef)
