"""Operator access on the agent, as attacks that fail: an agent that has not opted in runs
nothing; argv is never a shell; output, time and file sizes are bounded; no path or symlink
leads out of ``operator_root``; the command sees none of the agent's secrets."""

from __future__ import annotations

import base64
import json
import os
import sys
import time

import pytest
from touchstone.agent.access import OperatorAccess
from touchstone.shared.agentaccess import (
    MAX_GET_BYTES,
    MAX_OUTPUT_BYTES,
    MAX_PUT_BYTES,
    AgentExec,
    AgentGetFile,
    AgentPutFile,
    OperatorReply,
)


@pytest.fixture
def places(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "conf").mkdir(parents=True)
    outside.mkdir()
    (root / "conf" / "app.toml").write_text("x = 1\n")
    (outside / "secret.txt").write_text("the agent's secret\n")
    (root / "link").symlink_to(outside)  # a folder link out of the root
    (root / "evil.txt").symlink_to(outside / "secret.txt")  # a file link out of the root
    return root, outside


@pytest.fixture
def access(agent_settings, places):
    root, _ = places
    return OperatorAccess(agent_settings(operator_access=True, operator_root=root))


async def ask(access: OperatorAccess, request) -> OperatorReply:
    return await access.handle(request.model_dump_json().encode())


async def test_an_agent_that_has_not_opted_in_runs_nothing_over_nats(
        nc, subjects, agent_settings, start_agent, tmp_path) -> None:
    await start_agent(agent_settings())  # operator_access left at its default
    marker = tmp_path / "ran"
    for request in (AgentExec(argv=["touch", str(marker)]), AgentGetFile(path="conf/app.toml"),
                    AgentPutFile(path="x", data=base64.b64encode(b"x").decode())):
        msg = await nc.request(subjects.agent_commands("h1"), request.model_dump_json().encode(), timeout=10)
        reply = OperatorReply.model_validate_json(msg.data)
        assert not reply.ok and "operator access is off" in (reply.error or "")
    assert not marker.exists()


async def test_argv_is_never_a_shell_and_the_command_sees_no_agent_secret(access, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TOUCHSTONE_NATS_PASSWORD", "hunter2")
    marker = tmp_path / "pwned"
    reply = await ask(access, AgentExec(argv=["echo", f"$HOME; touch {marker}", "`id`"]))
    assert reply.ok and reply.exit_code == 0
    assert base64.b64decode(reply.stdout).decode() == f"$HOME; touch {marker} `id`\n"
    assert not marker.exists()
    env = await ask(access, AgentExec(argv=["env"]))
    seen = base64.b64decode(env.stdout).decode()
    assert "hunter2" not in seen and "TOUCHSTONE" not in seen
    missing = await ask(access, AgentExec(argv=["no-such-program-here"]))
    assert not missing.ok and "cannot start" in (missing.error or "")


async def test_output_and_time_are_bounded(access) -> None:
    loud = await ask(access, AgentExec(argv=[sys.executable, "-c", "print('x' * 300000)"]))
    assert loud.ok and loud.stdout_bytes == 300001
    assert len(base64.b64decode(loud.stdout)) == MAX_OUTPUT_BYTES
    started = time.monotonic()
    script = "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"
    slow = await ask(access, AgentExec(argv=[sys.executable, "-c", script], timeout_s=0.5))
    assert slow.ok and slow.timed_out and slow.exit_code != 0
    assert time.monotonic() - started < 10  # the whole session was killed: no pipe held open


async def test_files_inside_the_root_come_and_go(access, places) -> None:
    root, _ = places
    got = await ask(access, AgentGetFile(path="conf/app.toml"))
    assert got.ok and base64.b64decode(got.data) == b"x = 1\n" and got.size == 6
    put = await ask(access, AgentPutFile(path="conf/app.toml", data=base64.b64encode(b"x = 2\n").decode()))
    assert put.ok and (root / "conf" / "app.toml").read_text() == "x = 2\n"
    assert oct((root / "conf" / "app.toml").stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in (root / "conf").iterdir()] == ["app.toml"]  # no partial file left


@pytest.mark.parametrize("path", ["link/secret.txt", "evil.txt"])
async def test_a_symlink_leads_nowhere_for_get(access, path) -> None:
    reply = await ask(access, AgentGetFile(path=path))
    assert not reply.ok and reply.data == ""


@pytest.mark.parametrize("path", ["link/secret.txt", "link/new.txt", "evil.txt"])
async def test_a_symlink_leads_nowhere_for_put(access, places, path) -> None:
    _, outside = places
    reply = await ask(access, AgentPutFile(path=path, data=base64.b64encode(b"overwritten").decode()))
    assert not reply.ok
    assert (outside / "secret.txt").read_text() == "the agent's secret\n"
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


async def test_paths_that_climb_or_are_absolute_are_refused_before_the_agent(access) -> None:
    for path in ("../outside/secret.txt", "/etc/passwd", "conf/../../outside/secret.txt", "conf//app.toml"):
        body = json.dumps({"type": "AgentGetFile", "path": path}).encode()
        reply = await access.handle(body)
        assert not reply.ok and "malformed request" in (reply.error or ""), path


async def test_special_and_large_files_are_refused(access, places) -> None:
    root, _ = places
    os.mkfifo(root / "pipe")
    started = time.monotonic()
    fifo = await ask(access, AgentGetFile(path="pipe"))
    assert not fifo.ok and "not a regular file" in (fifo.error or "") and time.monotonic() - started < 5
    (root / "big.bin").write_bytes(b"0" * (MAX_GET_BYTES + 1))
    big = await ask(access, AgentGetFile(path="big.bin"))
    assert not big.ok and "more than" in (big.error or "")
    too_much = base64.b64encode(b"0" * (MAX_PUT_BYTES + 1)).decode()
    put = await ask(access, AgentPutFile(path="big.txt", data=too_much))
    assert not put.ok and not (root / "big.txt").exists()


async def test_no_root_no_files(agent_settings) -> None:
    access = OperatorAccess(agent_settings(operator_access=True))
    reply = await ask(access, AgentGetFile(path="etc/passwd"))
    assert not reply.ok and "operator_root is not set" in (reply.error or "")
