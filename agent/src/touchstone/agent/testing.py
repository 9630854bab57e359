"""Pytest fixtures for tests that run agents: a stand-in trainer whose behaviour each feature
set describes (``behaviour.json``), feature sets, agent settings and running agents.

Imported by the agent's and the on-prem provider's ``conftest.py``; nothing here is used in
production. Needs the ``nc`` and ``subjects`` fixtures of ``touchstone.shared.testing``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from touchstone.agent.config import AgentSettings
from touchstone.agent.service import Agent
from touchstone.shared import agents as wire
from touchstone.shared.commands import LaunchTask
from touchstone.shared.events import TaskSpec
from touchstone.shared.objects.grants import GrantSigner, utcnow
from touchstone.shared.objects.keys import attempt_prefix
from touchstone.shared.objects.stores import LocalObjectStore
from touchstone.shared.objects.testing import serve_uploads
from touchstone.shared.subjects import Subjects

STAND_IN_TRAINER = '''\
"""A stand-in trainer: does what the feature set's behaviour.json says."""
import json, os, sys, time
from pathlib import Path

args = sys.argv[1:]
command, opts = args[0], dict(zip(args[1::2], args[2::2]))
behaviour = json.loads((Path(opts["--feature-set"]) / "behaviour.json").read_text())
print(f"stand-in {command} starting", flush=True)
if behaviour.get("count_file"):
    with open(behaviour["count_file"], "a") as f:
        f.write("run\\n")
if behaviour.get("pid_file"):
    Path(behaviour["pid_file"]).write_text(str(os.getpid()))
if behaviour.get("print_env"):
    print("ENV " + " ".join(sorted(os.environ)), flush=True)
    print("CUDA_VISIBLE_DEVICES=" + os.environ.get("CUDA_VISIBLE_DEVICES", "unset"), flush=True)
for line in behaviour.get("lines", []):
    print(line, flush=True)
for module in behaviour.get("imports", []):
    print(f"imported {module} {getattr(__import__(module), 'VALUE', '')}", flush=True)
if behaviour.get("hostile_validate"):  # runs first, in any command
    exec(behaviour["hostile_validate"])
release = behaviour.get("release")
deadline = time.time() + behaviour.get("sleep", 0)
while time.time() < deadline and not (release and os.path.exists(release)):
    time.sleep(0.02)
if command == "validate" and "report" in behaviour:
    Path(opts["--report"]).write_text(json.dumps(behaviour["report"]))
if command == "train":
    out = Path(args[args.index("--output") + 1])
    (out / "models").mkdir(parents=True, exist_ok=True)
    (out / "models" / "long.json").write_text("{}")
    (out / "models" / "short.json").write_text("{}")
    (out / "metrics.json").write_text(json.dumps({"long": {"accuracy": 0.6}}))
    (out / "curves.json").write_text(json.dumps({"format": "touchstone.curves.v1"}))
if behaviour.get("hostile"):  # what a hostile feature set does to its work directory (test_hostile_workdir.py)
    exec(behaviour["hostile"])
print("stand-in done", flush=True)
sys.exit(behaviour.get("exit", 0))
'''


@pytest.fixture
def stand_in_trainer(tmp_path: Path) -> Path:
    """A trainer folder (``src/stand_in_trainer.py``) for ``trainer_module='stand_in_trainer'``."""
    folder = tmp_path / "stand-in-trainer"
    (folder / "src").mkdir(parents=True)
    (folder / "src" / "stand_in_trainer.py").write_text(STAND_IN_TRAINER)
    return folder


@pytest.fixture
def make_feature_set(tmp_path: Path) -> Callable[..., str]:
    """``make_feature_set(name, **behaviour)``: a local feature-set folder; returns its path."""

    def make(name: str = "fs", **behaviour: Any) -> str:
        folder = tmp_path / "feature-sets" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "feature_set.py").write_text("NAME = 'x'\nLOOKBACK = 0\n")
        (folder / "behaviour.json").write_text(json.dumps(behaviour))
        return str(folder)

    return make


@pytest.fixture
def agent_settings(tmp_path: Path, stand_in_trainer: Path) -> Callable[..., AgentSettings]:
    def build(**overrides: Any) -> AgentSettings:
        values: dict[str, Any] = dict(
            host="h1", data_dir=tmp_path / "data", num_slots=2, trainer_dir=stand_in_trainer, runtime="process",
            trainer_module="stand_in_trainer", heartbeat_interval_s=0.3, poll_interval_s=0.05,
            kill_grace_s=2.0, allow_local_sources=True, nvidia_smi="no-such-nvidia-smi",
            process_sandbox="none",  # these tests look at the runtime from outside; test_sandbox.py isolates
        )
        values.update(overrides)
        return AgentSettings(**values)

    return build


@pytest.fixture
async def start_agent(nc: NATS, subjects: Subjects) -> AsyncIterator[Callable[[AgentSettings], Any]]:
    """``await start_agent(settings)`` runs an agent until the test ends (or its ``stop()``)."""
    running: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def start(settings: AgentSettings) -> RunningAgent:
        agent = Agent(settings, nc, subjects)
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        running.append((stop, task))
        for _ in range(200):  # until it listens (it answers a malformed command)
            try:
                await nc.request(subjects.agent_commands(settings.host), b"{}", timeout=0.2)
                break
            except Exception:
                await asyncio.sleep(0.02)
        return RunningAgent(agent, stop, task)

    yield start
    for stop, task in running:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)


class RunningAgent:
    def __init__(self, agent: Agent, stop: asyncio.Event, task: asyncio.Task[None]) -> None:
        self.agent = agent
        self._stop = stop
        self._task = task

    async def stop(self) -> None:
        """Stop the agent process (its attempts keep running, as after a crash)."""
        self._stop.set()
        await asyncio.wait_for(self._task, 10)


@pytest.fixture
def eventually() -> Callable[..., Any]:
    return _eventually


async def _eventually(check: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


class Reports:
    """Everything one host's agent reports."""

    def __init__(self) -> None:
        self.heartbeats: list[wire.AgentHeartbeat] = []
        self.attempts: list[wire.AttemptReport] = []
        self.logs: list[str] = []

    @classmethod
    async def listen(cls, nc: NATS, subjects: Subjects, host: str = "h1") -> Reports:
        reports = cls()

        async def on_report(msg: Any) -> None:
            report = wire.decode_agent_report(msg.data)
            if isinstance(report, wire.AgentHeartbeat):
                reports.heartbeats.append(report)
            elif report is not None:
                reports.attempts.append(report)

        async def on_log(msg: Any) -> None:
            reports.logs.extend(msg.data.decode().splitlines())

        await nc.subscribe(subjects.agent_reports(host), cb=on_report)
        await nc.subscribe(subjects.all_logs, cb=on_log)
        return reports

    def ended(self, container: str) -> wire.AttemptReport | None:
        return next((r for r in self.attempts if r.container == container and r.removed), None)


def launch(feature_set: str, *, task_id: str = "validation", attempt: int = 1, placement: str = "h1/cpu0",
           kind: str = "validation", submission_id: str = "s1", store: LocalObjectStore | None = None) -> LaunchTask:
    """A launch as the provider forwards it: with an upload grant for its attempt when the
    control plane's ``store`` (the ``objects`` fixture) is given."""
    grant = (store.grant(attempt_prefix(submission_id, task_id, attempt), 10_000_000, 600, utcnow())
             if store is not None else None)
    return LaunchTask(submission_id=submission_id, task_id=task_id, attempt=attempt, kind=kind,
                      spec=TaskSpec(git_url=feature_set), placement=placement,
                      prediction_interval=None if kind == "validation" else 15, upload=grant)


GRANT_KEY = "agent-tests-upload-grant-key-0123456789"


@pytest.fixture
def objects(tmp_path: Path) -> Iterator[LocalObjectStore]:
    """The control plane's embedded object store, taking uploads on a real port, in a folder
    of its own (the agent's data directory is elsewhere: no shared filesystem)."""
    with serve_uploads(tmp_path / "control-plane" / "objects", GrantSigner(GRANT_KEY.encode())) as store:
        yield store


async def send(nc: NATS, subjects: Subjects, command: Any, host: str = "h1") -> wire.CommandReply:
    msg = await nc.request(subjects.agent_commands(host), wire.encode(command), timeout=15)
    return wire.decode_reply(msg.data)


TASK_IMAGE = "touchstone-task:latest"


def docker_runtime_or_skip(owner: str, **kwargs: Any) -> Any:
    """A ``DockerRuntime`` of the local engine, or a skipped test when the engine does not
    answer or the task image is missing (``make images``). With ``TOUCHSTONE_REQUIRE_DOCKER=1``
    (set by CI, which installs the engine and builds the image) that is a failure instead."""
    import os

    from touchstone.agent.docker import DockerRuntime, docker_usable

    why_not = docker_usable(TASK_IMAGE)
    if why_not:
        if os.environ.get("TOUCHSTONE_REQUIRE_DOCKER") == "1":
            pytest.fail(f"Docker runtime required here: {why_not}")
        pytest.skip(f"Docker runtime: {why_not}")
    return DockerRuntime(TASK_IMAGE, owner=owner, **kwargs)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still exists and is not a zombie (Linux)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False
