"""`touchstone up` and `touchstone status` as a user runs them: start, check, stop, start again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TOUCHSTONE = [sys.executable, "-m", "touchstone.cli"]


def start_up(data: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TOUCHSTONE_ADMIN_TOKEN": "ts_test_admin_token_0123456789"}
    env.pop("TOUCHSTONE_NATS_URL", None)
    with log.open("ab") as out:
        return subprocess.Popen(
            [*TOUCHSTONE, "up", "--data-dir", str(data), "--nats-port", "0", "--api-port", "0"],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )


def status(data: Path) -> tuple[int, dict]:
    env = {k: v for k, v in os.environ.items() if k != "TOUCHSTONE_NATS_URL"}
    done = subprocess.run([*TOUCHSTONE, "status", "--data-dir", str(data), "--json"],
                          capture_output=True, text=True, timeout=60, env=env)
    try:
        return done.returncode, json.loads(done.stdout)
    except json.JSONDecodeError:
        return done.returncode, {"raw": done.stdout + done.stderr}


def wait_healthy(data: Path, expect_services: int, log: Path, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    last: dict = {}
    while time.monotonic() < deadline:
        if (data / "up.json").exists():
            code, last = status(data)
            if code == 0 and len(last.get("services", [])) >= expect_services:
                return last
        time.sleep(0.5)
    pytest.fail(f"not healthy in time: {last}\n--- up log ---\n{log.read_text()[-4000:]}")


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGINT)
    return proc.wait(timeout=60)


def test_up_reports_healthy_and_keeps_data_across_restarts(tmp_path: Path) -> None:
    from touchstone.cli.supervisor import available_services

    data, log = tmp_path / "data", tmp_path / "up.log"
    expected = len(available_services())
    proc = start_up(data, log)
    try:
        first = wait_healthy(data, expected, log)
        assert first["jetstream"] == "ok"
        assert all(s["healthy"] for s in first["services"])
        assert {s["service"] for s in first["services"]} >= {n for n, _ in available_services()
                                                              if n not in ("agent",)} - {"agent"}
        # write one event through the broker of this instance, then restart
        url = json.loads((data / "up.json").read_text())["nats_url"]
        marker = subprocess.run(
            [sys.executable, "-c", MARK, url], capture_output=True, text=True, timeout=60, check=True
        ).stdout.strip()
    finally:
        assert stop(proc) == 0
    assert "stopped; data kept" in log.read_text()
    assert not (data / "up.json").exists()
    code, _ = status(data)
    assert code != 0, "status must say unhealthy when nothing runs"

    proc = start_up(data, log)
    try:
        second = wait_healthy(data, expected, log)
        assert second["streams"]["TOUCHSTONE_EVENTS"] >= 1
        url = json.loads((data / "up.json").read_text())["nats_url"]
        found = subprocess.run([sys.executable, "-c", FIND, url, marker], capture_output=True,
                               text=True, timeout=60, check=True).stdout.strip()
        assert found == "found"
    finally:
        assert stop(proc) == 0


MARK = """
import asyncio, sys
from touchstone.shared.jetstream import connect
from touchstone.shared.publisher import EventPublisher
from touchstone.shared.subjects import Subjects
from touchstone.shared import events as ev
async def main():
    nc = await connect(sys.argv[1], "mark")
    e = ev.SubmissionCreated(aggregate_id="s-keep", correlation_id="s-keep", owner="o", name="n",
                             git_url="https://example.com/x.git")
    await EventPublisher(nc.jetstream(), Subjects("touchstone")).append(e)
    print(e.event_id)
    await nc.close()
asyncio.run(main())
"""

FIND = """
import asyncio, sys
from touchstone.shared.jetstream import connect
from touchstone.shared.publisher import EventPublisher
from touchstone.shared.subjects import Subjects
async def main():
    nc = await connect(sys.argv[1], "find")
    history = await EventPublisher(nc.jetstream(), Subjects("touchstone")).load("submission", "s-keep")
    print("found" if any(r.event.event_id == sys.argv[2] for r in history) else "missing")
    await nc.close()
asyncio.run(main())
"""
