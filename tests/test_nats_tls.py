"""The shipped NATS cluster config (``deploy/nats/cluster.conf``) with client and route TLS,
run for real: two nodes on loopback with certificates made here (``cryptography``), a service
connecting the way services do (``connect_with`` and the ``nats_tls_*`` settings), a message
crossing the TLS route, and the attacks: a plain-text client, a client that does not trust the
CA, a node whose certificate another CA signed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from touchstone.shared.jetstream import connect_with
from touchstone.shared.natsserver import free_port, nats_server_binary
from touchstone.shared.settings import Settings

from touchstone.chaos.pki import make_ca, make_leaf

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "nats"
PASSWORD = "services-secret"


def node_config(folder: Path, name: str, port: int, route_port: int, routes: list[int], tls: dict[str, Path]) -> Path:
    """cluster.conf as shipped, with this test's ports, paths and certificates."""
    text = (DEPLOY / "cluster.conf").read_text()
    text = text.replace("$NATS_SERVER_NAME", name).replace("port: 4222", f"port: {port}")
    text = text.replace("http_port: 8222", "http_port: -1").replace("port: 6222", f"port: {route_port}")
    text = text.replace("$NATS_STORE_DIR", f'"{folder / name}"').replace("max_file_store: 100GB",
                                                                          "max_file_store: 1GB")
    text = re.sub(r"routes: \[[^\]]*\]", "routes: [" + ", ".join(f"nats-route://127.0.0.1:{p}" for p in routes) + "]",
                  text)
    variables = {"$NATS_TLS_CERT": "server.crt", "$NATS_TLS_KEY": "server.key", "$NATS_TLS_CA": "ca.crt"}
    for variable, role in variables.items():
        assert variable in text, f"cluster.conf no longer names {variable}"
        text = text.replace(variable, f'"{tls[role]}"')
    shutil.copy(DEPLOY / "accounts.conf", folder / "accounts.conf")
    config = folder / f"{name}.conf"
    config.write_text(text)
    return config


@contextlib.contextmanager
def running(config: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = dict(os.environ, TOUCHSTONE_SERVICES_PASSWORD=PASSWORD)
    with log.open("ab") as out:
        proc = subprocess.Popen([nats_server_binary(), "-c", str(config)], stdout=out, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(10)


def wait_for(check, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    ca = make_ca(tmp_path, "ca")
    server_crt, server_key = make_leaf(tmp_path, "server", ca)
    client_crt, client_key = make_leaf(tmp_path, "client", ca)
    rogue_ca = make_ca(tmp_path, "rogue-ca")
    rogue_crt, rogue_key = make_leaf(tmp_path, "rogue", rogue_ca)
    return {"ca": tmp_path / "ca.crt", "server.crt": server_crt, "server.key": server_key, "client.crt": client_crt,
            "client.key": client_key, "rogue-ca": tmp_path / "rogue-ca.crt", "rogue.crt": rogue_crt,
            "rogue.key": rogue_key}


async def test_clients_and_routes_speak_only_tls(tmp_path: Path, pki: dict[str, Path]) -> None:
    ports, routes = [free_port(), free_port(), free_port()], [free_port(), free_port(), free_port()]
    tls = {"ca.crt": pki["ca"], "server.crt": pki["server.crt"], "server.key": pki["server.key"]}
    rogue_tls = {"ca.crt": pki["ca"], "server.crt": pki["rogue.crt"], "server.key": pki["rogue.key"]}
    configs = [node_config(tmp_path, f"n{i}", ports[i], routes[i], routes[:2], tls) for i in range(2)]
    rogue = node_config(tmp_path, "rogue", ports[2], routes[2], routes[:2], rogue_tls)
    logs = [tmp_path / f"n{i}.log" for i in range(3)]
    with running(configs[0], logs[0]), running(configs[1], logs[1]), running(rogue, logs[2]):
        wait_for(lambda: all("Server is ready" in log.read_text(errors="replace") for log in logs))
        settings = [Settings(nats_url=f"tls://127.0.0.1:{p}", nats_user="touchstone-services",
                             nats_password=PASSWORD, nats_tls_ca_file=pki["ca"]) for p in ports[:2]]
        a = await connect_with(settings[0], "tls-a", reconnect=False)
        b = await connect_with(settings[1], "tls-b", reconnect=False)
        try:
            sub = await b.subscribe("touchstone.tls.check")
            for _ in range(100):  # until the route has carried b's interest to node 0
                await a.publish("touchstone.tls.check", b"across the route")
                with contextlib.suppress(Exception):
                    msg = await sub.next_msg(timeout=0.2)
                    break
            else:
                pytest.fail("no message crossed the TLS route:\n" + logs[0].read_text()[-3000:])
            assert msg.data == b"across the route"
        finally:
            await a.close()
            await b.close()

        # a plain-text client, or one that does not trust the CA, does not get in
        with pytest.raises((nats.errors.Error, OSError)):
            await nats.connect(f"nats://127.0.0.1:{ports[0]}", user="touchstone-services", password=PASSWORD,
                               allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=3)
        untrusting = ssl.create_default_context(cafile=str(pki["rogue-ca"]))
        with pytest.raises((nats.errors.Error, OSError)):
            await nats.connect(f"tls://127.0.0.1:{ports[0]}", user="touchstone-services", password=PASSWORD,
                               tls=untrusting, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=3)
        # a node whose certificate another CA signed never joins the cluster: nothing crosses
        rogue_settings = Settings(nats_url=f"tls://127.0.0.1:{ports[2]}", nats_user="touchstone-services",
                                  nats_password=PASSWORD, nats_tls_ca_file=pki["rogue-ca"])
        outsider = await connect_with(rogue_settings, "tls-rogue", reconnect=False)
        a = await connect_with(settings[0], "tls-a", reconnect=False)
        try:
            sub = await outsider.subscribe("touchstone.tls.check")
            await outsider.flush()
            for _ in range(10):
                await a.publish("touchstone.tls.check", b"for members only")
                await asyncio.sleep(0.1)
            with pytest.raises(nats.errors.TimeoutError):
                await sub.next_msg(timeout=0.5)
        finally:
            await a.close()
            await outsider.close()
        assert re.search(r"(?i)tls|certificate", logs[0].read_text(errors="replace") + logs[1].read_text())
