"""Operator access through the API, with a real agent on the real nats-server: admins only,
every request on the record as events (refused ones too), and nothing runs on an agent that
has not opted in. The CLI verbs against the same API."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import sys

import pytest
import typer
from touchstone.agent.config import AgentSettings
from touchstone.agent.service import Agent
from typer.testing import CliRunner

from touchstone.cli.agentaccess import agent_app

ADMIN_SECRET = "tst_bootstrap-admin-for-tests"


@contextlib.asynccontextmanager
async def running_agent(api, tmp_path, host: str, **settings):
    values = dict(host=host, namespace=api.deps.subjects.ns, data_dir=tmp_path / host, runtime="process",
                  process_sandbox="none", nvidia_smi="no-such-nvidia-smi", heartbeat_interval_s=0.3,
                  answer_status=False, **settings)
    agent = Agent(AgentSettings(**values), api.deps.nc, api.deps.subjects)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    for _ in range(200):  # until it listens
        try:
            await api.deps.nc.request(api.deps.subjects.agent_commands(host), b"{}", timeout=0.2)
            break
        except Exception:
            await asyncio.sleep(0.02)
    try:
        yield agent
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def audit(api, host: str) -> list[dict]:
    """The agent aggregate's events, as stored."""
    js, subjects = api.deps.js, api.deps.subjects
    found, seq = [], 1
    while True:
        try:
            msg = await js.get_msg(subjects.events_stream, seq=seq, subject=f"{subjects.ns}.evt.agent.{host}.*",
                                   next=True)
        except Exception:
            return found
        found.append(json.loads(msg.data))
        seq = msg.seq + 1


async def test_only_admins_reach_an_agent_and_every_request_is_on_the_record(api, tmp_path) -> None:
    root = tmp_path / "ops-root"
    root.mkdir()
    (root / "notes.txt").write_text("hello\n")
    async with running_agent(api, tmp_path, "gpu-a", operator_access=True, operator_root=root):
        body = {"argv": [sys.executable, "-c", "print('from the host')"], "timeout_s": 20}
        for client in (api.alice, api.anon):
            r = await client.post("/api/v1/agents/gpu-a/exec", json=body)
            assert r.status_code in (401, 403), r.text
            r = await client.get("/api/v1/agents/gpu-a/file", params={"path": "notes.txt"})
            assert r.status_code in (401, 403)
        assert await audit(api, "gpu-a") == []  # refused before anything was asked or recorded

        r = await api.admin.post("/api/v1/agents/gpu-a/exec", json=body)
        assert r.status_code == 200, r.text
        done = r.json()
        assert base64.b64decode(done["stdout"]) == b"from the host\n" and done["exit_code"] == 0
        r = await api.admin.get("/api/v1/agents/gpu-a/file", params={"path": "notes.txt"})
        assert r.status_code == 200 and base64.b64decode(r.json()["data"]) == b"hello\n"
        r = await api.admin.put("/api/v1/agents/gpu-a/file",
                                json={"path": "notes.txt", "data": base64.b64encode(b"bye\n").decode()})
        assert r.status_code == 200 and (root / "notes.txt").read_text() == "bye\n"
        r = await api.admin.get("/api/v1/agents/gpu-a/file", params={"path": "../notes.txt"})
        assert r.status_code == 400
    recorded = await audit(api, "gpu-a")
    assert [(e["type"], e["action"]) for e in recorded] == [
        ("AgentAccessRequested", "exec"), ("AgentAccessFinished", "exec"),
        ("AgentAccessRequested", "get"), ("AgentAccessFinished", "get"),
        ("AgentAccessRequested", "put"), ("AgentAccessFinished", "put"),
    ]
    assert recorded[0]["argv"] == body["argv"] and recorded[0]["requested_by"] == "admin"
    assert recorded[1]["exit_code"] == 0 and recorded[1]["ok"] is True
    assert recorded[4]["path"] == "notes.txt" and recorded[4]["size"] == 4


async def test_an_agent_that_has_not_opted_in_refuses_and_the_refusal_is_recorded(api, tmp_path) -> None:
    marker = tmp_path / "ran"
    async with running_agent(api, tmp_path, "gpu-b"):
        r = await api.admin.post("/api/v1/agents/gpu-b/exec", json={"argv": ["touch", str(marker)]})
        assert r.status_code == 403 and "operator access is off" in r.json()["detail"]
    assert not marker.exists()
    finished = (await audit(api, "gpu-b"))[-1]
    assert finished["type"] == "AgentAccessFinished" and finished["ok"] is False
    # an agent that is not there: 404, on the record too
    r = await api.admin.post("/api/v1/agents/nobody/exec", json={"argv": ["true"]})
    assert r.status_code == 404 and "not connected" in r.json()["detail"]
    assert (await audit(api, "nobody"))[-1]["error"] == "agent nobody is not connected"


@pytest.mark.parametrize("body", [
    {"argv": []}, {"argv": "ls -l"}, {"argv": ["ls"], "timeout_s": 301}, {"argv": ["ls"], "shell": True},
    {"argv": ["a\u0000b"]}, {"argv": ["x"] * 33}, {"argv": ["\u00e9"]}, {"argv": ["x" * 513]},
])
async def test_malformed_exec_requests_are_refused_whole(api, body) -> None:
    r = await api.admin.post("/api/v1/agents/gpu-c/exec", json=body)
    assert r.status_code in (400, 422), (body, r.text)
    assert await audit(api, "gpu-c") == []


async def test_the_cli_verbs(api, tmp_path, monkeypatch) -> None:
    root = tmp_path / "cli-root"
    root.mkdir()
    app = typer.Typer()
    app.add_typer(agent_app, name="agent")
    runner = CliRunner()
    env = {"TOUCHSTONE_URL": api.url, "TOUCHSTONE_TOKEN": ADMIN_SECRET}

    async def run(*args: str):
        return await asyncio.to_thread(runner.invoke, app, list(args), env=env)

    local = tmp_path / "daemon.json"
    local.write_text('{"debug": true}')
    async with running_agent(api, tmp_path, "gpu-d", operator_access=True, operator_root=root):
        result = await run("agent", "exec", "gpu-d", "--", sys.executable, "-c",
                           "import sys; print('\\x1b[2Jout'); sys.exit(3)")
        assert result.exit_code == 3 and "out" in result.stdout and "\x1b" not in result.stdout
        result = await run("agent", "put", "gpu-d", str(local), "daemon.json")
        assert result.exit_code == 0, result.output
        result = await run("agent", "get", "gpu-d", "daemon.json", "--json")
        assert base64.b64decode(json.loads(result.stdout)["data"]) == b'{"debug": true}'
        result = await run("agent", "get", "gpu-d", "link/../../x")
        assert result.exit_code != 0
