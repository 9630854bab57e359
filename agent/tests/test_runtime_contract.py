"""The rules every ``ContainerRuntime`` keeps (``runtime.py``), run against each runtime.
A Docker runtime joins by adding itself to ``RUNTIMES``."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from touchstone.agent.process import ProcessRuntime
from touchstone.agent.runtime import ContainerRuntime, ContainerSpec

RUNTIMES: dict[str, Callable[[Path], ContainerRuntime]] = {
    "process": lambda root: ProcessRuntime(root, kill_grace_s=1.0),
}

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


@pytest.fixture(params=sorted(RUNTIMES))
def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[ContainerRuntime, Path]:
    root = tmp_path / "agent"
    root.mkdir()
    return RUNTIMES[request.param](root), root


async def _until(runtime: ContainerRuntime, name: str, status: str, timeout: float = 15.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if (await runtime.status(name)).status == status:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{name} never became {status}")


def _spec(root: Path, name: str = "touchstone-s1-t1-1") -> ContainerSpec:
    work = root / name
    work.mkdir(exist_ok=True)
    return ContainerSpec(name, work, {"touchstone.task": "t1"})


async def test_a_command_runs_and_its_exit_status_is_kept(runtime):
    rt, root = runtime
    spec = _spec(root)
    await rt.provision(spec)
    await rt.provision(spec)  # idempotent
    assert (await rt.status(spec.name)).status == "created"
    code = "import sys; print('hello'); sys.exit(7)"
    await rt.run(spec.name, [sys.executable, "-c", code], ENV, spec.work_dir / "console.log")
    await _until(rt, spec.name, "exited")
    state = await rt.status(spec.name)
    assert state.exit_code == 7 and state.labels == {"touchstone.task": "t1"}
    assert "hello" in (spec.work_dir / "console.log").read_text()
    assert [s.name for s in await rt.list_ours()] == [spec.name]


async def test_terminate_stops_the_whole_tree_and_is_silent_when_gone(runtime, tmp_path):
    rt, root = runtime
    spec = _spec(root)
    await rt.provision(spec)
    grandchild = tmp_path / "grandchild.pid"
    code = (
        "import subprocess, sys, time, pathlib;"
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        f"pathlib.Path({str(grandchild)!r}).write_text(str(p.pid)); time.sleep(60)"
    )
    await rt.run(spec.name, [sys.executable, "-c", code], ENV, spec.work_dir / "console.log")
    await _until(rt, spec.name, "running")
    for _ in range(500):
        if grandchild.exists() and grandchild.read_text():
            break
        await asyncio.sleep(0.02)
    pid = int(grandchild.read_text())
    await rt.terminate(spec.name)
    assert (await rt.status(spec.name)).status == "gone"
    for _ in range(250):
        if not _alive(pid):
            break
        await asyncio.sleep(0.02)
    assert not _alive(pid)
    await rt.terminate(spec.name)
    await rt.terminate("touchstone-never-was-1")
    assert await rt.list_ours() == []


async def test_only_our_containers_are_listed(runtime):
    rt, root = runtime
    (root / "someone-else").mkdir()
    await rt.provision(_spec(root, "touchstone-s2-t1-1"))
    assert [s.name for s in await rt.list_ours()] == ["touchstone-s2-t1-1"]
    with pytest.raises(ValueError):
        await rt.status("../../etc")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False
