"""One contract suite for every workspace (``touchstone.shared.workspace``): the agent's process
runtime bare and in its bubblewrap sandbox, its Docker runtime (the real engine, the task
image), and a RunPod pod of the local fake over real SSH/SFTP. The same cases, the same
hostile inputs, the same answers."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncssh
import pytest
from touchstone.agent.process import ProcessRuntime
from touchstone.agent.sandbox import Bubblewrap
from touchstone.agent.testing import docker_runtime_or_skip
from touchstone.agent.workspace import LocalWorkspace
from touchstone.runpod_provider.testing import api, fake, spec, ssh_key, until_ready  # noqa: F401  (fixtures)
from touchstone.runpod_provider.workspace import PodWorkspace
from touchstone.shared.workspace import Workspace, WorkspaceState

ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "TS_GIVEN": "given"}
KINDS = ["process", "bubblewrap", "docker", "pod"]


class Case:
    def __init__(self, ws: Workspace, python: str) -> None:
        self.ws, self.python = ws, python

    async def run_code(self, code: str, timeout: float = 30.0) -> WorkspaceState:
        await self.ws.run([self.python, "-c", code], ENV)
        for _ in range(int(timeout / 0.05)):
            state = await self.ws.state()
            if state.status == "exited":
                return state
            await asyncio.sleep(0.05)
        raise AssertionError(f"still {state} after {timeout}s")

    async def whole_console(self, chunk: int = 64 * 1024) -> bytes:
        got, offset = [], 0
        while data := await self.ws.console(offset, chunk):
            assert len(data) <= chunk
            got.append(data)
            offset += len(data)
        return b"".join(got)


@pytest.fixture(params=KINDS)
async def case(request, tmp_path: Path, monkeypatch, api, spec, until_ready, ssh_key) -> AsyncIterator[Case]:  # noqa: F811
    """A fresh workspace of each kind (the local RunPod runs for every kind: it costs little)."""
    monkeypatch.setenv("TS_PLATFORM_SECRET", "never-in-a-workspace")
    kind = request.param
    name = f"touchstone-w{uuid.uuid4().hex[:8]}-t1-1"
    if kind == "pod":
        pod = await until_ready((await api.create_pod(spec())).id)
        async with asyncssh.connect("127.0.0.1", pod.ssh.port, username="root", client_keys=[ssh_key],
                                    known_hosts=None, connect_timeout=5) as conn:
            ws = PodWorkspace(conn)
            yield Case(ws, sys.executable)
            await ws.remove()
        return
    root = tmp_path / "agent"
    if kind == "docker":
        runtime = docker_runtime_or_skip(f"ws-{uuid.uuid4().hex[:8]}", kill_grace_s=1.0)
        python = "python3"
    else:
        sandbox = None
        if kind == "bubblewrap":
            sandbox = Bubblewrap.for_python(sys.executable)
            if why := sandbox.probe():
                pytest.skip(why)
        runtime, python = ProcessRuntime(root, kill_grace_s=1.0, sandbox=sandbox), sys.executable
    ws = LocalWorkspace(runtime, root, name)
    yield Case(ws, python)
    await ws.remove()


async def test_a_tree_goes_in_and_the_command_runs_there_with_exactly_its_env(case: Case, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "hello.txt").write_text("hello from the tree")
    (tree / "sub" / "x.py").write_text("X = 1\n")
    (tree / ".git").mkdir()
    (tree / ".git" / "config").write_text("[core]")
    (tree / "__pycache__").mkdir()
    (tree / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    os.symlink("/etc/hostname", tree / "link.txt")
    assert await case.ws.put_tree(tree, "in") == 2
    code = ("import os, sys; print(open('in/hello.txt').read()); "
            "print('env', sorted(k for k in os.environ if k.startswith('TS_'))); "
            "print('git', os.path.exists('in/.git'), 'pyc', os.path.exists('in/__pycache__'), "
            "'link', os.path.lexists('in/link.txt')); sys.exit(7)")
    state = await case.run_code(code)
    assert state == WorkspaceState("exited", 7)
    console = (await case.whole_console()).decode()
    assert "hello from the tree" in console and "env ['TS_GIVEN']" in console
    assert "git False pyc False link False" in console
    await case.ws.run([case.python, "-c", "print('twice')"], ENV)  # started once only
    assert "twice" not in (await case.whole_console()).decode()


async def test_reads_refuse_links_special_files_and_oversized_files(case: Case) -> None:
    code = ("import os; os.makedirs('out/models'); open('out/ok.json','w').write('{}'); "
            "open('out/big.bin','wb').write(b'b' * 5000); os.mkfifo('out/fifo'); "
            "os.symlink('/etc/hostname', 'out/host'); os.symlink('../out', 'out/models/up'); "
            "os.symlink('ok.json', 'out/inside')")
    assert (await case.run_code(code)).exit_code == 0
    assert await case.ws.read_file("out/ok.json", 1000) == b"{}"
    assert await asyncio.wait_for(case.ws.read_file("out/fifo", 1000), 10) is None  # never blocks
    for refused in ("out/big.bin", "out/host", "out/models/up/ok.json", "out/inside", "out/missing"):
        assert await case.ws.read_file(refused, 1000) is None, refused
    assert await case.ws.read_file("out/big.bin", 5000) == b"b" * 5000
    with pytest.raises(ValueError):
        await case.ws.read_file("../escape", 10)


async def test_the_console_comes_in_bounded_chunks(case: Case) -> None:
    code = "import sys; sys.stdout.write('x' * 300_000 + '\\nend\\n'); sys.stdout.flush()"
    assert (await case.run_code(code)).exit_code == 0
    console = await case.whole_console(chunk=64 * 1024)
    assert console.endswith(b"\nend\n") and console.count(b"x") == 300_000
    assert await case.ws.console(len(console), 1024) == b""


async def test_remove_stops_the_command_and_is_silent_when_gone(case: Case) -> None:
    await case.ws.run([case.python, "-c", "import time; open('mark','w').write('1'); time.sleep(60)"], ENV)
    for _ in range(200):
        if await case.ws.read_file("mark", 10) == b"1":
            break
        await asyncio.sleep(0.05)
    assert (await case.ws.state()).status == "running"
    await case.ws.remove()
    assert (await case.ws.state()).status == "gone"
    assert await case.ws.read_file("mark", 10) is None
    await case.ws.remove()
