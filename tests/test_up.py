"""`touchstone up` and `touchstone status` as a user runs them: start, check, stop, start again."""

from __future__ import annotations

import subprocess
import sys

from touchstone.cli.supervisor import available_services

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
    pub = EventPublisher(nc.jetstream(), Subjects("touchstone"))
    history = await pub.load("submission", "s-keep")
    print("found" if any(r.event.event_id == sys.argv[2] for r in history) else "missing")
    await nc.close()
asyncio.run(main())
"""


def run_py(code: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_up_reports_healthy_and_keeps_data_across_restarts(make_up) -> None:
    services = {name for name, _ in available_services()}
    up = make_up()
    up.start()
    try:
        first = up.wait_healthy(len(services))
        assert first["jetstream"] == "ok"
        assert {s["service"] for s in first["services"]} == services
        assert all(s["healthy"] for s in first["services"])
        if "submission" in services:
            with up.api() as api:
                assert api.get("/healthz").status_code == 200
        marker = run_py(MARK, up.nats_url)
    finally:
        assert up.stop() == 0
    assert "stopped; data kept" in up.tail()
    assert not (up.data / "up.json").exists()
    code, _ = up.status()
    assert code != 0, "status must say unhealthy when nothing runs"

    up.start()
    try:
        second = up.wait_healthy(len(services))
        assert second["streams"]["TOUCHSTONE_EVENTS"] >= 1
        assert run_py(FIND, up.nats_url, marker) == "found"
    finally:
        assert up.stop() == 0
