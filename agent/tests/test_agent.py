"""The agent against a real nats-server, with the process runtime and a stand-in trainer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from touchstone.agent.testing import Reports, launch, pid_alive, send
from touchstone.shared.agents import CommandReply
from touchstone.shared.commands import TerminateTask
from touchstone.shared.events import TaskSpec
from touchstone.shared.subjects import Subjects
from touchstone.shared.testing import sample_report


async def test_a_validation_runs_through_every_phase(
    nc, subjects, agent_settings, start_agent, make_feature_set, eventually, tmp_path, objects
):
    reports = await Reports.listen(nc, subjects)
    settings = agent_settings()
    await start_agent(settings)
    fs = make_feature_set(lines=["checking imports", "checking lookahead"], exit=0,
                          report=sample_report())
    command = launch(fs, store=objects)
    reply = await send(nc, subjects, command)
    assert reply.ok and reply.report is not None and reply.report.stage in ("ready", "started")

    ended = await eventually(lambda: reports.ended(command.container_name))
    outcome = ended.outcome
    assert ended.stage == "ended" and outcome.result == "exited" and outcome.exit_code == 0
    assert outcome.report is not None and outcome.report.model_dump(mode="json") == sample_report()
    assert "checking lookahead" in outcome.log_tail
    # the outputs left the host: in the control plane's store, named by key; nothing staged is kept
    assert outcome.log_uri is None and outcome.log_key == "attempts/s1/validation/attempt-1/console.log"
    assert "checking imports" in (await objects.read(outcome.log_key)).decode()
    assert outcome.artifacts == {"report.json": "attempts/s1/validation/attempt-1/report.json"}
    assert json.loads(await objects.read(outcome.artifacts["report.json"])) == sample_report()
    assert not [p for p in (settings.data_dir / "artifacts").rglob("*") if p.is_file()]
    assert not (settings.work_root / command.container_name).exists()  # work dir removed
    await eventually(lambda: "checking lookahead" in reports.logs)
    # a repeated launch is answered from what the agent knows, and runs nothing again
    again = await send(nc, subjects, command)
    assert again.ok and again.report is not None and again.report.stage == "ended"


async def test_training_outputs_are_collected(nc, subjects, agent_settings, start_agent, make_feature_set, eventually,
                                              objects):
    reports = await Reports.listen(nc, subjects)
    settings = agent_settings()
    await start_agent(settings)
    command = launch(make_feature_set(), task_id="pi-15", kind="training", placement="h1/0", store=objects)
    assert (await send(nc, subjects, command)).ok
    outcome = (await eventually(lambda: reports.ended(command.container_name))).outcome
    assert outcome.exit_code == 0 and outcome.metrics == {"long": {"accuracy": 0.6}}
    prefix = "attempts/s1/pi-15/attempt-1/"
    assert outcome.artifacts == {"long.json": f"{prefix}models/long.json", "short.json": f"{prefix}models/short.json",
                                 "metrics.json": f"{prefix}metrics.json", "curves.json": f"{prefix}curves.json"}
    assert await objects.read(f"{prefix}metrics.json") == b'{"long": {"accuracy": 0.6}}'
    assert "stand-in done" in (await objects.read(outcome.log_key or "")).decode()


async def test_without_a_grant_no_output_is_named(nc, subjects, agent_settings, start_agent, make_feature_set,
                                                  eventually):
    reports = await Reports.listen(nc, subjects)
    await start_agent(agent_settings())
    command = launch(make_feature_set(), task_id="pi-15", kind="training", placement="h1/0")
    assert (await send(nc, subjects, command)).ok
    outcome = (await eventually(lambda: reports.ended(command.container_name))).outcome
    assert outcome.exit_code == 0 and outcome.artifacts == {} and outcome.log_key is None and outcome.log_uri is None


async def test_an_output_over_the_grants_size_fails_the_collect_for_good(
    nc, subjects, agent_settings, start_agent, make_feature_set, eventually, objects
):
    reports = await Reports.listen(nc, subjects)
    await start_agent(agent_settings())
    command = launch(make_feature_set(), task_id="pi-15", kind="training", placement="h1/0", store=objects)
    small = objects.grant(command.upload.prefix, 10, 600, command.upload.expires_at)  # type: ignore[union-attr]
    command = command.model_copy(update={"upload": small})
    assert (await send(nc, subjects, command)).ok
    outcome = (await eventually(lambda: reports.ended(command.container_name))).outcome
    assert outcome.result == "failed" and outcome.failed_phase == "collect" and outcome.permanent
    assert "more than the grant's 10" in (outcome.error or "")


async def test_heartbeats_carry_free_slots_and_running_containers(
    nc, subjects, agent_settings, start_agent, make_feature_set, eventually
):
    reports = await Reports.listen(nc, subjects)
    await start_agent(agent_settings(num_slots=2))
    first = await eventually(lambda: reports.heartbeats and reports.heartbeats[-1])
    assert (first.host, first.namespace, first.slots_total, first.slots_free) == ("h1", subjects.ns, 2, 2)
    assert first.gpus == () and first.running == () and first.version

    command = launch(make_feature_set(sleep=30), task_id="pi-1", kind="training", placement="h1/1")
    assert (await send(nc, subjects, command)).ok
    busy = await eventually(lambda: reports.heartbeats[-1].running and reports.heartbeats[-1])
    assert busy.slots_free == 1 and busy.running == (command.container_name,)

    # the slot is taken: a second launch on it is refused
    other = launch(make_feature_set("other"), task_id="pi-2", kind="training", placement="h1/1")
    refused = await send(nc, subjects, other)
    assert not refused.ok and "held by" in (refused.error or "")
    assert not (await send(nc, subjects, launch("/x", placement="h9/0"))).ok

    await send(nc, subjects, TerminateTask(submission_id="s1", task_id="pi-1", attempt=1))
    free = await eventually(lambda: not reports.heartbeats[-1].running and reports.heartbeats[-1])
    assert free.slots_free == 2


async def test_terminate_kills_the_process_group(
    nc, subjects, agent_settings, start_agent, make_feature_set, eventually, tmp_path
):
    settings = agent_settings()
    await start_agent(settings)
    pid_file = tmp_path / "trainer.pid"
    command = launch(make_feature_set(sleep=60, pid_file=str(pid_file)))
    assert (await send(nc, subjects, command)).ok
    await eventually(lambda: pid_file.exists() and pid_file.read_text())
    pid = int(pid_file.read_text())

    reply = await send(nc, subjects, TerminateTask(submission_id="s1", task_id="validation", attempt=1, reason="x"))
    assert reply.ok and reply.report is not None and reply.report.removed
    assert reply.report.outcome is not None and reply.report.outcome.result == "terminated"
    await eventually(lambda: not pid_alive(pid))
    assert not (settings.work_root / command.container_name).exists()
    # terminate is silent when the container is already gone
    assert (await send(nc, subjects, TerminateTask(submission_id="s9", task_id="t", attempt=1))).ok
    # ids that are not plain tokens never reach the file system
    outside = tmp_path / "outside"
    outside.mkdir()
    sneaky = TerminateTask(submission_id="s1", task_id=f"x/../../../../{outside}", attempt=1)
    refused = await send(nc, subjects, sneaky)
    assert not refused.ok and outside.exists()


async def test_a_failing_trainer_and_a_bad_source_are_reported(
    nc, subjects, agent_settings, start_agent, make_feature_set, eventually
):
    reports = await Reports.listen(nc, subjects)
    await start_agent(agent_settings())
    failing = launch(make_feature_set(lines=["Traceback: boom"], exit=3), task_id="pi-1", kind="training",
                     placement="h1/0")
    missing = launch("/no/such/feature-set", task_id="pi-2", kind="training", placement="h1/1")
    for command in (failing, missing):
        assert (await send(nc, subjects, command)).ok
    failed = (await eventually(lambda: reports.ended(failing.container_name))).outcome
    assert failed.result == "exited" and failed.exit_code == 3 and "Traceback: boom" in failed.log_tail
    bad = (await eventually(lambda: reports.ended(missing.container_name))).outcome
    assert bad.result == "failed" and bad.failed_phase == "prepare" and "not a directory" in (bad.error or "")
    assert any("prepare failed" in line for line in bad.log_tail)


async def test_the_trainer_gets_no_secrets(
    nc, subjects, agent_settings, start_agent, make_feature_set, eventually, monkeypatch
):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter2")
    monkeypatch.setenv("TOUCHSTONE_NATS_URL", "nats://secret")
    reports = await Reports.listen(nc, subjects)
    await start_agent(agent_settings())
    command = launch(make_feature_set(print_env=True, report=sample_report()))
    assert (await send(nc, subjects, command)).ok
    outcome = (await eventually(lambda: reports.ended(command.container_name))).outcome
    env_line = next(line for line in outcome.log_tail if line.startswith("ENV "))
    names = set(env_line.split()[1:])
    assert "AWS_SECRET_ACCESS_KEY" not in names and not any(n.startswith("TOUCHSTONE") for n in names)
    assert {"PATH", "HOME", "PYTHONPATH", "CUDA_VISIBLE_DEVICES"} <= names
    assert "CUDA_VISIBLE_DEVICES=" in outcome.log_tail  # a CPU slot sees no GPU


async def test_a_restarted_agent_re_adopts_a_running_attempt(
    nc, subjects, agent_settings, start_agent, make_feature_set, eventually, tmp_path
):
    reports = await Reports.listen(nc, subjects)
    settings = agent_settings()
    first = await start_agent(settings)
    release = tmp_path / "release"
    command = launch(make_feature_set(sleep=60, release=str(release), lines=["before"],
                                      report=sample_report(False), exit=1))
    assert (await send(nc, subjects, command)).ok
    await eventually(lambda: any(r.stage == "started" for r in reports.attempts))
    await first.stop()  # the agent goes down; the trainer keeps running
    assert (settings.work_root / command.container_name / "attempt.json").exists()

    second = await start_agent(settings)
    assert command.container_name in second.agent.attempts.running()
    release.write_text("go")
    outcome = (await eventually(lambda: reports.ended(command.container_name))).outcome
    assert outcome.result == "exited" and outcome.exit_code == 1
    assert outcome.report is not None and outcome.report.passed is False


@pytest.fixture
def git_repo(make_feature_set) -> tuple[Path, str]:
    """A feature set committed to a local git repository, and its commit."""
    repo = Path(make_feature_set("repo", report=sample_report(), lines=["from git"]))
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "first"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    return repo, commit


async def test_git_sources_are_cloned_at_their_ref(nc, subjects, agent_settings, start_agent, eventually, git_repo):
    repo, commit = git_repo
    reports = await Reports.listen(nc, subjects)
    await start_agent(agent_settings())
    command = launch(str(repo))
    assert (await send(nc, subjects, command)).ok
    outcome = (await eventually(lambda: reports.ended(command.container_name))).outcome
    assert outcome.exit_code == 0 and outcome.commit == commit and "from git" in outcome.log_tail

    bad_ref = command.model_copy(update={"spec": TaskSpec(git_url=str(repo), git_ref="--upload-pack=x"),
                                         "attempt": 2})
    assert (await send(nc, subjects, bad_ref)).ok
    refused = (await eventually(lambda: reports.ended(bad_ref.container_name))).outcome
    assert refused.result == "failed" and "is not a valid git ref" in (refused.error or "") and refused.permanent


@pytest.mark.parametrize("allow", [False])
async def test_local_sources_need_permission(
    nc, subjects, agent_settings, start_agent, make_feature_set, eventually, allow
):
    reports = await Reports.listen(nc, subjects)
    await start_agent(agent_settings(allow_local_sources=allow))
    command = launch(make_feature_set())
    assert (await send(nc, subjects, command)).ok
    outcome = (await eventually(lambda: reports.ended(command.container_name))).outcome
    assert outcome.result == "failed" and "not allowed" in (outcome.error or "")


FAKE_NVIDIA_SMI = """#!/bin/sh
echo "0, NVIDIA H200, 143771, 1, 0"
echo "1, NVIDIA H200, 143771, 20480, 97"
"""


def test_nvidia_smi_rows_are_parsed():
    from touchstone.agent.gpus import parse_nvidia_smi

    gpus = parse_nvidia_smi("0, NVIDIA H200, 143771, 1, 0\n1, NVIDIA H200, 143771, [N/A], 97\nNo devices\n")
    assert [(g.index, g.name, g.memory_total_mb) for g in gpus] == [(0, "NVIDIA H200", 143771),
                                                                     (1, "NVIDIA H200", 143771)]
    assert gpus[1].memory_used_mb is None and gpus[1].utilization_pct == 97.0


async def test_a_gpu_host_offers_one_slot_per_gpu_and_pins_each_attempt(
    nc, subjects, agent_settings, start_agent, make_feature_set, eventually, tmp_path
):
    smi = tmp_path / "nvidia-smi"
    smi.write_text(FAKE_NVIDIA_SMI)
    smi.chmod(0o755)
    reports = await Reports.listen(nc, subjects)
    await start_agent(agent_settings(num_slots=5, nvidia_smi=str(smi)))
    first = await eventually(lambda: reports.heartbeats and reports.heartbeats[-1])
    assert (first.slots_total, first.slots_free, len(first.gpus)) == (2, 2, 2)
    command = launch(make_feature_set(print_env=True, sleep=0.3), task_id="pi-1", kind="training",
                     placement="h1/1")
    assert (await send(nc, subjects, command)).ok
    busy = await eventually(lambda: reports.heartbeats[-1].running and reports.heartbeats[-1])
    assert busy.slots_free == 1 and [g.busy for g in busy.gpus] == [False, True]
    outcome = (await eventually(lambda: reports.ended(command.container_name))).outcome
    assert "CUDA_VISIBLE_DEVICES=1" in outcome.log_tail


async def test_an_agent_cut_off_from_nats_past_its_lease_stops_its_attempts(
    own_nats_server, subjects, agent_settings, make_feature_set, eventually, tmp_path
):
    from touchstone.agent.service import Agent
    from touchstone.shared.jetstream import connect

    nc = await connect(own_nats_server.url, "agent")
    client = await connect(own_nats_server.url, "test")
    settings = agent_settings(lease_s=0.6, heartbeat_interval_s=0.1)
    agent = Agent(settings, nc, subjects)
    stop = asyncio.Event()
    running = asyncio.create_task(agent.run(stop))
    try:
        pid_file = tmp_path / "pid"
        command = launch(make_feature_set(sleep=60, pid_file=str(pid_file)))
        reply = await eventually(lambda: _try_send(client, subjects, command))
        assert reply.ok
        pid = int(await eventually(lambda: pid_file.exists() and pid_file.read_text()))
        own_nats_server.kill()
        await eventually(lambda: not pid_alive(pid))
        await eventually(lambda: command.container_name in agent.attempts.ended)
        outcome = agent.attempts.ended[command.container_name].outcome
        assert outcome is not None and outcome.result == "lost" and "cut off from NATS" in (outcome.error or "")
    finally:
        stop.set()
        await asyncio.wait_for(running, 10)
        for connection in (nc, client):
            with contextlib.suppress(Exception):
                await connection.close()


async def _try_send(client: NATS, subjects: Subjects, command: Any) -> CommandReply | None:
    try:
        return await send(client, subjects, command)
    except Exception:
        return None


async def test_a_stray_work_directory_of_the_process_runtime_is_removed_after_the_grace_period(
    nc, subjects, agent_settings, start_agent, make_feature_set, eventually
):
    from touchstone.agent.process import ProcessRuntime
    from touchstone.agent.runtime import ContainerSpec

    reports = await Reports.listen(nc, subjects)
    settings = agent_settings(stray_grace_s=0.5)
    await start_agent(settings)
    live = launch(make_feature_set(sleep=60))
    assert (await send(nc, subjects, live)).ok
    await eventually(lambda: any(r.stage == "started" for r in reports.attempts))
    stray = settings.work_root / "touchstone-stray-t1-1"  # a runtime state, no attempt: nobody's
    await ProcessRuntime(settings.work_root).provision(ContainerSpec(stray.name, stray / "work", {}))
    unrelated = settings.work_root / "not-touchstone"
    unrelated.mkdir()
    await eventually(lambda: not stray.exists())
    assert unrelated.is_dir() and (settings.work_root / live.container_name).is_dir()


async def test_the_grant_is_kept_where_the_task_cannot_read_it(
    nc, subjects, agent_settings, start_agent, make_feature_set, eventually, objects, tmp_path
):
    """The work directory is the task's: the attempt's state there carries no grant; the agent
    keeps it in its own folder (0600) until the attempt has ended."""
    reports = await Reports.listen(nc, subjects)
    settings = agent_settings()
    await start_agent(settings)
    release = tmp_path / "release"
    command = launch(make_feature_set(sleep=30, release=str(release)), task_id="pi-15", kind="training",
                     placement="h1/0", store=objects)
    token = command.upload.token  # type: ignore[union-attr]
    assert (await send(nc, subjects, command)).ok
    work = settings.work_root / command.container_name
    await eventually(lambda: (work / "console.log").exists() and "starting" in (work / "console.log").read_text())
    readable = "".join(p.read_text(errors="replace") for p in work.rglob("*") if p.is_file())
    assert token not in readable and json.loads((work / "attempt.json").read_text())["command"]["upload"] is None
    kept = settings.data_dir / "grants" / f"{command.container_name}.json"
    assert token in kept.read_text() and kept.stat().st_mode & 0o777 == 0o600
    release.write_text("go")
    outcome = (await eventually(lambda: reports.ended(command.container_name))).outcome
    assert outcome.artifacts["long.json"] == "attempts/s1/pi-15/attempt-1/models/long.json"
    assert not kept.exists()
