"""The Docker runtime for real: the hardening ``docker inspect`` shows, what a task cannot do
(reach the network, write outside its work directory, see the Docker socket, fork without
bound), and a real validation of ``examples/feature-sets/momentum`` through the agent.

The rules every runtime keeps run in ``test_runtime_contract.py``. Everything here is skipped
when the engine does not answer or the image is missing (``make images``), unless
``TOUCHSTONE_REQUIRE_DOCKER=1`` (CI), where that fails."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from touchstone.agent.docker import DockerLimits, DockerRuntime
from touchstone.agent.process import ProcessRuntime
from touchstone.agent.runtime import ContainerSpec
from touchstone.agent.service import build_runtime
from touchstone.agent.testing import TASK_IMAGE, docker_runtime_or_skip
from touchstone.shared.agents import decode_attempt_report, decode_reply, encode
from touchstone.shared.commands import LaunchTask
from touchstone.shared.events import TaskSpec
from touchstone.shared.reports import parse_report
from touchstone.shared.testing import sample_report

pytestmark = pytest.mark.integration  # the real Docker engine

REPO = Path(__file__).resolve().parents[2]
ENV = {"PATH": "/usr/bin:/bin", "SECRET_TOKEN_OF_THE_AGENT": "must-not-leak"}
PIDS = 48


@pytest.fixture
async def rt(tmp_path: Path) -> AsyncIterator[DockerRuntime]:
    runtime = docker_runtime_or_skip(
        f"docker-test-{uuid.uuid4().hex[:8]}", kill_grace_s=1.0, limits=DockerLimits(pids=PIDS, memory="256m")
    )
    yield runtime
    for state in await runtime.list_ours():
        await runtime.terminate(state.name)


async def run_code(rt: DockerRuntime, root: Path, code: str, *, timeout: float = 30.0) -> tuple[int | None, str]:
    """Run ``python3 -c code`` in a fresh container; its exit status and console."""
    name = f"touchstone-d{uuid.uuid4().hex[:8]}-t1-1"
    work = root / name / "work"
    work.mkdir(parents=True)
    await rt.provision(ContainerSpec(name, work, {"touchstone.task": "t1"}))
    await rt.run(name, ["python3", "-c", code], ENV, work.parent / "console.log")
    for _ in range(int(timeout / 0.05)):
        state = await rt.status(name)
        if state.status == "exited":
            break
        await asyncio.sleep(0.05)
    else:
        await rt.terminate(name)
        raise AssertionError(f"{name} still runs after {timeout}s")
    return state.exit_code, (work.parent / "console.log").read_text()


async def test_docker_inspect_shows_the_hardening(rt, tmp_path):
    code, console = await run_code(rt, tmp_path, "print('hi')")
    assert code == 0 and console == "hi\n"
    (state,) = await rt.list_ours()
    info = rt.client.api.inspect_container(state.name)
    host, config = info["HostConfig"], info["Config"]
    assert config["User"] == rt.user and not rt.user.startswith("0:") and config["Image"] == TASK_IMAGE
    assert rt.user == "65534:65534" or os.geteuid() != 0  # nobody, for an agent running as root
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"] and not host["Privileged"]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["ReadonlyRootfs"] is True and host["NetworkMode"] == "none"
    assert host["PidsLimit"] == PIDS and host["Memory"] == 256 * 2**20 and host["Init"] is True
    mounts = {m["Destination"]: m for m in info["Mounts"]}
    work = str((tmp_path / state.name / "work").resolve())
    console = str((tmp_path / state.name / "console.log").resolve())  # the one file, never the attempt's folder
    assert set(mounts) == {work, console} and mounts[work]["Source"] == work and mounts[work]["RW"]
    assert mounts[console]["Source"] == console
    assert set(host["Tmpfs"]) == {"/tmp"}
    assert not any("docker.sock" in b for b in host["Binds"] or [])
    names = {e.split("=", 1)[0] for e in config["Env"]}
    assert "SECRET_TOKEN_OF_THE_AGENT" in names  # only what the agent passes (the agent passes no secrets)
    assert state.labels == {"touchstone.task": "t1"}
    assert info["Config"]["Labels"]["touchstone"] == "1"


async def test_a_task_cannot_reach_the_network(rt, tmp_path):
    code, console = await run_code(rt, tmp_path, """
import os, socket
print("interfaces", sorted(os.listdir("/sys/class/net")))
for address in [("1.1.1.1", 80), ("deb.debian.org", 80), ("172.17.0.1", 2375)]:
    try:
        socket.create_connection(address, timeout=2).close()
        print("reached", address)
    except OSError as e:
        print("blocked", address, type(e).__name__)
""")
    assert code == 0, console
    assert "interfaces ['lo']" in console
    assert "reached" not in console and console.count("blocked") == 3


async def test_a_task_cannot_write_outside_its_work_dir_nor_see_the_docker_socket(rt, tmp_path):
    code, console = await run_code(rt, tmp_path, """
import os
for path in ["/etc/evil", "/usr/lib/evil", "/evil", "/var/tmp/evil"]:
    try:
        open(path, "w").write("x")
        print("wrote", path)
    except OSError as e:
        print("refused", path, e.errno)
open("inside.txt", "w").write("ok")
for sock in ["/var/run/docker.sock", "/run/docker.sock"]:
    print("socket", sock, os.path.exists(sock))
status = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\\t" in line)
print("uid", os.getuid(), "caps", status["CapEff"].strip(), "nnp", status["NoNewPrivs"].strip())
""")
    assert code == 0, console
    assert "wrote" not in console and console.count("refused") == 4
    assert "socket /var/run/docker.sock False" in console and "socket /run/docker.sock False" in console
    assert f"uid {rt.user.split(':')[0]} caps 0000000000000000 nnp 1" in console
    (state,) = await rt.list_ours()
    assert (tmp_path / state.name / "work" / "inside.txt").read_text() == "ok"


async def test_a_fork_bomb_is_contained_by_the_pids_limit(rt, tmp_path):
    # bounded on purpose: at most 200 sleeping children, each gone within 3 s
    code, console = await run_code(rt, tmp_path, """
import os, time
forked = 0
try:
    for _ in range(200):
        if os.fork() == 0:
            time.sleep(3)
            os._exit(0)
        forked += 1
except OSError as e:
    print("fork refused after", forked, "errno", e.errno, flush=True)
    os._exit(3)
print("forked", forked)
""")
    assert code == 3, console
    forked = int(console.split("fork refused after ")[1].split()[0])
    assert forked < PIDS


def test_auto_takes_the_process_runtime_where_docker_cannot_run(agent_settings):
    settings = agent_settings(runtime="auto", docker_url="unix:///nonexistent/docker.sock")
    assert isinstance(build_runtime(settings), ProcessRuntime)
    assert isinstance(build_runtime(settings.model_copy(update={"runtime": "process"})), ProcessRuntime)
    with pytest.raises(ValueError):
        DockerRuntime(limits=DockerLimits(user="0:0"), client=object())  # never root


@pytest.mark.skipif(shutil.which("nvidia-smi") is None, reason="no GPU on this host")
async def test_a_gpu_slot_sees_only_its_gpu(rt, tmp_path):
    name = f"touchstone-g{uuid.uuid4().hex[:8]}-t1-1"
    work = tmp_path / name
    work.mkdir()
    await rt.provision(ContainerSpec(name, work, {}, gpu=0))
    info = rt.client.api.inspect_container(name)
    (request,) = info["HostConfig"]["DeviceRequests"]
    assert request["DeviceIDs"] == ["0"] and request["Capabilities"] == [["gpu"]]


async def test_the_agent_validates_the_momentum_example_in_a_container(
    nc, subjects, agent_settings, start_agent, eventually, tmp_path
):
    docker_runtime_or_skip("probe")  # skips (or fails in CI) before the agent starts
    settings = agent_settings(
        runtime="docker", host=f"d{uuid.uuid4().hex[:8]}", trainer_dir=REPO / "trainer",
        trainer_module="touchstone.trainer", kill_grace_s=1.0, docker_pids_limit=256, docker_memory="2g",
    )
    assert isinstance(build_runtime(settings), DockerRuntime)
    assert isinstance(build_runtime(settings.model_copy(update={"runtime": "auto"})), DockerRuntime)
    reports, logs = [], []

    async def on_report(msg):
        if (report := decode_attempt_report(msg.data)) is not None:
            reports.append(report)

    async def on_log(msg):
        logs.extend(msg.data.decode().splitlines())

    await nc.subscribe(subjects.agent_reports(settings.host), cb=on_report)
    await nc.subscribe(subjects.all_logs, cb=on_log)
    await start_agent(settings)
    command = LaunchTask(
        submission_id=f"s{uuid.uuid4().hex[:8]}", task_id="validation", attempt=1, kind="validation",
        spec=TaskSpec(git_url=str(REPO / "examples" / "feature-sets" / "momentum")),
        placement=f"{settings.host}/cpu0",
    )
    reply = decode_reply((await nc.request(subjects.agent_commands(settings.host), encode(command), timeout=15)).data)
    assert reply.ok, reply.error

    def ended():
        return next((r for r in reports if r.container == command.container_name and r.removed), None)

    outcome = (await eventually(ended, timeout=120)).outcome
    assert outcome.result == "exited" and outcome.exit_code == 0, outcome
    assert outcome.report is not None and outcome.report.passed is True
    assert any("[validate] passed" in line for line in logs)
    assert not (settings.work_root / command.container_name).exists()


async def test_a_restarted_agent_re_adopts_its_container_from_the_engine(
    nc, subjects, agent_settings, start_agent, make_feature_set, eventually
):
    docker_runtime_or_skip("probe")
    settings = agent_settings(runtime="docker", host=f"d{uuid.uuid4().hex[:8]}", kill_grace_s=1.0)
    reports = []

    async def on_report(msg):
        if (report := decode_attempt_report(msg.data)) is not None:
            reports.append(report)

    await nc.subscribe(subjects.agent_reports(settings.host), cb=on_report)
    command = LaunchTask(
        submission_id=f"s{uuid.uuid4().hex[:8]}", task_id="validation", attempt=1, kind="validation",
        spec=TaskSpec(git_url="/"), placement=f"{settings.host}/cpu0",
    )
    release = settings.work_root / command.container_name / "work" / "release"  # seen at the same path inside
    fs = make_feature_set(sleep=60, release=str(release), report=sample_report(False), exit=1)
    command = command.model_copy(update={"spec": TaskSpec(git_url=fs)})
    first = await start_agent(settings)
    reply = decode_reply((await nc.request(subjects.agent_commands(settings.host), encode(command), timeout=15)).data)
    assert reply.ok, reply.error
    await eventually(lambda: any(r.stage == "started" for r in reports))
    await first.stop()  # the agent goes down; the container keeps running
    (state,) = await DockerRuntime(TASK_IMAGE, owner=settings.host).list_ours()
    assert state.status == "running" and state.labels["touchstone.submission"] == command.submission_id

    second = await start_agent(settings)
    assert command.container_name in second.agent.attempts.running()
    release.write_text("go")

    def ended():
        return next((r for r in reports if r.container == command.container_name and r.removed), None)

    outcome = (await eventually(ended, timeout=30)).outcome
    assert outcome.result == "exited" and outcome.exit_code == 1
    assert outcome.report == parse_report(sample_report(False))
    assert await DockerRuntime(TASK_IMAGE, owner=settings.host).list_ours() == []
