"""The web UI's rules over plain HTTP (the browser walk-through is tests/test_ui.py at the root):
the session cookie, CSRF, admin pages refused to users, and the Results box of a failed task."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime

import httpx
from touchstone.shared import events as ev
from touchstone.shared.agents import AgentHeartbeat, encode_report
from touchstone.shared.lifecycle import SubmissionStatus, TaskStatus
from touchstone.shared.testing import sample_report
from touchstone.shared.views import SubmissionView, TaskView
from touchstone.submission.ui.session import key_metrics, render

CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


def secret_of(client: httpx.AsyncClient) -> str:
    return client.headers["Authorization"].removeprefix("Bearer ")


async def sign_in(api, secret: str) -> tuple[dict[str, str], str]:
    """The Cookie header of a signed-in browser and its CSRF token (httpx keeps no Secure
    cookies over http://, so the header is carried by hand)."""
    r = await api.anon.post("/ui/sign-in", data={"token": secret, "next": "/ui/submissions"})
    assert r.status_code == 303 and r.headers["location"] == "/ui/submissions", r.text
    cookie = r.headers["set-cookie"]
    attrs = {a.strip().lower() for a in cookie.split(";")}
    assert {"httponly", "secure", "samesite=strict", "path=/ui"} <= attrs, cookie
    headers = {"Cookie": cookie.split(";")[0]}
    page = await api.anon.get("/ui/submissions", headers=headers)
    assert page.status_code == 200
    found = CSRF.search(page.text)
    assert found
    return headers, found.group(1)


async def test_session_cookie_csrf_and_roles(api) -> None:
    r = await api.anon.get("/ui/submissions")
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/sign-in")
    r = await api.anon.post("/ui/sign-in", data={"token": "tst_nope"})
    assert r.status_code == 401 and 'id="token-error"' in r.text
    r = await api.anon.post(
        "/ui/sign-in", data={"token": secret_of(api.alice)}, headers={"Origin": "https://evil.example"}
    )
    assert r.status_code == 403

    alice, csrf = await sign_in(api, secret_of(api.alice))
    # notices come from a fixed list, never from text in the URL
    page = await api.anon.get("/ui/submissions", params={"notice": "Your account is locked"}, headers=alice)
    assert 'id="notice"' not in page.text
    # the cookie is no API credential
    assert (await api.anon.get("/api/v1/submissions", headers=alice)).status_code == 401
    # forms need the session's CSRF token
    form = {"git_url": "https://github.com/org/fs.git", "name": "fs"}
    assert (await api.anon.post("/ui/submissions/new", data=form, headers=alice)).status_code == 403
    r = await api.anon.post("/ui/submissions/new", data={**form, "csrf": "0" * 40}, headers=alice)
    assert r.status_code == 403
    r = await api.anon.post("/ui/submissions/new", data={**form, "git_url": "file:///etc", "csrf": csrf}, headers=alice)
    assert r.status_code == 422 and 'id="e-git_url"' in r.text and "file:// URLs are not allowed" in r.text
    r = await api.anon.post("/ui/submissions/new", data={**form, "csrf": csrf}, headers=alice)
    assert r.status_code == 303
    page = (await api.alice.get("/api/v1/submissions")).json()
    assert [s["name"] for s in page["items"]] == ["fs"]

    # users see no admin controls, and admin pages answer 403
    theirs = await api.submit(api.admin)
    page = await api.anon.get("/ui/submissions", headers=alice)
    assert "/ui/tasks" not in page.text and 'data-action="schedule"' not in page.text
    for path in ("/ui/tasks", "/ui/system", "/ui/tokens", f"/ui/submissions/{theirs}/schedule"):
        assert (await api.anon.get(path, headers=alice)).status_code == 403, path
    for method, path in (("POST", "/ui/system"), ("POST", "/ui/tokens"), ("POST", f"/ui/submissions/{theirs}/cancel")):
        r = await api.anon.request(method, path, data={"csrf": csrf}, headers=alice)
        assert r.status_code == 403, path
    assert (await api.anon.get(f"/ui/submissions/{theirs}/results", headers=alice)).status_code == 404

    admin, admin_csrf = await sign_in(api, secret_of(api.admin))
    for path in ("/ui/tasks", "/ui/system", "/ui/tokens"):
        assert (await api.anon.get(path, headers=admin)).status_code == 200, path
    # System: the servers table keeps what it does not edit (labels); a stale form is refused
    server = {"name": "gpu1", "num_slots": 2, "gpus": ["A100"], "labels": {"room": "b"}}
    assert (await api.admin.patch("/api/v1/system", json={"servers": [server]})).status_code == 200
    page = await api.anon.get("/ui/system", headers=admin)
    found = re.search(r'name="revision" value="(\d+)"', page.text)
    assert found
    form = {
        "csrf": admin_csrf,
        "revision": found.group(1),
        "runpod_max_running_tasks": "3",
        "server_name": ["gpu1", "gpu2"],
        "server_slots": ["4", "1"],
        "server_gpus": ["A100, A100", ""],
    }
    r = await api.anon.post("/ui/system", data=form, headers=admin)
    assert r.status_code == 303, r.text
    system = (await api.admin.get("/api/v1/system")).json()
    assert system["runpod_max_running_tasks"] == 3 and system["scheduler_paused"] is False
    assert system["servers"] == [
        {"name": "gpu1", "num_slots": 4, "gpus": ["A100", "A100"], "labels": {"room": "b"}},
        {"name": "gpu2", "num_slots": 1, "gpus": [], "labels": {}},
    ]
    assert (await api.anon.post("/ui/system", data=form, headers=admin)).status_code == 409

    # a schedule for a submission that is not accepted yet is refused in the dialog
    r = await api.anon.post(
        f"/ui/submissions/{theirs}/schedule", data={"interval": ["15", "x"], "csrf": admin_csrf}, headers=admin
    )
    assert r.status_code == 422 and 'id="e-intervals"' in r.text
    r = await api.anon.post("/ui/sign-out", data={"csrf": admin_csrf}, headers=admin)
    assert r.status_code == 303 and 'touchstone_session=""' in r.headers["set-cookie"]


async def test_system_page_shows_the_runpod_report_to_admins(api) -> None:
    admin, _ = await sign_in(api, secret_of(api.admin))
    page = await api.anon.get("/ui/system", headers=admin)
    assert "RunPod provider not reporting" in page.text
    await api.runpod_reported()
    page = await api.anon.get("/ui/system", headers=admin)
    assert "RunPod provider not reporting" not in page.text
    assert '<dd id="rp-balance">$12.50</dd>' in page.text and "$1.58 per hour" in page.text
    assert '<dd id="rp-pods">2</dd>' in page.text and "below the $20.00 floor" in page.text
    assert 'data-pod="pod-rogue-1"' in page.text and "no task owns it" in page.text
    alice, _ = await sign_in(api, secret_of(api.alice))
    refused = await api.anon.get("/ui/system", headers=alice)
    assert refused.status_code == 403 and "12.50" not in refused.text


async def test_tasks_page_lists_queued_and_running_tasks_with_heartbeat_age(api) -> None:
    sid = await api.accepted(api.alice)
    spec = ev.TaskSpec(git_url="https://github.com/org/fs.git")

    def of(task_id: str) -> dict[str, str]:
        return {"correlation_id": sid, "submission_id": sid, "aggregate_id": f"{sid}-{task_id}", "task_id": task_id}

    await api.record(
        *(ev.TaskQueued(**of(f"pi-{i}"), spec=spec, prediction_interval=i) for i in (5, 15, 60)),
        ev.TaskAssigned(**of("pi-15"), attempt=1, platform="onprem", placement="gpu1/0"),
        ev.ContainerLaunched(**of("pi-15"), attempt=1, container_name=f"touchstone-{sid}-pi-15-1"),
        ev.ContainerReady(**of("pi-15"), attempt=1),
        ev.TrainingStarted(**of("pi-15"), attempt=1),
        ev.TaskAssigned(**of("pi-60"), attempt=1, platform="onprem", placement="gpu1/1"),
        ev.TrainingFinished(**of("pi-60"), attempt=1),
    )
    admin, _ = await sign_in(api, secret_of(api.admin))
    rows = re.compile(r'<tr data-task="[^/]+/([^"]+)" data-status="(\w+)">')

    page = (await api.anon.get("/ui/tasks", headers=admin)).text
    assert rows.findall(page) == [("pi-5", "QUEUED"), ("pi-15", "RUNNING")]  # the finished one is not listed
    assert "gpu1/0" in page and "none heard yet" in page
    heartbeat = AgentHeartbeat(host="gpu1", slots_total=2, slots_free=1, running=(f"touchstone-{sid}-pi-15-1",))
    await api.deps.nc.publish(api.deps.subjects.agent_reports("gpu1"), encode_report(heartbeat))
    await api.until(lambda: _heard(api, f"touchstone-{sid}-pi-15-1"))
    page = (await api.anon.get("/ui/tasks", headers=admin)).text
    cell = re.search(r'<td data-label="Heartbeat" class="heartbeat" data-heartbeat-s="(\d+)">(.*?)</td>', page, re.S)
    assert cell and int(cell.group(1)) < 10 and cell.group(2).strip().endswith("s ago"), page
    # filters: everything, one status, one platform; the fragment the page refreshes with
    page = (await api.anon.get("/ui/tasks", params={"status": "all"}, headers=admin)).text
    assert [t for t, _ in rows.findall(page)] == ["pi-5", "pi-15", "pi-60"]
    page = (await api.anon.get("/ui/tasks", params={"status": "QUEUED"}, headers=admin)).text
    assert rows.findall(page) == [("pi-5", "QUEUED")]
    page = (await api.anon.get("/ui/tasks", params={"platform": "runpod"}, headers=admin)).text
    assert rows.findall(page) == [] and "No tasks match these filters." in page
    fragment = (await api.anon.get("/ui/tasks", params={"fragment": "true"}, headers=admin)).text
    assert fragment.startswith('<tbody id="task-rows">') and len(rows.findall(fragment)) == 2

    # the API's view of the same, one task a page
    seen, cursor = [], None
    while True:
        params = {"unfinished": "true", "limit": "1", **({"cursor": cursor} if cursor else {})}
        body = (await api.admin.get("/api/v1/tasks", params=params)).json()
        seen += [t["task_id"] for t in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert seen == ["pi-5", "pi-15"]
    # with a status: that status if it is an unfinished one (the schema allows the pair)
    r = await api.admin.get("/api/v1/tasks", params={"unfinished": "true", "status": "SUCCEEDED"})
    assert r.status_code == 200 and r.json()["items"] == []
    r = await api.admin.get("/api/v1/tasks", params={"unfinished": "true", "status": "QUEUED"})
    assert r.status_code == 200 and {t["status"] for t in r.json()["items"]} <= {"QUEUED"}


async def _heard(api, container: str) -> bool:
    await asyncio.sleep(0)
    return api.deps.hosts.heartbeat_age(container, datetime.now(UTC)) is not None


def test_results_box_shows_a_failed_tasks_log_snippet() -> None:
    now = datetime.now(UTC)
    sub = SubmissionView(
        id="s-1",
        owner="alice",
        name="fs",
        git_url="https://x/y.git",
        status=SubmissionStatus.ERROR,
        created_at=now,
        updated_at=now,
    )
    task = TaskView(
        submission_id="s-1",
        task_id="pi-15",
        status=TaskStatus.ERROR,
        attempt=3,
        prediction_interval=15,
        queued_at=now,
        phase_since=now,
        updated_at=now,
        error="trainer exited 2",
        failure_class="trainer",
        log_snippet="KeyError: no_such.key <script>",
        metrics={"long": {"roc_auc": 0.61, "sharpe": {"x": 1}}},
    )
    html = render("_results.html", s=sub, tasks=[task], me=None, final=set()).content
    assert "KeyError: no_such.key &lt;script&gt;" in html
    assert 'href="/ui/submissions/s-1/tasks/pi-15/log">Full log' in html
    assert "roc_auc 0.610" in html
    assert key_metrics({"f1": 0.5, "roc_auc": 0.7, "loss": 1.0}) == [("roc_auc", 0.7), ("f1", 0.5), ("loss", 1.0)]


def test_results_box_shows_the_failed_checks_of_a_typed_report() -> None:
    now = datetime.now(UTC)
    report = sample_report(False, detail="the features use future data <script>")
    sub = SubmissionView(id="s-1", owner="alice", name="fs", git_url="https://x/y.git", created_at=now,
                         updated_at=now, status=SubmissionStatus.REJECTED, validation_report=report)
    html = render("_results.html", s=sub, tasks=[], me=None, final=set()).content
    assert "Validation: failed" in html
    assert "no_lookahead: the features use future data &lt;script&gt;" in html
    assert "imports:" not in html  # passed checks are not listed


async def test_system_page_says_which_sandbox_each_agent_uses_and_why_one_refuses_work(api) -> None:
    refusing = AgentHeartbeat(host="gpu7", slots_total=2, slots_free=0, isolation="docker",
                              refusing="runtime=docker, but no Docker engine: socket missing")
    sandboxed = AgentHeartbeat(host="cpu1", slots_total=2, slots_free=2, isolation="bubblewrap")
    for beat in (refusing, sandboxed):
        await api.deps.nc.publish(api.deps.subjects.agent_reports(beat.host), encode_report(beat))
    admin, _ = await sign_in(api, secret_of(api.admin))

    async def shown() -> bool:
        page = (await api.anon.get("/ui/system", headers=admin)).text
        return 'data-host="gpu7"' in page and "bubblewrap" in page

    await api.until(shown)
    page = (await api.anon.get("/ui/system", headers=admin)).text
    row = re.search(r'<tr data-host="gpu7">.*?</tr>', page, re.S)
    assert row and "takes no work" in row.group(0) and "no Docker engine" in row.group(0)
    cpu = re.search(r'<tr data-host="cpu1">.*?</tr>', page, re.S)
    assert cpu and "bubblewrap" in cpu.group(0) and "takes no work" not in cpu.group(0)


async def test_every_page_of_a_dev_instance_says_so_and_that_it_is_paused(api) -> None:
    from touchstone.shared.instance import InstanceKind, init_instance
    from touchstone.shared.jetstream import system_bucket

    banner = 'id="instance-banner"'
    assert banner not in (await api.anon.get("/ui/sign-in")).text  # unrecorded and running: none
    await init_instance(await system_bucket(api.deps.js, api.deps.subjects), api.deps.subjects.ns,
                        InstanceKind.DEV)
    await api.until(lambda: _has(api, "/ui/sign-in", "PAUSED"))
    admin, _ = await sign_in(api, secret_of(api.admin))
    for path in ("/ui/submissions", "/ui/system", "/ui/tasks", "/ui/leaderboard", "/ui/tokens"):
        page = (await api.anon.get(path, headers=admin)).text
        assert banner in page and f"Dev instance {api.deps.subjects.ns}" in page and "PAUSED" in page, path
    # resumed: still a dev instance, no longer paused
    r = await api.admin.patch("/api/v1/system", json={"scheduler_paused": False})
    assert r.status_code == 200, r.text
    await api.until(lambda: _has(api, "/ui/sign-in", "Dev instance", without="PAUSED"))


async def _has(api, path: str, text: str, without: str = "") -> bool:
    page = (await api.anon.get(path)).text
    return text in page and not (without and without in page)
