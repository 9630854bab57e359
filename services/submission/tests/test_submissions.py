"""Submissions over HTTP: create, list, read, schedule, cancel, delete, and the input rules."""

from __future__ import annotations

import pytest
from touchstone.shared import events as ev

SCHEDULE = {"prediction_intervals": [15, 60], "platform": "onprem"}


async def test_create_then_list_then_read(api) -> None:
    r = await api.alice.post(
        "/api/v1/submissions",
        json={"git_url": "git@github.com:org/momentum.git", "git_ref": "v2", "feature_set_path": "fs/momentum"},
    )
    assert r.status_code == 201
    created = r.json()
    assert created["status"] == "VALIDATING" and created["owner"] == "alice" and created["name"] == "momentum"
    sid = created["id"]
    assert sid.startswith("s-") and "." not in sid
    # the caller sees its own write at once, before the projector has caught up
    assert (await api.alice.get(f"/api/v1/submissions/{sid}")).status_code == 200
    await api.caught_up()
    listed = (await api.alice.get("/api/v1/submissions")).json()
    assert [s["id"] for s in listed["items"]] == [sid]
    detail = (await api.alice.get(f"/api/v1/submissions/{sid}")).json()
    assert detail["git_ref"] == "v2" and detail["feature_set_path"] == "fs/momentum" and detail["tasks"] == []
    assert (await api.bob.get("/api/v1/submissions")).json()["items"] == []


async def test_list_pages_newest_first_with_filters(api) -> None:
    ids = [await api.submit(api.alice) for _ in range(5)]
    bobs = await api.submit(api.bob)
    await api.validated(ids[0])
    await api.caught_up()
    first = (await api.alice.get("/api/v1/submissions", params={"limit": 2})).json()
    second = (await api.alice.get("/api/v1/submissions", params={"limit": 2, "cursor": first["next_cursor"]})).json()
    third = (await api.alice.get("/api/v1/submissions", params={"limit": 2, "cursor": second["next_cursor"]})).json()
    seen = [s["id"] for page in (first, second, third) for s in page["items"]]
    assert seen == list(reversed(ids)) and third["next_cursor"] is None
    accepted = (await api.alice.get("/api/v1/submissions", params={"status": "ACCEPTED"})).json()["items"]
    assert [s["id"] for s in accepted] == [ids[0]]
    by_owner = (await api.admin.get("/api/v1/submissions", params={"owner": "bob"})).json()["items"]
    assert [s["id"] for s in by_owner] == [bobs]
    assert len((await api.admin.get("/api/v1/submissions")).json()["items"]) == 6
    for params in ({"cursor": "not-a-cursor"}, {"status": "NOPE"}, {"limit": 0}, {"limit": 1000}):
        r = await api.alice.get("/api/v1/submissions", params=params)
        assert r.status_code == 400, params
        assert r.headers["content-type"].startswith("application/problem+json")


async def test_schedule_cancel_and_delete_follow_the_lifecycle(api) -> None:
    sid = await api.submit(api.alice)
    r = await api.admin.post(f"/api/v1/submissions/{sid}/schedule", json=SCHEDULE)
    assert r.status_code == 409 and "only an ACCEPTED submission" in r.json()["detail"]
    await api.validated(sid)  # stands in for the scheduler's validation
    r = await api.admin.post(
        f"/api/v1/submissions/{sid}/schedule",
        json={
            **SCHEDULE,
            "passthrough_args": "--config_override 'a=b c'",
            "fetched_data_end_to": "2026-01-01T00:00:00",
        },
    )
    assert r.status_code == 202, r.text
    body = r.json()
    assert [t["task_id"] for t in body["tasks"]] == ["pi-15", "pi-60"]
    assert body["submission"]["status"] == "SCHEDULED"
    schedule = body["submission"]["schedule"]
    assert schedule["passthrough_args"] == ["--config_override", "a=b c"]
    assert schedule["fetched_data_end_to"].startswith("2026-01-01T00:00:00") and schedule["platform"] == "onprem"
    assert (await api.admin.post(f"/api/v1/submissions/{sid}/schedule", json=SCHEDULE)).status_code == 409

    history = await api.deps.publisher.load("submission", sid)
    scheduled = history[-1].event
    assert isinstance(scheduled, ev.SubmissionScheduled) and scheduled.scheduled_by == "admin"

    # a scheduled submission is live: its owner cannot delete it
    r = await api.alice.delete(f"/api/v1/submissions/{sid}")
    assert r.status_code == 409 and "must be cancelled" in r.json()["detail"]
    r = await api.admin.post(f"/api/v1/submissions/{sid}/cancel")
    assert r.status_code == 202 and r.json()["cancel_requested"] is True
    assert (await api.admin.post(f"/api/v1/submissions/{sid}/cancel")).status_code == 202  # idempotent
    kinds = [r.event.event_type for r in await api.deps.publisher.load("submission", sid)]
    assert kinds.count("SubmissionCancelRequested") == 1
    # the scheduler finishes the cancellation; then the owner may delete it
    await api.record(ev.SubmissionCancelled(aggregate_id=sid, correlation_id=sid))
    r = await api.alice.delete(f"/api/v1/submissions/{sid}")
    assert r.status_code == 200 and r.json()["status"] == "RETRACTED"
    assert (await api.alice.delete(f"/api/v1/submissions/{sid}")).status_code == 200  # already gone
    assert (await api.admin.post(f"/api/v1/submissions/{sid}/cancel")).status_code == 409


async def test_an_admin_deletes_a_running_submission_by_cancelling_it_first(api) -> None:
    sid = await api.accepted(api.alice)
    assert (await api.admin.post(f"/api/v1/submissions/{sid}/schedule", json=SCHEDULE)).status_code == 202
    await api.record(ev.SubmissionStarted(aggregate_id=sid, correlation_id=sid))
    r = await api.admin.delete(f"/api/v1/submissions/{sid}")
    assert r.status_code == 202 and r.json()["status"] == "RUNNING" and r.json()["cancel_requested"]
    assert (await api.admin.delete(f"/api/v1/submissions/{sid}")).status_code == 202
    # the scheduler cancels the tasks and records the submission cancelled; the retraction follows
    await api.record(ev.SubmissionCancelled(aggregate_id=sid, correlation_id=sid))

    async def retracted() -> bool:
        await api.caught_up()
        return await api.status(sid) == "RETRACTED"

    await api.until(retracted)
    kinds = [r.event.event_type for r in await api.deps.publisher.load("submission", sid)]
    assert kinds[-2:] == ["SubmissionCancelled", "SubmissionRetracted"]


async def test_rejected_submissions_cannot_be_scheduled_but_can_be_deleted(api) -> None:
    sid = await api.submit(api.alice)
    await api.validated(sid, passed=False)
    assert (await api.admin.post(f"/api/v1/submissions/{sid}/schedule", json=SCHEDULE)).status_code == 409
    assert (await api.admin.post(f"/api/v1/submissions/{sid}/cancel")).status_code == 409
    assert (await api.alice.delete(f"/api/v1/submissions/{sid}")).json()["status"] == "RETRACTED"


async def test_detail_lists_tasks_with_links(api) -> None:
    sid = await api.accepted(api.alice)
    spec = ev.TaskSpec(git_url="https://github.com/org/fs.git")
    base = {"correlation_id": sid, "submission_id": sid}
    await api.record(
        ev.TaskQueued(**base, aggregate_id=f"{sid}-pi-60", task_id="pi-60", spec=spec, prediction_interval=60),
        ev.TaskAssigned(
            **base, aggregate_id=f"{sid}-pi-60", task_id="pi-60", attempt=1, platform="onprem", placement="gpu1/0"
        ),
        ev.TrainingFinished(
            **base,
            aggregate_id=f"{sid}-pi-60",
            task_id="pi-60",
            attempt=1,
            metrics={"sharpe": 1.2},
            artifacts={"model_long.pkl": f"attempts/{sid}/pi-60/attempt-1/models/model_long.pkl"},
        ),
    )
    task = (await api.alice.get(f"/api/v1/submissions/{sid}")).json()["tasks"][0]
    assert task["status"] == "SUCCEEDED" and task["placement"] == "gpu1/0" and task["metrics"] == {"sharpe": 1.2}
    assert task["artifact_links"] == {
        "model_long.pkl": f"/api/v1/submissions/{sid}/tasks/pi-60/artifacts/model_long.pkl"
    }
    assert task["log_link"] == f"/api/v1/submissions/{sid}/tasks/pi-60/logs"
    tasks = (await api.admin.get("/api/v1/tasks", params={"submission_id": sid, "status": "SUCCEEDED"})).json()
    assert [t["task_id"] for t in tasks["items"]] == ["pi-60"]
    assert (await api.admin.get("/api/v1/tasks", params={"platform": "runpod"})).json()["items"] == []
    assert (await api.admin.get("/api/v1/tasks", params={"platform": "mars"})).status_code == 400


BAD_SUBMISSIONS = [
    {"git_url": "ext::sh -c 'touch /tmp/x'"},
    {"git_url": "file:///etc/passwd"},
    {"git_url": "/srv/repo"},
    {"git_url": "--upload-pack=touch /tmp/x"},
    {"git_url": "https://user:token@github.com/org/fs.git"},
    {"git_url": "https://127.0.0.1/org/fs.git"},
    {"git_url": "https://169.254.169.254/latest"},
    {"git_url": "https://github.com/org/fs.git", "git_ref": "--output=/tmp/x"},
    {"git_url": "https://github.com/org/fs.git", "git_ref": "a..b"},
    {"git_url": "https://github.com/org/fs.git", "feature_set_path": "../../etc"},
    {"git_url": "https://github.com/org/fs.git", "feature_set_path": "/etc"},
    {"git_url": "https://github.com/org/fs.git", "feature_set_path": "a\u0000b"},
    {"git_url": "https://github.com/org/fs.git", "name": "x" * 121},
    {"git_url": "https://github.com/org/fs.git", "owner": "bob"},
    {"git_url": "https://github.com/org/fs.git", "unknown": 1},
    {"git_url": 42},
    {},
]


async def test_each_bad_submission_is_refused_and_nothing_is_stored(api) -> None:
    before = await api.events_in_stream()
    for body in BAD_SUBMISSIONS:
        r = await api.alice.post("/api/v1/submissions", json=body)
        assert r.status_code == 422, (body, r.status_code, r.text)
        problem = r.json()
        assert problem["status"] == 422 and problem["detail"] and problem["title"] == "Unprocessable Entity"
    assert await api.events_in_stream() == before


BAD_SCHEDULES = [
    {"prediction_intervals": []},
    {"prediction_intervals": [0]},
    {"prediction_intervals": [-60]},
    {"prediction_intervals": [60, 60]},
    {"prediction_intervals": list(range(1, 66))},
    {"prediction_intervals": ["60"]},
    {"prediction_intervals": [True]},
    {"prediction_intervals": [60], "config_file": "../secrets.toml"},
    {"prediction_intervals": [60], "config_file": "/etc/passwd"},
    {"prediction_intervals": [60], "trainer_ref": "-x"},
    {"prediction_intervals": [60], "passthrough_args": ["x"] * 65},
    {"prediction_intervals": [60], "passthrough_args": ["x" * 4097]},
    {"prediction_intervals": [60], "passthrough_args": ["a\u0000b"]},
    {"prediction_intervals": [60], "passthrough_args": "--a 'unbalanced"},
    {"prediction_intervals": [60], "platform": "mars"},
    {"prediction_intervals": [60], "gpu_type": "x; rm -rf /"},
    {"prediction_intervals": [60], "priority": 1000},
    {"prediction_intervals": [60], "shell": "bash"},
]


async def test_each_bad_schedule_is_refused_and_nothing_is_stored(api) -> None:
    sid = await api.accepted(api.alice)
    before = await api.events_in_stream()
    for body in BAD_SCHEDULES:
        r = await api.admin.post(f"/api/v1/submissions/{sid}/schedule", json=body)
        assert r.status_code == 422, (body, r.status_code, r.text)
    assert await api.events_in_stream() == before
    assert await api.status(sid) == "ACCEPTED"


@pytest.mark.parametrize("path", ["/api/v1/submissions", "/api/v1/system", "/api/v1/tokens"])
async def test_bodies_over_64_kib_are_refused_with_413(api, path) -> None:
    big = b'{"git_url": "' + b"a" * 70_000 + b'"}'
    method = "PATCH" if path.endswith("system") else "POST"
    r = await api.admin.request(method, path, content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.headers["content-type"].startswith("application/problem+json")

    async def chunks():
        for _ in range(70):
            yield b" " * 1024

    r = await api.admin.request(method, path, content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


async def test_malformed_json_and_unknown_ids(api) -> None:
    r = await api.alice.post("/api/v1/submissions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code in (400, 422) and r.headers["content-type"].startswith("application/problem+json")
    for path in ("/api/v1/submissions/s-nope", "/api/v1/submissions/a.b", "/api/v1/submissions/s-nope/tasks/x/logs"):
        assert (await api.admin.get(path)).status_code == 404
    assert (
        await api.admin.post("/api/v1/submissions/s-nope/schedule", json={"prediction_intervals": [1]})
    ).status_code == 404
    assert (await api.admin.delete("/api/v1/submissions/s-nope")).status_code == 404
    assert (await api.admin.put("/api/v1/submissions")).status_code == 405


async def test_local_sources_only_when_the_setting_is_on(api) -> None:
    assert (await api.alice.post("/api/v1/submissions", json={"git_url": "/srv/fs"})).status_code == 422
    api.deps.commands.policy = api.deps.commands.policy.__class__(allow_local=True)
    r = await api.alice.post("/api/v1/submissions", json={"git_url": "/srv/fs"})
    assert r.status_code == 201 and r.json()["name"] == "fs"
    assert (await api.alice.post("/api/v1/submissions", json={"git_url": "file:///srv/fs"})).status_code == 422
