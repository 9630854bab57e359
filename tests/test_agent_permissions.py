"""An agent's NATS user (``deploy/nats/agent-user.py``) may only use its own host's subjects.

Issue 5, faults and security: with agent h1's credentials, subscribing to h2's subjects,
publishing on them, JetStream (consumers, any ``$JS.API``) and a forged status for a task
assigned to h2 all fail with server permission errors. The other half, the on-prem provider
rejecting a status from a host the task is not assigned to (even on h1's own subject), is
``services/onprem-provider/tests/test_provider.py::test_a_status_from_the_wrong_host_is_rejected``
(and ``test_domain.py::test_a_report_from_another_host_is_rejected``).

Runs its own nats-server with the deploy template's users; a few seconds in all.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS
from touchstone.agent.config import AgentSettings
from touchstone.agent.connection import connect_agent
from touchstone.agent.service import Agent
from touchstone.shared.agents import AttemptOutcome, AttemptReport, encode
from touchstone.shared.natsserver import nats_server_binary
from touchstone.shared.subjects import Subjects

NS = "touchstone"
SUBJECTS = Subjects(NS)
DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "nats"
PASSWORDS = {"touchstone-services": "services-secret", "agent-h1": "h1-secret", "agent-h2": "h2-secret"}


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("agent_user", DEPLOY / "agent-user.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A nats-server whose TOUCHSTONE account holds the services' user (accounts.conf) and
    users for agents h1 and h2, generated from the deploy template; yields its address."""
    folder = tmp_path_factory.mktemp("nats-agent-permissions")
    gen = _generator()
    agents = "\n".join(gen.agent_user(host, NS) for host in ("h1", "h2"))
    accounts = (DEPLOY / "accounts.conf").read_text()
    services = "{ user: touchstone-services, password: $TOUCHSTONE_SERVICES_PASSWORD }"
    assert services in accounts  # the shipped account, with the agents added to its users
    (folder / "nats.conf").write_text(
        f'host: 127.0.0.1\nport: -1\nports_file_dir: "{folder}"\n'
        f'jetstream {{ store_dir: "{folder / "js"}" }}\n'
        + accounts.replace(services, services + "\n" + agents)
    )
    env = dict(os.environ, TOUCHSTONE_SERVICES_PASSWORD=PASSWORDS["touchstone-services"],
               TOUCHSTONE_AGENT_H1_PASSWORD=PASSWORDS["agent-h1"],
               TOUCHSTONE_AGENT_H2_PASSWORD=PASSWORDS["agent-h2"])
    with (folder / "nats.log").open("ab") as log:
        proc = subprocess.Popen([nats_server_binary(), "-c", str(folder / "nats.conf")], stdout=log,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        ports = folder / f"{Path(nats_server_binary()).name}_{proc.pid}.ports"
        deadline = time.monotonic() + 20
        address = None
        while address is None:
            assert proc.poll() is None, (folder / "nats.log").read_text()
            assert time.monotonic() < deadline, "nats-server did not start"
            with contextlib.suppress(FileNotFoundError, json.JSONDecodeError, KeyError, IndexError):
                address = json.loads(ports.read_text())["nats"][0].removeprefix("nats://")
            time.sleep(0.02)
        yield f"nats://{address}"
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()


def _with_user(url: str, user: str) -> str:
    return url.replace("nats://", f"nats://{user}:{PASSWORDS[user]}@", 1)


class Client:
    """A connection as one user that collects the server's permission errors."""

    def __init__(self, nc: NATS, errors: list[str]) -> None:
        self.nc = nc
        self.errors = errors

    async def violation(self, needle: str) -> bool:
        """Whether the server reported a permissions violation mentioning ``needle`` (nats-py
        lower-cases the server's ``-ERR 'Permissions Violation for Publish to "..."'``)."""
        await self.nc.flush(timeout=2)  # the server answered everything sent before the PING
        for _ in range(100):
            if any("permissions violation" in e.lower() and needle.lower() in e.lower() for e in self.errors):
                return True
            await asyncio.sleep(0.01)
        return False


@pytest.fixture
async def login(server_url: str) -> AsyncIterator[Callable[[str], Awaitable[Client]]]:
    opened: list[NATS] = []

    async def open_as(user: str) -> Client:
        errors: list[str] = []

        async def on_error(e: Exception) -> None:
            errors.append(str(e))

        nc = await nats.connect(_with_user(server_url, user), error_cb=on_error, allow_reconnect=False,
                                connect_timeout=5)
        opened.append(nc)
        return Client(nc, errors)

    yield open_as
    for nc in opened:
        with contextlib.suppress(Exception):
            await nc.close()


async def _received(sub: Any, wait: float = 0.3) -> list[bytes]:
    got: list[bytes] = []
    with contextlib.suppress(Exception):
        while True:
            got.append((await sub.next_msg(timeout=wait)).data)
    return got


async def test_an_agent_uses_its_own_subjects(login):
    services, h1 = await login("touchstone-services"), await login("agent-h1")

    async def answer(msg: Any) -> None:
        await msg.respond(b"ok " + msg.data)

    await h1.nc.subscribe(SUBJECTS.agent_commands("h1"), cb=answer)
    await h1.nc.subscribe(SUBJECTS.status_ping, cb=answer)
    await h1.nc.flush()
    reports = await services.nc.subscribe(SUBJECTS.agent_reports("h1"))
    logs = await services.nc.subscribe(SUBJECTS.logs("s1-t1"))
    await services.nc.flush()

    assert (await services.nc.request(SUBJECTS.agent_commands("h1"), b"launch", timeout=2)).data == b"ok launch"
    assert (await services.nc.request(SUBJECTS.status_ping, b"ping", timeout=2)).data == b"ok ping"
    await h1.nc.publish(SUBJECTS.agent_reports("h1"), b"heartbeat")
    await h1.nc.publish(SUBJECTS.logs("s1-t1"), b"a console line")
    await h1.nc.flush()
    assert (await reports.next_msg(timeout=2)).data == b"heartbeat"
    assert (await logs.next_msg(timeout=2)).data == b"a console line"
    assert not [e for e in h1.errors if "permissions violation" in e.lower()]


async def test_an_agent_cannot_listen_to_another_host(login):
    services, h1 = await login("touchstone-services"), await login("agent-h1")
    for subject in (SUBJECTS.agent_commands("h2"), SUBJECTS.agent_reports("h2"), f"{NS}.>", ">",
                    f"{NS}.logs.>", f"{NS}.evt.>", "_INBOX.>"):
        sub = await h1.nc.subscribe(subject)
        assert await h1.violation(f'Subscription to "{subject}"'), (subject, h1.errors)
        await services.nc.publish(SUBJECTS.agent_commands("h2"), b"for h2 only")
        await services.nc.flush()
        assert await _received(sub, 0.1) == [], subject


async def test_an_agent_cannot_publish_for_another_host(login):
    services, h1 = await login("touchstone-services"), await login("agent-h1")
    h2_reports = await services.nc.subscribe(SUBJECTS.agent_reports("h2"))
    h2_commands = await services.nc.subscribe(SUBJECTS.agent_commands("h2"))
    other = await services.nc.subscribe(f"{NS}.evt.>")
    await services.nc.flush()
    for subject in (SUBJECTS.agent_reports("h2"), SUBJECTS.agent_commands("h2"), SUBJECTS.agent_commands("h1"),
                    f"{NS}.evt.task.s1-t1.TaskCompleted", f"{NS}.cmd.scheduler.submit"):
        await h1.nc.publish(subject, b"{}")
        assert await h1.violation(f'Publish to "{subject}"'), (subject, h1.errors)
    for sub in (h2_reports, h2_commands, other):
        assert await _received(sub, 0.1) == []


async def test_a_forged_status_for_a_task_on_another_host_is_refused(login):
    """h1 claims that a task running on h2 has finished: the server drops it on h2's subject;
    on h1's own subject it passes the server and the provider rejects it (see module doc)."""
    services, h1 = await login("touchstone-services"), await login("agent-h1")
    h2_reports = await services.nc.subscribe(SUBJECTS.agent_reports("h2"))
    await services.nc.flush()
    done = AttemptOutcome(result="exited", exit_code=0, metrics={"forged": True})
    forged = AttemptReport(host="h2", container="touchstone-s1-pi-1-1", submission_id="s1", task_id="pi-1",
                           attempt=1, stage="ended", removed=True, outcome=done)
    await h1.nc.publish(SUBJECTS.agent_reports("h2"), encode(forged))
    assert await h1.violation(f'Publish to "{SUBJECTS.agent_reports("h2")}"')
    assert await _received(h2_reports) == []


async def test_an_agent_has_no_jetstream(login, server_url):
    services, h1 = await login("touchstone-services"), await login("agent-h1")
    stream = SUBJECTS.logs_stream
    await services.nc.jetstream().add_stream(name=stream, subjects=[f"{NS}.logs.>"])
    js = h1.nc.jetstream(timeout=0.5)
    with pytest.raises(Exception):  # noqa: B017 - nats-py: a timeout, the request never reaches JetStream
        await js.add_consumer(stream, durable_name="peek", deliver_policy="all")
    assert await h1.violation('Publish to "$JS.API.CONSUMER.')
    with pytest.raises(Exception):  # noqa: B017
        await js.account_info()
    assert await h1.violation('Publish to "$JS.API.INFO"')
    consumers = await services.nc.jetstream().consumers_info(stream)
    assert [c.name for c in consumers] == []
    await services.nc.jetstream().delete_stream(stream)


def test_the_agent_takes_its_credentials_from_the_environment(monkeypatch):
    monkeypatch.setenv("TOUCHSTONE_NATS_USER", "agent-h1")
    monkeypatch.setenv("TOUCHSTONE_NATS_PASSWORD", "h1-secret")
    settings = AgentSettings(host="h1")
    assert settings.nats_user == "agent-h1"
    assert settings.nats_password.get_secret_value() == "h1-secret"
    assert "h1-secret" not in repr(settings)


async def test_the_agent_runs_with_its_own_user(server_url, login, tmp_path, caplog):
    """The real agent, connected the way ``__main__`` connects (``nats_user`` and
    ``nats_password``), listens, reports and answers pings without a permission error."""
    caplog.set_level(logging.WARNING)
    settings = AgentSettings(host="h1", namespace=NS, nats_url=f"{server_url},{server_url}", nats_user="agent-h1",
                             nats_password=PASSWORDS["agent-h1"], data_dir=tmp_path / "data", num_slots=1,
                             heartbeat_interval_s=0.2, nvidia_smi="no-such-nvidia-smi")
    services = await login("touchstone-services")
    reports = await services.nc.subscribe(SUBJECTS.agent_reports("h1"))
    await services.nc.flush()
    nc = await connect_agent(settings)
    stop = asyncio.Event()
    running = asyncio.create_task(Agent(settings, nc, SUBJECTS).run(stop))
    try:
        heartbeat = json.loads((await reports.next_msg(timeout=5)).data)
        assert heartbeat["host"] == "h1"
        reply = await services.nc.request(SUBJECTS.agent_commands("h1"), b"{}", timeout=2)
        assert json.loads(reply.data)["ok"] is False  # a malformed command, answered
        pong = await services.nc.request(SUBJECTS.status_ping, b"", timeout=2)
        assert pong.data
    finally:
        stop.set()
        await asyncio.wait_for(running, 10)
        await nc.close()
    assert not [r for r in caplog.records if "permissions violation" in r.getMessage().lower()]


async def test_a_wrong_password_is_refused(server_url):
    with pytest.raises(Exception, match=r"(?i)authorization"):
        await nats.connect(server_url.replace("nats://", "nats://agent-h1:wrong@"), allow_reconnect=False,
                           max_reconnect_attempts=0, connect_timeout=2)
