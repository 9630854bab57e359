"""The role matrix: every endpoint by {anonymous, user A (alice), user B (bob), admin}."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from touchstone.shared import events as ev
from touchstone.shared.objects.testing import put_bytes

ROLES = ("anon", "alice", "bob", "admin")
SCHEDULE = {"prediction_intervals": [60]}


@dataclass
class Case:
    name: str
    method: str
    path: Callable[[str], Awaitable[str]]  # role -> path (may create what the request needs)
    expected: tuple[int, int, int, int]  # anon, alice, bob, admin
    body: dict[str, Any] | None = None


async def status_of(client: httpx.AsyncClient, method: str, path: str, body: dict[str, Any] | None) -> int:
    async with client.stream(method, path, json=body) as r:
        return r.status_code


async def test_every_endpoint_for_every_role(api) -> None:
    # alice's submission, accepted, with a finished validation task, its log and an artifact
    a = await api.accepted(api.alice)
    spec = ev.TaskSpec(git_url="https://github.com/org/fs.git")
    base = {"aggregate_id": f"{a}-validation", "correlation_id": a, "submission_id": a, "task_id": "validation"}
    artifact = f"attempts/{a}/validation/attempt-1/metrics.json"
    await put_bytes(api.deps.objects, artifact, b'{"sharpe": 1.5}')
    await api.record(
        ev.TaskQueued(**base, kind="validation", spec=spec),
        ev.TrainingFinished(**base, attempt=1, artifacts={"metrics.json": artifact}),
    )
    await api.deps.js.publish(api.deps.subjects.logs(f"{a}-validation"), b"validating...\nok\n")

    async def fixed(path: str) -> Callable[[str], Awaitable[str]]:
        async def get(_: str) -> str:
            return path

        return get

    async def fresh_accepted(role: str) -> str:
        return f"/api/v1/submissions/{await api.accepted(api.alice)}"

    async def fresh_scheduled(role: str) -> str:
        sid = await api.accepted(api.alice)
        r = await api.admin.post(f"/api/v1/submissions/{sid}/schedule", json=SCHEDULE)
        assert r.status_code == 202, r.text
        return f"/api/v1/submissions/{sid}"

    async def fresh_token(role: str) -> str:
        r = await api.admin.post("/api/v1/tokens", json={"user": f"tmp-{role}"})
        return f"/api/v1/tokens/{r.json()['id']}"

    async def then(make: Callable[[str], Awaitable[str]], suffix: str) -> Callable[[str], Awaitable[str]]:
        async def get(role: str) -> str:
            return await make(role) + suffix

        return get

    task = f"/api/v1/submissions/{a}/tasks/validation"
    user_only = (401, 200, 200, 200)
    owner_only = (401, 200, 404, 200)
    admin_only = (401, 403, 403, 200)
    anyone = (200, 200, 200, 200)
    cases = [
        Case(
            "create",
            "POST",
            await fixed("/api/v1/submissions"),
            (401, 201, 201, 201),
            {"git_url": "https://github.com/org/fs.git"},
        ),
        Case("list", "GET", await fixed("/api/v1/submissions"), user_only),
        Case("get", "GET", await fixed(f"/api/v1/submissions/{a}"), owner_only),
        Case("logs", "GET", await fixed(f"{task}/logs"), owner_only),
        Case("logs follow", "GET", await fixed(f"{task}/logs?follow=true"), owner_only),
        Case("artifact", "GET", await fixed(f"{task}/artifacts/metrics.json"), owner_only),
        Case("schedule", "POST", await then(fresh_accepted, "/schedule"), (401, 403, 403, 202), SCHEDULE),
        Case("cancel", "POST", await then(fresh_scheduled, "/cancel"), (401, 403, 403, 202)),
        Case("delete", "DELETE", fresh_accepted, owner_only),
        Case("tasks", "GET", await fixed("/api/v1/tasks"), admin_only),
        Case("system", "GET", await fixed("/api/v1/system"), admin_only),
        Case("system patch", "PATCH", await fixed("/api/v1/system"), admin_only, {"scheduler_paused": False}),
        Case("runpod status", "GET", await fixed("/api/v1/system/runpod"), admin_only),
        Case("gpu types", "GET", await fixed("/api/v1/gpu-types"), admin_only),
        Case("token create", "POST", await fixed("/api/v1/tokens"), (401, 403, 403, 201), {"user": "carol"}),
        Case("token list", "GET", await fixed("/api/v1/tokens"), admin_only),
        Case("token revoke", "DELETE", fresh_token, admin_only),
        Case("events", "GET", await fixed("/api/v1/events"), user_only),
        Case("healthz", "GET", await fixed("/healthz"), anyone),
        Case("readyz", "GET", await fixed("/readyz"), anyone),
        Case("metrics", "GET", await fixed("/metrics"), anyone),
        Case("openapi", "GET", await fixed("/schema/openapi.json"), anyone),
    ]
    clients = {"anon": api.anon, "alice": api.alice, "bob": api.bob, "admin": api.admin}
    wrong = []
    for case in cases:
        for role, expected in zip(ROLES, case.expected, strict=True):
            path = await case.path(role)
            got = await status_of(clients[role], case.method, path, case.body)
            if got != expected:
                wrong.append(f"{case.name} as {role}: {case.method} {path} -> {got}, expected {expected}")
    assert not wrong, "\n".join(wrong)

    # bob never saw, followed, downloaded or retracted alice's things
    await api.caught_up()
    listed = (await api.bob.get("/api/v1/submissions", params={"limit": 200})).json()["items"]
    assert listed and all(item["owner"] == "bob" for item in listed)
    forced = (await api.bob.get("/api/v1/submissions", params={"owner": "alice"})).json()["items"]
    assert all(item["owner"] == "bob" for item in forced)
    assert await api.status(a) == "ACCEPTED"
    assert (await api.bob.delete(f"/api/v1/submissions/{a}")).status_code == 404
    assert await api.status(a) == "ACCEPTED"


async def test_a_user_sees_404_not_403_for_someone_elses_submission(api) -> None:
    a = await api.submit(api.alice)
    for path in (
        f"/api/v1/submissions/{a}",
        f"/api/v1/submissions/{a}/tasks/validation/logs",
        f"/api/v1/submissions/{a}/tasks/validation/artifacts/x",
    ):
        r = await api.bob.get(path)
        assert r.status_code == 404
        assert r.headers["content-type"].startswith("application/problem+json")
    missing = (await api.bob.get("/api/v1/submissions/s-doesnotexist")).json()["detail"]
    hidden = (await api.bob.get(f"/api/v1/submissions/{a}")).json()["detail"]
    assert missing.replace("s-doesnotexist", a) == hidden
