"""The web UI's rules over plain HTTP (the browser walk-through is tests/test_ui.py at the root):
the session cookie, CSRF, admin pages refused to users, and the Results box of a failed task."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import httpx
from touchstone.shared.lifecycle import SubmissionStatus, TaskStatus
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
