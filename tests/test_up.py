"""`touchstone up` and `touchstone status` as a user runs them: start, check, stop, start again."""

from __future__ import annotations

import re
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
    nc = await connect(sys.argv[1], "mark", user="touchstone-operator", password=sys.argv[2])
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
    nc = await connect(sys.argv[1], "find", user="touchstone-operator", password=sys.argv[3])
    pub = EventPublisher(nc.jetstream(), Subjects("touchstone"))
    history = await pub.load("submission", "s-keep")
    print("found" if any(r.event.event_id == sys.argv[2] for r in history) else "missing")
    await nc.close()
asyncio.run(main())
"""


MINTED = "ts_minted_by_an_attacker_0123456789"
MINT = """
import asyncio, hashlib, json, sys
import nats
async def main():
    url, user, password = sys.argv[1:4]
    try:
        nc = await nats.connect(url, user=user or None, password=password or None, allow_reconnect=False,
                                max_reconnect_attempts=0, connect_timeout=3)
    except Exception as e:
        print("refused:", e); return
    errors = []
    async def on_error(e): errors.append(e)
    nc._error_cb = on_error
    key = hashlib.sha256(sys.argv[4].encode()).hexdigest()
    record = {"id": "tok-evil", "user": "evil", "role": "admin", "description": "", "created_at":
              "2026-01-01T00:00:00Z", "created_by": "evil"}
    try:
        await nc.jetstream().publish(f"$KV.touchstone_tokens.{key}", json.dumps(record).encode(), timeout=2)
        print("minted")
    except Exception as e:
        print("refused:", type(e).__name__, errors[:1])
    await nc.close()
asyncio.run(main())
"""


def assert_private(folder) -> None:
    assert folder.stat().st_mode & 0o077 == 0
    for file in folder.iterdir():
        assert file.stat().st_mode & 0o077 == 0, file


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
        marker = run_py(MARK, up.nats_url, up.nats_password())
        if "agent" in services:  # `make up` says how tasks are isolated (docker or bubblewrap, never silently none)
            assert re.search(r"isolation: (docker|bubblewrap)", up.tail(10**7)), up.tail()
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
        assert run_py(FIND, up.nats_url, marker, up.nats_password()) == "found"
        assert "Authorization Violation" in run_py(MINT, up.nats_url, "", "", MINTED)
        assert run_py(MINT, up.nats_url, "agent-local", up.nats_password("agent-local"), MINTED).startswith("refused")
        with up.api(token=MINTED) as api:
            assert api.get("/api/v1/tokens").status_code == 401
        assert_private(up.data / "credentials")
    finally:
        assert up.stop() == 0
