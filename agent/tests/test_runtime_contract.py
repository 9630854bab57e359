"""The rules every ``ContainerRuntime`` keeps (``runtime.py``), run against each runtime.
A runtime joins by adding itself to ``RUNTIMES``; the command runs the runtime's ``python``.
Container names carry a token per test, since a Docker engine is shared by every run on the host."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from touchstone.agent.process import ProcessRuntime
from touchstone.agent.runtime import ContainerRuntime, ContainerSpec, work_dir_of
from touchstone.agent.sandbox import Bubblewrap
from touchstone.agent.testing import docker_runtime_or_skip

pytestmark = pytest.mark.integration  # real runtimes: processes, bubblewrap, Docker

RUNTIMES: dict[str, Callable[[Path], ContainerRuntime]] = {
    "process": lambda root: ProcessRuntime(root, kill_grace_s=1.0),
    "bubblewrap": lambda root: ProcessRuntime(root, kill_grace_s=1.0, sandbox=_bubblewrap()),
    "docker": lambda root: docker_runtime_or_skip(f"contract-{root.parent.name}-{os.getpid()}", kill_grace_s=1.0),
}

def _bubblewrap() -> Bubblewrap:
    sandbox = Bubblewrap.for_python(sys.executable)
    if why_not := sandbox.probe():
        pytest.skip(why_not)
    return sandbox


ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


@pytest.fixture(params=sorted(RUNTIMES))
async def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[ContainerRuntime, Path]]:
    root = tmp_path / "agent"
    root.mkdir()
    rt = RUNTIMES[request.param](root)
    yield rt, root
    for state in await rt.list_ours():
        await rt.terminate(state.name)


async def _until(runtime: ContainerRuntime, name: str, status: str, timeout: float = 15.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if (await runtime.status(name)).status == status:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{name} never became {status}")


def _python(rt: ContainerRuntime) -> str:
    return getattr(rt, "python", "") or sys.executable


def _spec(root: Path, submission: str = "s1") -> ContainerSpec:
    name = f"touchstone-{submission}{uuid.uuid4().hex[:8]}-t1-1"
    work = work_dir_of(root, name)
    work.mkdir(parents=True, exist_ok=True)
    return ContainerSpec(name, work, {"touchstone.task": "t1"})


def _console(spec: ContainerSpec) -> Path:
    return spec.work_dir.parent / "console.log"


async def test_a_command_runs_and_its_exit_status_is_kept(runtime):
    rt, root = runtime
    spec = _spec(root)
    await rt.provision(spec)
    await rt.provision(spec)  # idempotent
    assert (await rt.status(spec.name)).status == "created"
    code = "import sys; print('hello'); sys.exit(7)"
    await rt.run(spec.name, [_python(rt), "-c", code], ENV, _console(spec))
    await rt.run(spec.name, [_python(rt), "-c", code], ENV, _console(spec))  # idempotent
    await _until(rt, spec.name, "exited")
    state = await rt.status(spec.name)
    assert state.exit_code == 7 and state.labels == {"touchstone.task": "t1"}
    assert "hello" in (_console(spec)).read_text()
    assert [s.name for s in await rt.list_ours()] == [spec.name]


async def test_terminate_stops_the_whole_tree_and_is_silent_when_gone(runtime):
    rt, root = runtime
    spec = _spec(root)
    await rt.provision(spec)
    beat = spec.work_dir / "grandchild.beat"  # the grandchild appends to it while it lives
    grandchild = f"import time\nwhile True:\n    open({str(beat)!r}, 'a').write('.'); time.sleep(0.02)"
    code = (
        "import subprocess, sys, time;"
        f"p = subprocess.Popen([sys.executable, '-c', {grandchild!r}]); time.sleep(60)"
    )
    await rt.run(spec.name, [_python(rt), "-c", code], ENV, _console(spec))
    await _until(rt, spec.name, "running")
    for _ in range(500):
        if beat.exists() and beat.stat().st_size > 0:
            break
        await asyncio.sleep(0.02)
    assert beat.stat().st_size > 0
    await rt.terminate(spec.name)
    assert (await rt.status(spec.name)).status == "gone"
    await asyncio.sleep(0.2)
    size = beat.stat().st_size
    await asyncio.sleep(0.3)
    assert beat.stat().st_size == size  # the grandchild is gone too
    await rt.terminate(spec.name)
    await rt.terminate("touchstone-never-was-1")
    assert await rt.list_ours() == []


async def test_only_our_containers_are_listed(runtime):
    rt, root = runtime
    (root / "someone-else").mkdir()
    spec = _spec(root, "s2")
    await rt.provision(spec)
    assert [s.name for s in await rt.list_ours()] == [spec.name]
    with pytest.raises(ValueError):
        await rt.status("../../etc")
    await rt.terminate(spec.name)

