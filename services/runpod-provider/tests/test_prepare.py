"""What goes into a pod besides the feature set: the trainer at ``trainer_ref`` (real git) and
the checks and pip command line of a feature set's ``requirements.txt`` (pure)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from touchstone.runpod_provider import domain, requirements
from touchstone.runpod_provider.config import RunpodProviderSettings
from touchstone.runpod_provider.pods import InfraFailure
from touchstone.runpod_provider.prepare import PermanentFailure, TrainerTrees, read_requirements
from touchstone.runpod_provider.testing import git
from touchstone.shared import events as ev
from touchstone.shared.commands import LaunchTask

LAYOUT = domain.PodLayout()


def settings(tmp_path: Path, **fields: object) -> RunpodProviderSettings:
    return RunpodProviderSettings(namespace="t", data_dir=tmp_path / "data", **fields)  # type: ignore[arg-type]


# --- the trainer at trainer_ref ---------------------------------------------------------------


async def test_each_ref_gets_its_own_commit_of_the_trainer(tmp_path, trainer_repo):
    trees = TrainerTrees(settings(tmp_path, trainer_repo=str(trainer_repo)))

    v1, main = await trees.at("v1"), await trees.at("main")

    assert 'VERSION = "v1"' in (v1.src / "standin_trainer" / "__init__.py").read_text().replace("'", '"')
    assert 'VERSION = "v2"' in (main.src / "standin_trainer" / "__init__.py").read_text().replace("'", '"')
    assert v1.configs is not None and (v1.configs / "default.toml").is_file()
    assert v1.label == f"v1 ({git(trainer_repo, 'rev-parse', 'v1')[:12]})"
    assert v1.src.is_relative_to(tmp_path / "data" / "runpod-provider" / "cache" / "trainer")


@pytest.mark.parametrize("ref", ["no-such-ref", "--upload-pack=x", "two words"])
async def test_an_unknown_ref_is_permanent_and_names_the_ref(tmp_path, trainer_repo, ref):
    trees = TrainerTrees(settings(tmp_path, trainer_repo=str(trainer_repo)))

    with pytest.raises(PermanentFailure, match="trainer_ref"):
        await trees.at(ref)


async def test_a_repository_that_cannot_be_read_is_an_infrastructure_failure(tmp_path):
    trees = TrainerTrees(settings(tmp_path, trainer_repo=str(tmp_path / "nowhere")))

    with pytest.raises(InfraFailure, match="nowhere"):
        await trees.at("main")


async def test_a_fixed_trainer_folder_ignores_the_ref(tmp_path, trainer_src):
    trees = TrainerTrees(settings(tmp_path, trainer_src_dir=trainer_src, trainer_repo="/ignored"))

    files = await trees.at("no-such-ref")

    assert files.src == trainer_src and files.configs is None and "fixed" in files.label


def test_the_default_trainer_repository_is_this_checkout(tmp_path):
    source = settings(tmp_path).trainer_source()

    assert source.repo is not None and (Path(source.repo) / "trainer" / "src").is_dir()


# --- requirements.txt -------------------------------------------------------------------------


def test_requirements_beside_the_feature_set_are_read_and_checked(tmp_path):
    checkout = tmp_path / "checkout"
    (checkout / "fs").mkdir(parents=True)
    assert read_requirements(checkout, "fs") == []
    (checkout / "fs" / "requirements.txt").write_text("tsdemo-helper==1.0\n")
    assert read_requirements(checkout, "fs") == ["tsdemo-helper==1.0"]

    (checkout / "fs" / "requirements.txt").write_text("-r /etc/passwd\n")
    with pytest.raises(PermanentFailure, match="line 1"):
        read_requirements(checkout, "fs")

    (checkout / "fs" / "requirements.txt").unlink()
    (tmp_path / "elsewhere.txt").write_text("numpy\n")
    (checkout / "fs" / "requirements.txt").symlink_to(tmp_path / "elsewhere.txt")
    with pytest.raises(PermanentFailure, match="regular file"):
        read_requirements(checkout, "fs")


def test_pip_installs_wheels_only_into_the_deps_folder_as_one_quoted_argv():
    argv = requirements.pip_install_argv(LAYOUT, "python3", index_url="https://pypi.example/simple; rm -rf /",
                                         find_links=2, no_index=True)

    assert shlex.split(domain.command_line(argv)) == argv  # every word reaches the pod as it is
    assert argv[argv.index("python3"):argv.index("install") + 1] == ["python3", "-m", "pip", "install"]
    assert "--only-binary=:all:" in argv and "--no-compile" in argv
    assert argv[argv.index("--target") + 1] == "touchstone/deps"
    assert argv[-2:] == ["--requirement", "touchstone/requirements.txt"]
    assert [argv[i + 1] for i, word in enumerate(argv) if word == "--find-links"] == [
        "touchstone/wheels/0", "touchstone/wheels/1"]
    assert "--no-index" in argv
    assert "--no-index" not in requirements.pip_install_argv(LAYOUT, "python3")


def test_the_installed_requirements_come_after_the_trainer_on_the_path():
    command = LaunchTask(submission_id="s1", task_id="validation", attempt=1, kind="validation",
                         spec=ev.TaskSpec(git_url="/src"), placement="any")

    with_deps = domain.trainer_argv(command, LAYOUT, "python3", "touchstone.trainer", deps=True)
    without = domain.trainer_argv(command, LAYOUT, "python3", "touchstone.trainer")

    assert "PYTHONPATH=touchstone/trainer/src:touchstone/deps" in with_deps
    assert "PYTHONPATH=touchstone/trainer/src" in without


@pytest.mark.parametrize(("status", "tail", "succeeded", "failure_class"), [
    (0, [], True, None),
    (None, [], False, "infrastructure"),
    (1, ["ERROR: No matching distribution found for tsdemo-missing"], False, "permanent"),
    (1, ["WARNING: Retrying ... NewConnectionError('Failed to establish a new connection')",
         "ERROR: No matching distribution found for numpy"], False, "infrastructure"),
])
def test_how_an_install_ended(status, tail, succeeded, failure_class):
    outcome = requirements.install_outcome(status, tail)

    assert outcome.succeeded is succeeded
    if not succeeded:
        assert outcome.failure_class == failure_class
    if tail:
        assert tail[-1] in outcome.reason
