"""The agent with the Docker runtime for real: requirements installed by the agent for the
image's Python and mounted read-only; stray ``touchstone-`` containers removed after the grace
period, nothing else touched. Skipped when the engine does not answer or the image is missing,
except with ``TOUCHSTONE_REQUIRE_DOCKER=1`` (CI), where that fails."""

from __future__ import annotations

import contextlib
import logging
import uuid
from pathlib import Path

import pytest
from touchstone.agent.docker import DockerRuntime
from touchstone.agent.runtime import ContainerSpec
from touchstone.agent.service import build_runtime
from touchstone.agent.testing import TASK_IMAGE, Reports, docker_runtime_or_skip, launch, send
from touchstone.shared.commands import TerminateTask
from touchstone.shared.testing import make_wheel, sample_report

READ_ONLY_PROBE = """\
import pathlib
try:
    (pathlib.Path(__file__).parent / "written-by-the-task").write_text("x")
    VALUE = "writable"
except OSError:
    VALUE = "read-only"
"""


@pytest.fixture
def host() -> str:
    docker_runtime_or_skip("probe")  # skips (or fails in CI) before anything starts
    return f"d{uuid.uuid4().hex[:8]}"


async def test_requirements_are_installed_for_the_image_and_mounted_read_only(
    nc, subjects, agent_settings, start_agent, make_feature_set, eventually, tmp_path, host
):
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "tsdemo-ro", "1.0", code=READ_ONLY_PROBE)
    reports = await Reports.listen(nc, subjects, host)
    settings = agent_settings(runtime="docker", host=host, kill_grace_s=1.0, pip_find_links=(str(wheels),),
                              pip_no_index=True)
    await start_agent(settings)
    fs = make_feature_set(imports=["tsdemo_ro"], report=sample_report())
    (Path(fs) / "requirements.txt").write_text("tsdemo-ro==1.0\n")
    command = launch(fs, placement=f"{host}/cpu0", submission_id=f"s{uuid.uuid4().hex[:8]}")  # names are global
    assert (await send(nc, subjects, command, host)).ok
    outcome = (await eventually(lambda: reports.ended(command.container_name), timeout=120)).outcome
    assert outcome.exit_code == 0, outcome
    assert "imported tsdemo_ro read-only" in outcome.log_tail
    (installed,) = [p for p in (settings.cache_root / "requirements").iterdir() if not p.name.startswith(".")]
    assert not (installed / "written-by-the-task").exists()


async def test_stray_containers_are_removed_after_the_grace_period_and_nothing_else(
    nc, subjects, agent_settings, start_agent, make_feature_set, eventually, tmp_path, host, caplog
):
    caplog.set_level(logging.INFO, logger="touchstone.agent.service")
    settings = agent_settings(runtime="auto", host=host, kill_grace_s=1.0, stray_grace_s=1.0)
    assert isinstance(build_runtime(settings), DockerRuntime)
    assert "runtime auto: docker" in caplog.text
    reports = await Reports.listen(nc, subjects, host)
    running = await start_agent(settings)
    engine = DockerRuntime(TASK_IMAGE, owner=host).client
    tag = uuid.uuid4().hex[:8]
    others = [
        engine.containers.create(TASK_IMAGE, ["sleep", "600"], name=f"unrelated-{tag}"),
        engine.containers.create(TASK_IMAGE, ["sleep", "600"], name=f"touchstone-other{tag}-t1-1",
                                 labels={"touchstone": "1", "touchstone.agent": f"other-{tag}"}),
        # an agent of the same name with another data directory (two `touchstone up` on one engine)
        engine.containers.create(TASK_IMAGE, ["sleep", "600"], name=f"touchstone-twin{tag}-t1-1",
                                 labels={"touchstone": "1", "touchstone.agent": host,
                                         "touchstone.work_dir":
                                             str(tmp_path / "twin" / f"touchstone-twin{tag}-t1-1" / "work")}),
    ]
    try:
        # a live attempt of this agent, still running while the stray goes
        fs = make_feature_set(sleep=60)
        live = launch(fs, placement=f"{host}/cpu0", submission_id=f"s{tag}")
        assert (await send(nc, subjects, live, host)).ok
        await eventually(lambda: any(r.stage == "started" for r in reports.attempts), timeout=60)
        # left behind by an earlier run of this agent: its labels, its work root, no attempt
        stray = f"touchstone-stray{tag}-t1-1"
        await running.agent.attempts.runtime.provision(ContainerSpec(stray, settings.work_root / stray / "work", {}))
        assert (settings.work_root / stray).is_dir()

        async def stray_gone() -> bool:  # the container first, then its work directory
            gone = (await running.agent.attempts.runtime.status(stray)).status == "gone"
            return gone and not (settings.work_root / stray).exists()

        await eventually(stray_gone, timeout=30)
        for container in others:
            container.reload()
            assert container.status == "created"
        assert (await running.agent.attempts.runtime.status(live.container_name)).status == "running"
        assert running.agent.attempts.running() == (live.container_name,)
        terminate = TerminateTask(submission_id=live.submission_id, task_id=live.task_id, attempt=1)
        assert (await send(nc, subjects, terminate, host)).ok
    finally:
        for container in others:
            with contextlib.suppress(Exception):
                container.remove(force=True)
