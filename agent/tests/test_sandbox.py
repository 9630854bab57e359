"""The process runtime's sandbox, attacked from inside: a task that reads the agent's
environment through ``/proc``, the admin token file, another task's work directory and the
requirements cache, writes into that cache, and connects to the broker on the host's loopback.

The same attack is run without the sandbox (``process_sandbox=none``) to show the test can
fail: there it reads everything. Real agent, real nats-server, real bubblewrap.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from touchstone.agent.docker import docker_usable
from touchstone.agent.sandbox import Bubblewrap
from touchstone.agent.service import choose_runtime
from touchstone.agent.testing import Reports, launch, send

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None,
                                reason="bubblewrap is not installed (.ci/run installs it)")

SECRET = "agent-secret-0b7d1c"

ATTACK = '''\
"""A hostile task: prints what it could reach."""
import json, os, socket, sys
from pathlib import Path

args = sys.argv[1:]
opts = dict(zip(args[1::2], args[2::2]))
targets = json.loads((Path(opts["--feature-set"]) / "behaviour.json").read_text())
leaked = []
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            if targets["secret"].encode() in Path(f"/proc/{pid}/environ").read_bytes():
                leaked.append(pid)
        except OSError:
            pass
print("ATTACK environ", "LEAKED" if leaked else "safe", flush=True)
for name in ("token", "other_task", "cache_file"):
    try:
        Path(targets[name]).read_bytes()
        print("ATTACK", name, "LEAKED", flush=True)
    except OSError as e:
        print("ATTACK", name, "safe", type(e).__name__, flush=True)
try:
    Path(targets["cache_file"]).write_text("poisoned")
    print("ATTACK cache_write LEAKED", flush=True)
except OSError as e:
    print("ATTACK cache_write safe", type(e).__name__, flush=True)
try:
    socket.create_connection(("127.0.0.1", targets["nats_port"]), timeout=2).close()
    print("ATTACK network LEAKED", flush=True)
except OSError as e:
    print("ATTACK network safe", type(e).__name__, flush=True)
print("ATTACK pids", sorted(int(p) for p in os.listdir("/proc") if p.isdigit())[:5], flush=True)
'''


@pytest.fixture
def attack_trainer(tmp_path: Path) -> Path:
    folder = tmp_path / "attack-trainer"
    (folder / "src").mkdir(parents=True)
    (folder / "src" / "attack_trainer.py").write_text(ATTACK)
    return folder


async def _attack(nc, subjects, agent_settings, start_agent, eventually, tmp_path, attack_trainer, nats_server,
                  request, sandbox: str) -> dict[str, str]:
    # a process of the host with a secret in its environment (as the agent's NATS password is)
    neighbour = subprocess.Popen(["sleep", "120"], env={"TOUCHSTONE_NATS_PASSWORD": SECRET})  # noqa: ASYNC220
    request.addfinalizer(lambda: (neighbour.kill(), neighbour.wait()))
    settings = agent_settings(trainer_dir=attack_trainer, trainer_module="attack_trainer", process_sandbox=sandbox)
    data = settings.data_dir
    (data / "artifacts" / "s0").mkdir(parents=True)
    (data / "artifacts" / "s0" / "console.log").write_text("another user's task")
    (data / "admin-token").write_text("ts_admin_secret")
    cache = data / "cache" / "requirements" / "abc"
    cache.mkdir(parents=True)
    (cache / "module.py").write_text("VALUE = 1\n")
    fs = tmp_path / "fs"
    fs.mkdir()
    (fs / "feature_set.py").write_text("NAME = 'x'\n")
    (fs / "behaviour.json").write_text(json.dumps({
        "secret": SECRET, "token": str(data / "admin-token"),
        "other_task": str(data / "artifacts" / "s0" / "console.log"),
        "cache_file": str(cache / "module.py"), "nats_port": nats_server.port,
    }))
    reports = await Reports.listen(nc, subjects)
    await start_agent(settings)
    assert (await send(nc, subjects, launch(str(fs)))).ok
    await eventually(lambda: any(line.startswith("ATTACK pids") for line in reports.logs), timeout=30)
    found = {}
    for line in reports.logs:
        if line.startswith("ATTACK ") and not line.startswith("ATTACK pids"):
            _, what, result, *_ = line.split()
            found[what] = result
    return found


async def test_a_task_in_the_sandbox_reaches_nothing(nc, subjects, agent_settings, start_agent, eventually, tmp_path,
                                                     attack_trainer, nats_server, request):
    found = await _attack(nc, subjects, agent_settings, start_agent, eventually, tmp_path, attack_trainer,
                          nats_server, request, "bubblewrap")
    assert found == dict.fromkeys(("environ", "token", "other_task", "cache_file", "cache_write", "network"), "safe")


async def test_without_the_sandbox_the_same_task_reaches_everything(nc, subjects, agent_settings, start_agent,
                                                                    eventually, tmp_path, attack_trainer,
                                                                    nats_server, request):
    found = await _attack(nc, subjects, agent_settings, start_agent, eventually, tmp_path, attack_trainer,
                          nats_server, request, "none")
    assert found == dict.fromkeys(("environ", "token", "other_task", "cache_file", "cache_write", "network"),
                                  "LEAKED")


def test_the_sandbox_probe_names_what_is_missing(tmp_path):
    assert Bubblewrap.for_python("python3").probe() is None
    assert "not installed" in (Bubblewrap(binary=str(tmp_path / "no-bwrap")).probe() or "")


async def test_an_agent_told_docker_that_cannot_reach_it_refuses_work_and_says_why(
    nc, subjects, agent_settings, start_agent, eventually, make_feature_set
):
    settings = agent_settings(runtime="docker", docker_url="unix:///nonexistent/docker.sock")
    choice = choose_runtime(settings)
    assert choice.isolation == "docker" and "runtime=docker" in (choice.refusing or "")
    reports = await Reports.listen(nc, subjects)
    await start_agent(settings)
    beat = await eventually(lambda: reports.heartbeats and reports.heartbeats[-1])
    assert beat.isolation == "docker" and beat.slots_free == 0 and "Docker" in (beat.refusing or "")
    reply = await send(nc, subjects, launch(make_feature_set()))
    assert not reply.ok and "takes no work" in (reply.error or "")


def test_auto_without_docker_is_the_sandbox_never_a_bare_process(agent_settings):
    settings = agent_settings(runtime="auto", docker_url="unix:///nonexistent/docker.sock",
                              process_sandbox="bubblewrap")
    assert docker_usable(settings.docker_image, settings.docker_url) is not None
    choice = choose_runtime(settings)
    assert choice.isolation == "bubblewrap" and choice.refusing is None
    no_bwrap = os.environ.get("PATH", "")
    assert no_bwrap  # (the refusal when bubblewrap is missing too is test_the_sandbox_probe_names_what_is_missing)


async def test_the_runtime_never_writes_through_links_a_task_planted(tmp_path):
    """A task plants ``.runtime.partial`` and ``.exit_code.partial`` as links to a file of the
    agent's; the runtime's state and the launcher's exit status must not land there."""
    import asyncio
    import sys

    from touchstone.agent.process import ProcessRuntime
    from touchstone.agent.runtime import ContainerSpec

    victim = tmp_path / "authorized_keys"
    victim.write_text("ssh-ed25519 AAAA the agent's\n")
    root = tmp_path / "agent"
    runtime = ProcessRuntime(root, kill_grace_s=1.0)
    name = "touchstone-s1-t1-1"
    work = root / name
    work.mkdir(parents=True)
    await runtime.provision(ContainerSpec(name, work))
    target = str(victim)
    plant = f"import os; os.symlink({target!r}, '.runtime.partial'); os.symlink({target!r}, '.exit_code.partial')"
    await runtime.run(name, [sys.executable, "-c", plant], {"PATH": os.environ["PATH"]}, work / "console.log")
    for _ in range(300):
        if (await runtime.status(name)).status == "exited":
            break
        await asyncio.sleep(0.02)
    state = await runtime.status(name)
    assert state.status == "exited" and state.exit_code == 0, (work / "console.log").read_text()
    runtime._write(name, {"name": name, "pid": None})  # the agent writes its state again
    assert victim.read_text() == "ssh-ed25519 AAAA the agent's\n"
