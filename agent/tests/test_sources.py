"""What the agent puts in place during prepare, for real: the trainer at the attempt's
``trainer_ref`` from a real git repository, and the feature set's ``requirements.txt`` installed
by a real pip from real wheels (a local ``--find-links`` folder: no network needed), cached."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from touchstone.agent.requirements import PROBE, PermanentPrepareError, PythonTarget, plain_requirements
from touchstone.agent.testing import STAND_IN_TRAINER, Reports, launch, send
from touchstone.shared.events import TaskSpec
from touchstone.shared.testing import make_wheel, sample_report


def _git(repo: Path, *args: str) -> str:
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    return subprocess.run([*git, *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def trainer_repo(tmp_path: Path) -> Path:
    """A trainer repository: ``main`` has a stand-in trainer that prints "trainer v1", the tag
    ``v2`` one that prints "trainer v2"; the working tree says "uncommitted"."""
    repo = tmp_path / "trainer-repo"
    src = repo / "trainer" / "src"
    src.mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    for version in ("v1", "v2"):
        (src / "stand_in_trainer.py").write_text(STAND_IN_TRAINER.replace("stand-in done", f"trainer {version}"))
        _git(repo, "add", ".")
        _git(repo, "commit", "-q", "-m", version)
        if version == "v1":
            _git(repo, "branch", "stable")
    _git(repo, "tag", "v2")
    _git(repo, "reset", "-q", "--hard", "stable")  # main back at v1; v2 only in its tag
    (src / "stand_in_trainer.py").write_text(STAND_IN_TRAINER.replace("stand-in done", "uncommitted"))
    return repo


async def test_the_trainer_ref_chooses_the_commit_of_the_trainer(
    nc, subjects, agent_settings, start_agent, make_feature_set, eventually, trainer_repo
):
    reports = await Reports.listen(nc, subjects)
    await start_agent(agent_settings(trainer_dir=None, trainer_repo=str(trainer_repo)))
    fs = make_feature_set(report=sample_report())
    tagged = launch(fs, task_id="pi-1").model_copy(update={"spec": TaskSpec(git_url=fs, trainer_ref="v2")})
    default = launch(fs, task_id="pi-2")  # trainer_ref "main"
    for command in (tagged, default):
        assert (await send(nc, subjects, command)).ok
    v2 = (await eventually(lambda: reports.ended(tagged.container_name))).outcome
    assert v2.exit_code == 0 and "trainer v2" in v2.log_tail
    commit = _git(trainer_repo, "rev-parse", "v2")
    assert f"[agent] trainer v2 ({commit[:12]})" in v2.log_tail
    v1 = (await eventually(lambda: reports.ended(default.container_name))).outcome
    assert v1.exit_code == 0 and "trainer v1" in v1.log_tail and "uncommitted" not in v1.log_tail


async def test_an_unknown_trainer_ref_fails_once_and_for_good(
    nc, subjects, agent_settings, start_agent, make_feature_set, eventually, trainer_repo
):
    reports = await Reports.listen(nc, subjects)
    await start_agent(agent_settings(trainer_dir=None, trainer_repo=str(trainer_repo)))
    fs = make_feature_set(report=sample_report())
    command = launch(fs).model_copy(update={"spec": TaskSpec(git_url=fs, trainer_ref="no-such-ref")})
    assert (await send(nc, subjects, command)).ok
    outcome = (await eventually(lambda: reports.ended(command.container_name))).outcome
    assert outcome.result == "failed" and outcome.failed_phase == "prepare" and outcome.permanent
    assert "'no-such-ref'" in (outcome.error or "") and "trainer repository" in (outcome.error or "")
    assert any("no-such-ref" in line for line in outcome.log_tail)


# --- requirements ------------------------------------------------------------------------


@pytest.fixture
def wheelhouse(tmp_path: Path) -> Path:
    """Wheels for ``--find-links``: ``tsdemo-helper`` 1.0 (pure Python) and ``tsdemo-only312``,
    which has a wheel for CPython 3.12 only."""
    folder = tmp_path / "wheels"
    make_wheel(folder, "tsdemo-helper", "1.0")
    make_wheel(folder, "tsdemo-only312", "1.0", tag="cp312-cp312-manylinux_2_17_x86_64")
    return folder


def offline_pip(folder: Path) -> dict[str, object]:
    return {"pip_find_links": (str(folder),), "pip_no_index": True}


async def test_requirements_are_installed_once_and_put_on_the_path(
    nc, subjects, agent_settings, start_agent, make_feature_set, eventually, wheelhouse
):
    reports = await Reports.listen(nc, subjects)
    settings = agent_settings(**offline_pip(wheelhouse))
    await start_agent(settings)
    fs = make_feature_set(imports=["tsdemo_helper"], report=sample_report())
    (Path(fs) / "requirements.txt").write_text("# helpers\ntsdemo-helper==1.0  # pinned\n")
    cold = launch(fs, task_id="pi-1")
    assert (await send(nc, subjects, cold)).ok
    outcome = (await eventually(lambda: reports.ended(cold.container_name))).outcome
    assert outcome.exit_code == 0 and "imported tsdemo_helper tsdemo-helper 1.0" in outcome.log_tail
    (installed,) = [p for p in (settings.cache_root / "requirements").iterdir() if not p.name.startswith(".")]
    assert (installed / "tsdemo_helper.py").exists()
    marker = installed / "warm-marker"
    marker.write_text("")  # a warm prepare must use this very folder, not install again

    warm = launch(fs, task_id="pi-2")
    assert (await send(nc, subjects, warm)).ok
    outcome = (await eventually(lambda: reports.ended(warm.container_name))).outcome
    assert outcome.exit_code == 0 and "imported tsdemo_helper tsdemo-helper 1.0" in outcome.log_tail
    assert marker.exists() and len([p for p in installed.parent.iterdir() if not p.name.startswith(".")]) == 1


@pytest.mark.parametrize(
    "requirements, expected",
    [
        ("tsdemo-nothing-like-it==9\n", "No matching distribution"),
        ("tsdemo-only312\n", "No matching distribution"),  # a wheel, but not for this Python
        ("--index-url http://evil.example/simple\ntsdemo-helper\n", "line 1 is not a plain requirement"),
        ("tsdemo-helper @ https://evil.example/x.whl\n", "not a plain requirement"),
    ],
)
async def test_a_requirement_that_cannot_be_installed_fails_for_good(
    nc, subjects, agent_settings, start_agent, make_feature_set, eventually, wheelhouse, requirements, expected
):
    reports = await Reports.listen(nc, subjects)
    await start_agent(agent_settings(**offline_pip(wheelhouse)))
    fs = make_feature_set(report=sample_report())
    (Path(fs) / "requirements.txt").write_text(requirements)
    command = launch(fs)
    assert (await send(nc, subjects, command)).ok
    outcome = (await eventually(lambda: reports.ended(command.container_name), timeout=60)).outcome
    assert outcome.result == "failed" and outcome.failed_phase == "prepare" and outcome.permanent
    assert expected in (outcome.error or ""), outcome.error


def test_only_plain_requirement_lines_are_accepted():
    text = b"# c\nnumpy>=1.26,<3\npandas[performance] == 2.2.*\nsix; python_version >= '3'\n\n"
    assert plain_requirements(text) == ["numpy>=1.26,<3", "pandas[performance] == 2.2.*", "six; python_version >= '3'"]
    for bad in (b"-r other.txt", b"-e git+https://x/y", b"./local", b"/abs/path.whl", b"x @ file:///etc",
                b"git+https://x/y.git", b"--extra-index-url https://x"):
        with pytest.raises(PermanentPrepareError):
            plain_requirements(bad)


def test_python_tags_from_a_setting_become_pips_target_options():
    target = PythonTarget.parse("3.11/cp311/manylinux_2_36_x86_64,linux_x86_64")
    assert target.pip_args() == ["--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
                                 "--platform", "manylinux_2_36_x86_64", "--platform", "linux_x86_64"]


def test_the_probe_describes_the_interpreter_it_runs_in():
    import sys
    import sysconfig

    out = subprocess.run([sys.executable, "-c", PROBE], check=True, capture_output=True, text=True).stdout
    target = PythonTarget.from_probe(out)
    assert target.version == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert target.abi == f"cp{sys.version_info.major}{sys.version_info.minor}" and target.implementation == "cp"
    assert target.platforms[-1] == sysconfig.get_platform().replace("-", "_").replace(".", "_")
