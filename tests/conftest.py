"""Fixtures for whole-system tests: `touchstone up` as a user runs it, in a temp directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from touchstone.shared.natsserver import free_port

ADMIN_TOKEN = "ts_test_admin_token_0123456789abcdef"


@dataclass
class Up:
    """One running `touchstone up`."""

    data: Path
    log: Path
    api_port: int
    env: dict[str, str]
    args: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "touchstone.cli", "up", "--data-dir", str(self.data),
                 "--nats-port", "0", "--api-port", str(self.api_port), *self.args],
                stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True,
            )

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return -9

    def status(self) -> tuple[int, dict]:
        done = subprocess.run(
            [sys.executable, "-m", "touchstone.cli", "status", "--data-dir", str(self.data), "--json"],
            capture_output=True, text=True, timeout=60, env=self.env,
        )
        try:
            return done.returncode, json.loads(done.stdout)
        except json.JSONDecodeError:
            return done.returncode, {"raw": done.stdout + done.stderr}

    def wait_healthy(self, expect_services: int, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        last: dict = {}
        while time.monotonic() < deadline:
            if (self.data / "up.json").exists():
                code, last = self.status()
                if code == 0 and len(last.get("services", [])) >= expect_services:
                    return last
            time.sleep(0.5)
        pytest.fail(f"not healthy in time: {last}\n--- up log ---\n{self.tail()}")

    def tail(self, chars: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    @property
    def nats_url(self) -> str:
        return str(json.loads((self.data / "up.json").read_text())["nats_url"])

    def nats_password(self, user: str = "touchstone-operator") -> str:
        """The password ``touchstone up`` generated for ``user`` (0600, in the data directory)."""
        return (self.data / "credentials" / f"{user}.password").read_text().strip()

    def api(self, token: str = ADMIN_TOKEN) -> httpx.Client:
        return httpx.Client(base_url=f"http://127.0.0.1:{self.api_port}",
                            headers={"Authorization": f"Bearer {token}"}, timeout=30)


@pytest.fixture
def make_up(tmp_path: Path) -> Iterator:
    """Build (not start) a `touchstone up` with its own data directory; stopped afterwards."""
    made: list[Up] = []

    def make(*args: str, **env: str | None) -> Up:
        """``env`` adds variables; None removes one. MLflow is off unless a test turns it on
        (the embedded store costs seconds of start-up per run)."""
        full = {**os.environ, "TOUCHSTONE_ADMIN_TOKEN": ADMIN_TOKEN, "TOUCHSTONE_MLFLOW_TRACKING_URI": "", **env}
        for key in ("TOUCHSTONE_NATS_URL", "TOUCHSTONE_HOST", "TOUCHSTONE_PORT"):
            full.pop(key, None)
        full = {k: v for k, v in full.items() if v is not None}
        up = Up(tmp_path / "data", tmp_path / "up.log", free_port(), full, args)
        made.append(up)
        return up

    yield make
    for up in made:
        if up.proc is not None and up.proc.poll() is None:
            up.stop()
