"""Live pages: the status feed (SSE), console logs (plain and followed) and artifacts."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import httpx
from touchstone.shared import events as ev
from touchstone.shared.objects.keys import log_key
from touchstone.shared.objects.testing import put_bytes


async def sse(client: httpx.AsyncClient, path: str, into: list[dict], ready: asyncio.Event) -> None:
    """Collect the events of one SSE stream (``{"event": ..., "data": ...}``) until cancelled."""
    async with client.stream("GET", path, timeout=None) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        event: dict = {}
        async for line in r.aiter_lines():
            if line.startswith(":"):
                ready.set()
            elif line.startswith("event:"):
                event["event"] = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                event["data"] = json.loads(line.split(":", 1)[1].strip())
            elif line == "" and event:
                into.append(event)
                event = {}


async def follow(client: httpx.AsyncClient, path: str) -> tuple[asyncio.Task, list, asyncio.Event]:
    seen: list[dict] = []
    ready = asyncio.Event()
    task = asyncio.create_task(sse(client, path, seen, ready))
    await asyncio.wait_for(ready.wait(), 5)
    return task, seen, ready


async def until(check, timeout: float = 5.0) -> None:
    async def loop() -> None:
        while not check():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(loop(), timeout)


async def test_events_stream_status_changes_to_whoever_may_see_them(api) -> None:
    alice_task, alice_seen, _ = await follow(api.alice, "/api/v1/events")
    bob_task, bob_seen, _ = await follow(api.bob, "/api/v1/events")
    admin_task, admin_seen, _ = await follow(api.admin, "/api/v1/events")
    try:
        a = await api.submit(api.alice)
        await api.validated(a)
        await until(lambda: [e["data"]["status"] for e in alice_seen] == ["VALIDATING", "ACCEPTED"])
        assert alice_seen[0]["event"] == "status" and alice_seen[0]["data"]["submission_id"] == a
        assert alice_seen[1]["data"]["type"] == "SubmissionValidated"
        b = await api.submit(api.bob)
        await until(lambda: len(bob_seen) == 1)
        assert bob_seen[0]["data"]["submission_id"] == b  # and nothing of alice's came before it
        await until(lambda: len(admin_seen) == 3)
        assert [e["data"]["submission_id"] for e in admin_seen] == [a, a, b]
        assert len(alice_seen) == 2
    finally:
        for task in (alice_task, bob_task, admin_task):
            task.cancel()
        await asyncio.gather(alice_task, bob_task, admin_task, return_exceptions=True)


async def test_events_for_one_submission_and_task_changes(api) -> None:
    a = await api.accepted(api.alice)
    other = await api.submit(api.alice)
    task, seen, _ = await follow(api.alice, f"/api/v1/events?submission_id={a}")
    try:
        spec = ev.TaskSpec(git_url="https://github.com/org/fs.git")
        base = {"aggregate_id": f"{a}-pi-60", "correlation_id": a, "submission_id": a, "task_id": "pi-60"}
        await api.record(ev.SubmissionValidated(aggregate_id=other, correlation_id=other, passed=True))
        await api.record(ev.TaskQueued(**base, spec=spec, prediction_interval=60))
        await until(lambda: len(seen) == 1)
        assert seen[0]["data"] | {"occurred_at": None, "seq": None} == {
            "type": "TaskQueued",
            "submission_id": a,
            "task_id": "pi-60",
            "status": "QUEUED",
            "occurred_at": None,
            "seq": None,
        }
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _task_with_logs(api, lines: bytes = b"step 1\nstep 2\n") -> tuple[str, dict]:
    sid = await api.accepted(api.alice)
    spec = ev.TaskSpec(git_url="https://github.com/org/fs.git")
    base = {"aggregate_id": f"{sid}-pi-60", "correlation_id": sid, "submission_id": sid, "task_id": "pi-60"}
    await api.record(ev.TaskQueued(**base, spec=spec, prediction_interval=60))
    await api.deps.js.publish(api.deps.subjects.logs(f"{sid}-pi-60"), lines)
    await api.deps.js.publish(api.deps.subjects.logs(f"{sid}-pi-60"), b"step 3")
    return sid, base


async def test_logs_plain_and_tail(api) -> None:
    sid, _ = await _task_with_logs(api)
    path = f"/api/v1/submissions/{sid}/tasks/pi-60/logs"
    r = await api.alice.get(path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert r.text == "step 1\nstep 2\nstep 3\n"
    assert (await api.alice.get(path, params={"tail": 2})).text == "step 2\nstep 3\n"
    assert (await api.alice.get(path, params={"tail": 0})).status_code == 400
    assert (await api.alice.get(f"/api/v1/submissions/{sid}/tasks/pi-15/logs")).status_code == 404
    assert (await api.bob.get(path)).status_code == 404
    empty = await api.accepted(api.alice)
    await api.record(
        ev.TaskQueued(
            aggregate_id=f"{empty}-validation",
            correlation_id=empty,
            submission_id=empty,
            task_id="validation",
            kind="validation",
            spec=ev.TaskSpec(git_url="https://github.com/org/fs.git"),
        )
    )
    assert (await api.alice.get(f"/api/v1/submissions/{empty}/tasks/validation/logs")).text == ""


def _secret(client: httpx.AsyncClient) -> str:
    return client.headers["Authorization"].removeprefix("Bearer ")


async def test_an_ended_tasks_log_comes_from_the_store_even_after_the_streams_retention(api, tmp_path) -> None:
    """Every attempt's full log, read by the key the API computes itself; a host path in the
    event is never opened."""
    sid = await api.accepted(api.alice)
    host_file = tmp_path / "host-secret.log"
    host_file.write_text("a host file\n")
    await put_bytes(api.deps.objects, log_key(sid, "validation", 1), b"attempt 1 line\n")
    await put_bytes(api.deps.objects, log_key(sid, "validation", 2), "stored 1\nstored 2 \u00e9\n".encode())
    base = {"aggregate_id": f"{sid}-validation", "correlation_id": sid, "submission_id": sid, "task_id": "validation"}
    await api.record(
        ev.TaskQueued(**base, kind="validation", spec=ev.TaskSpec(git_url="https://github.com/org/fs.git")),
        ev.TaskAssigned(**base, attempt=1, platform="onprem", placement="h1/0"),
        ev.TaskFailed(**base, attempt=1, reason="x", log_uri=host_file.as_uri()),
        ev.TaskRetried(**base, attempt=2, not_before=datetime.now(UTC)),
        ev.TaskAssigned(**base, attempt=2, platform="onprem", placement="h1/0"),
        ev.TrainingFinished(**base, attempt=2, log_uri=host_file.as_uri()),
    )
    # the stream kept only the last line (retention); the store has everything
    await api.deps.js.publish(api.deps.subjects.logs(f"{sid}-validation"), b"stored 2\n")
    logs = f"/api/v1/submissions/{sid}/tasks/validation/logs"
    assert (await api.alice.get(logs)).text == "attempt 1 line\nstored 1\nstored 2 \u00e9\n"
    assert (await api.alice.get(logs, params={"tail": 1})).text == "stored 2 \u00e9\n"
    r = await api.anon.post("/ui/sign-in", data={"token": _secret(api.alice), "next": "/ui/submissions"})
    browser = {"Cookie": r.headers["set-cookie"].split(";")[0]}
    page = await api.anon.get(f"/ui/submissions/{sid}/tasks/validation/log", headers=browser)
    assert page.status_code == 200 and "stored 1" in page.text and "a host file" not in page.text
    task, seen, _ = await follow(api.alice, f"{logs}?follow=true&tail=2")
    await asyncio.wait_for(task, 10)
    assert [e["data"] for e in seen] == ["stored 1", "stored 2 \u00e9", "SUCCEEDED"]


async def test_follow_streams_new_lines_until_the_task_ends(api) -> None:
    sid, base = await _task_with_logs(api)
    task, seen, _ = await follow(api.alice, f"/api/v1/submissions/{sid}/tasks/pi-60/logs?follow=true&tail=2")
    try:
        await until(lambda: len(seen) == 2)
        await api.deps.js.publish(api.deps.subjects.logs(f"{sid}-pi-60"), b"step 4\n")
        await until(lambda: len(seen) == 3)
        await api.record(ev.TaskCancelled(**base))
        await asyncio.wait_for(task, 10)  # the stream ends by itself
        assert seen == [
            {"event": "line", "data": "step 2"},
            {"event": "line", "data": "step 3"},
            {"event": "line", "data": "step 4"},
            {"event": "end", "data": "CANCELLED"},
        ]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_artifacts_are_served_only_from_the_store_under_the_tasks_prefix(api, tmp_path) -> None:
    sid = await api.accepted(api.alice)
    prefix = f"attempts/{sid}/pi-60/attempt-1/"
    await put_bytes(api.deps.objects, f"{prefix}metrics.json", b'{"sharpe": 2.0}')
    await put_bytes(api.deps.objects, f"{prefix}models/model_long.pkl", b"\x80\x04model")
    other = f"attempts/{sid}/pi-15/attempt-1/metrics.json"  # another task's object
    await put_bytes(api.deps.objects, other, b"not this task's")
    outside = tmp_path / "secret.txt"
    outside.write_text("do not serve")
    base = {"aggregate_id": f"{sid}-pi-60", "correlation_id": sid, "submission_id": sid, "task_id": "pi-60"}
    await api.record(
        ev.TaskQueued(**base, spec=ev.TaskSpec(git_url="https://github.com/org/fs.git"), prediction_interval=60),
        ev.TrainingFinished(
            **base,
            attempt=1,
            artifacts={
                "metrics.json": f"{prefix}metrics.json",
                "model_long.pkl": f"{prefix}models/model_long.pkl",
                "leak": outside.as_uri(),
                "path": str(outside),
                "climb": f"{prefix}../../pi-15/attempt-1/metrics.json",
                "other": other,
                "remote": "https://objects.example.com/bucket/model.pkl",
                "gone": f"{prefix}models/gone.pkl",
            },
        ),
    )
    path = f"/api/v1/submissions/{sid}/tasks/pi-60/artifacts"
    r = await api.alice.get(f"{path}/metrics.json")
    assert r.status_code == 200 and r.json() == {"sharpe": 2.0}
    assert (await api.admin.get(f"{path}/model_long.pkl")).content == b"\x80\x04model"
    for name in ("leak", "path", "climb", "other", "remote", "gone", "missing.bin", "..%2F..%2Fsecret.txt"):
        r = await api.alice.get(f"{path}/{name}")
        assert r.status_code == 404 and "location" not in r.headers, name
    r = await api.anon.post("/ui/sign-in", data={"token": _secret(api.alice), "next": "/ui/submissions"})
    browser = {"Cookie": r.headers["set-cookie"].split(";")[0]}
    ui = f"/ui/submissions/{sid}/tasks/pi-60/artifacts"
    assert (await api.anon.get(f"{ui}/metrics.json", headers=browser)).json() == {"sharpe": 2.0}
    assert (await api.anon.get(f"{ui}/remote", headers=browser)).status_code == 404
    assert (await api.bob.get(f"{path}/metrics.json")).status_code == 404


async def test_producers_upload_through_the_api_with_a_grant_and_nothing_else(api) -> None:
    """The embedded store's endpoint: a grant for one attempt writes that attempt only."""
    sid = await api.accepted(api.alice)
    prefix = f"attempts/{sid}/pi-60/attempt-1/"
    grant = api.deps.objects.grant(prefix, 64, 600, datetime.now(UTC))
    auth = {"Authorization": f"Bearer {grant.token}"}
    r = await api.anon.put(f"/objects/{prefix}models/long.json", content=b'{"w": 1}', headers=auth)
    assert r.status_code == 201, r.text
    assert await api.deps.objects.read(f"{prefix}models/long.json") == b'{"w": 1}'
    other = f"/objects/attempts/{sid}/pi-60/attempt-2/x"
    assert (await api.anon.put(other, content=b"x", headers=auth)).status_code == 403
    assert (await api.anon.put(f"/objects/{prefix}big", content=b"x" * 65, headers=auth)).status_code == 413
    assert (await api.anon.put(f"/objects/{prefix}x", content=b"x")).status_code == 401
    # an admin's API token is no grant
    admin = {"Authorization": api.admin.headers["Authorization"]}
    assert (await api.anon.put(f"/objects/{prefix}x", content=b"x", headers=admin)).status_code == 403
