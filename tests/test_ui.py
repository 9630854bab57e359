"""The web UI in a real browser (Playwright driving Debian's Chromium) against `touchstone up`
with its local agent: an admin signs in, submits, watches validation live, schedules two
intervals, follows the queued and running tasks (with a running one's heartbeat), opens the
Results box and a log, changes a system setting, sees the RunPod report written to the system
bucket, and creates a user token; the user signs in and finds no admin controls, and admin URLs
refused; a third user signs in with SSO through a local OIDC provider.

Each page is saved to docs/screenshots/ (1280x800, PNG; System: the whole page) for the README."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import nats
import pytest
import uvicorn
from touchstone.shared.jetstream import system_bucket
from touchstone.shared.natsserver import free_port
from touchstone.shared.subjects import Subjects
from touchstone.shared.system import ReapedPod, RunPodStatus, write_runpod_status
from touchstone.submission.fake_oidc import CLIENT_ID, CLIENT_SECRET, FakeOidcProvider

from touchstone.cli.supervisor import available_services

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "feature-sets"
SHOTS = ROOT / "docs" / "screenshots"

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (uv sync installs it)")
if not Path(CHROMIUM).exists():
    pytest.skip("chromium is not installed (apt-get install -y chromium; .ci/run does it)", allow_module_level=True)

expect = playwright_api.expect
expect.set_options(timeout=30_000)  # a busy two-core CI machine renders slowly


def shot(page, name: str, *, full_page: bool = False) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


@contextlib.contextmanager
def identity_provider() -> Iterator[FakeOidcProvider]:
    """The OIDC provider "Sign in with SSO" goes to, on real HTTP in a thread of this process."""
    port = free_port()
    idp = FakeOidcProvider(url=f"http://127.0.0.1:{port}")
    server = uvicorn.Server(uvicorn.Config(idp.app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="fake-oidc", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the identity provider did not start"
        time.sleep(0.05)
    try:
        yield idp
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextlib.contextmanager
def served_example(name: str, folder: Path) -> Iterator[str]:
    """The example as a git repository on git's plain HTTP protocol, from a thread of this
    process: a real git URL to submit, so the pictures show no path of this machine."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(folder),
        "GIT_AUTHOR_NAME": "Touchstone",
        "GIT_AUTHOR_EMAIL": "touchstone@localhost",
        "GIT_COMMITTER_NAME": "Touchstone",
        "GIT_COMMITTER_EMAIL": "touchstone@localhost",
        "GIT_CONFIG_NOSYSTEM": "1",
    }

    def git(*args: str, cwd: Path) -> None:
        subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)

    work, www = folder / "work", folder / "www"
    shutil.copytree(EXAMPLES / name, work, ignore=shutil.ignore_patterns("__pycache__"))
    git("init", "--quiet", "--initial-branch=main", cwd=work)
    git("add", ".", cwd=work)
    git("commit", "--quiet", "-m", f"{name} feature set", cwd=work)
    www.mkdir()
    git("clone", "--quiet", "--bare", str(work), str(www / f"{name}.git"), cwd=folder)
    git("update-server-info", cwd=www / f"{name}.git")

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(www)))
    thread = threading.Thread(target=server.serve_forever, name="git-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{name}.git"
    finally:
        server.shutdown()
        thread.join(timeout=10)


RUNPOD_REPORT = RunPodStatus(
    updated_at=datetime.now(UTC).isoformat(),
    balance=42.17,
    spend_per_hour=0.79,
    running_pods=1,
    reaped=[
        ReapedPod(
            pod_id="pod-rogue-7",
            name="touchstone-s-old-pi-15-1",
            reaped_at="2026-11-29T09:12:00+00:00",
            cost_per_hr=0.44,
            reason="no task owns it",
        )
    ],
)


def write_runpod_status_via_nats(up, status: RunPodStatus) -> None:
    """Write the report as the RunPod provider does: into the system bucket of `up`'s NATS."""
    state = json.loads((up.data / "up.json").read_text())

    async def write() -> None:
        nc = await nats.connect(state["nats_url"], user="touchstone-operator", password=up.nats_password())
        try:
            kv = await system_bucket(nc.jetstream(), Subjects(state["namespace"]))
            await write_runpod_status(kv, status.model_copy(update={"updated_at": datetime.now(UTC).isoformat()}))
        finally:
            await nc.close()

    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API owns this thread's event loop
        pool.submit(asyncio.run, write()).result(timeout=30)


def drawn(canvases, count: int) -> None:
    """``count`` charts drawn with data (charts.js marks each canvas with its number of points)."""
    expect(canvases).to_have_count(count)
    for i in range(count):
        expect(canvases.nth(i)).to_have_attribute("data-drawn", re.compile(r"^[1-9]\d*$"))


def sign_in(page, base: str, token: str) -> None:
    page.goto(f"{base}/ui/")
    expect(page).to_have_url(re.compile(r"/ui/sign-in"))
    page.fill("#token", token)
    page.click("form[action='/ui/sign-in'] button[type=submit]")
    expect(page).to_have_url(re.compile(r"/ui/submissions$"))


@pytest.mark.timeout(600)
def test_ui_admin_then_user(make_up) -> None:
    with contextlib.ExitStack() as stack:
        walk_through(make_up, stack)


def walk_through(make_up, stack: contextlib.ExitStack) -> None:
    idp = stack.enter_context(identity_provider())
    example = stack.enter_context(served_example("momentum", Path(stack.enter_context(tempfile.TemporaryDirectory()))))
    up = make_up(
        TOUCHSTONE_RETRY_BASE_DELAY_S="0.2",
        TOUCHSTONE_RETRY_FACTOR="2",
        TOUCHSTONE_OIDC_ISSUER=idp.url,
        TOUCHSTONE_OIDC_JWKS_URL=f"{idp.url}/jwks",
        TOUCHSTONE_OIDC_AUDIENCE="touchstone-api",
        TOUCHSTONE_OIDC_CLIENT_ID=CLIENT_ID,
        TOUCHSTONE_OIDC_CLIENT_SECRET=CLIENT_SECRET,
        TOUCHSTONE_TRAINER_DIR=str(ROOT / "trainer"),  # this checkout's trainer: its baseline and curves
    )
    up.start()
    up.wait_healthy(len(available_services()))
    base = f"http://127.0.0.1:{up.api_port}"
    admin_token = up.env["TOUCHSTONE_ADMIN_TOKEN"]
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            admin = browser.new_context(viewport={"width": 1280, "height": 800})
            admin.set_default_timeout(60_000)
            page = admin.new_page()
            page.goto(f"{base}/ui/")
            shot(page, "sign-in")
            page.fill("#token", "tst_not_a_token")
            page.click("form[action='/ui/sign-in'] button[type=submit]")
            expect(page.locator("#token-error")).to_be_visible()
            sign_in(page, base, admin_token)
            expect(page.locator(".empty")).to_contain_text("No submissions yet")

            # New Submission: a refused URL is reported at its field, then a good one goes in
            page.click("[data-action=new]")
            page.fill("#f-git_url", "ext::ssh")
            page.click("dialog button[type=submit]")
            expect(page.locator("#e-git_url")).to_contain_text("not allowed")
            shot(page, "new-submission")
            page.fill("#f-git_url", example)
            page.fill("#f-name", "momentum")
            page.click("dialog button[type=submit]")
            row = page.locator("tbody.sub").first
            sid = row.get_attribute("data-id")
            assert sid
            page.evaluate("window.__notReloaded = true")
            expect(row.locator(".status .badge")).to_have_text("ACCEPTED", timeout=180_000)
            assert page.evaluate("window.__notReloaded === true"), "the status changed by reloading the page"
            shot(page, "submissions")

            # Schedule two intervals on-prem
            page.locator(f"#s-{sid} [data-action=schedule]").click()
            page.locator("#interval-list input").first.fill("15")
            page.click("[data-add-interval]")
            page.locator("#interval-list input").nth(1).fill("60")
            page.select_option("#f-platform", "onprem")
            expect(page.locator("[data-gpu]")).to_be_hidden()
            shot(page, "schedule")
            page.click("dialog button[type=submit]")
            expect(page.locator("#notice")).to_contain_text("Scheduled")

            # Tasks page: the queued and running tasks, with the heartbeat of a running one; they
            # leave the list when they finish, all without a reload; "all" shows them SUCCEEDED
            page.goto(f"{base}/ui/tasks")
            page.evaluate("window.__notReloaded = true")
            expect(page.locator("#t-status")).to_have_value("unfinished")
            rows = page.locator("#task-rows tr[data-task]")
            expect(rows.first).to_be_visible()
            assert set(rows.evaluate_all("rs => rs.map(r => r.dataset.task)")) <= {f"{sid}/pi-15", f"{sid}/pi-60"}
            beating = page.locator("#task-rows tr[data-task] td.heartbeat[data-heartbeat-s]")
            expect(beating.first).to_be_visible(timeout=300_000)
            seen = beating.first.evaluate(
                "td => ({age: td.textContent.trim(), status: td.parentElement.dataset.status,"
                " deployment: td.parentElement.querySelector('[data-label=Deployment]').textContent.trim()})"
            )
            shot(page, "tasks")
            assert re.fullmatch(r"\d+ (s|min) ago", seen["age"]), seen
            assert seen["status"] in ("PROVISIONING", "PREPARING", "RUNNING"), seen
            assert re.match(r"^\S+/\d+", seen["deployment"]), seen  # the agent host and its slot
            expect(page.locator("#task-rows .empty")).to_contain_text("No task is queued or running", timeout=300_000)
            assert page.evaluate("window.__notReloaded === true")
            page.select_option("#t-status", "all")
            page.click("form.filters button[type=submit]")
            for interval in (15, 60):
                badge = page.locator(f"tr[data-task='{sid}/pi-{interval}'] .badge")
                expect(badge).to_have_text("SUCCEEDED")

            page.click(f"tr[data-task='{sid}/pi-60'] a")
            expect(page.locator("ol.timeline")).to_contain_text("TrainingFinished")
            expect(page.locator("#log")).not_to_be_empty()
            drawn(page.locator(".curves canvas"), 4)  # cumulative return and ROC of each side
            shot(page, "task")

            # Results box and a log
            page.goto(f"{base}/ui/submissions")
            details = page.locator(f"#s-{sid} details")
            details.locator("summary").click()
            results = details.locator("table.results")
            expect(results.locator("tr[data-task='pi-15'] .badge")).to_have_text("SUCCEEDED")
            expect(results.locator("tr[data-task='pi-60'] .metrics")).to_contain_text("roc_auc")
            expect(results.locator("tr[data-task='pi-60'] a", has_text="metrics.json")).to_be_visible()
            drawn(details.locator(".curves canvas"), 8)  # two tasks, two sides, two curves
            details.locator(".curves").first.scroll_into_view_if_needed()
            shot(page, "results")
            results.locator("tr[data-task='pi-60'] a[data-log]").click()
            expect(page.locator("#log")).not_to_be_empty()
            shot(page, "log")

            # Evaluations of the submission: each metric by interval, long and short; the leaderboard
            page.goto(f"{base}/ui/submissions/{sid}/evaluations")
            expect(page.locator("table.evaluations tr[data-key]")).to_have_count(4)
            drawn(page.locator("canvas[data-chart]"), 4)
            shot(page, "evaluations")
            page.goto(f"{base}/ui/leaderboard?interval=60&metric=roc_auc")
            expect(page.locator("table.leaderboard tr[data-rank]")).to_have_count(2)
            expect(page.locator("table.leaderboard")).to_contain_text("momentum")
            drawn(page.locator("canvas[data-chart]"), 1)
            shot(page, "leaderboard")
            board = up.api().get("/api/v1/leaderboard", params={"interval": 60}).json()
            assert {e["side"] for e in board["entries"]} == {"long", "short"}
            assert all(e["low"] is not None and e["low"] <= e["difference"] <= e["high"] for e in board["entries"])

            # System: a change applies at once and says so
            page.goto(f"{base}/ui/system")
            page.fill("#f-rp", "2")
            page.click("form[action='/ui/system'] button[type=submit]")
            expect(page.locator("#notice")).to_contain_text("at once")
            expect(page.locator("#f-rp")).to_have_value("2")
            assert up.api().get("/api/v1/system").json()["runpod_max_running_tasks"] == 2
            expect(page.locator("tr[data-host] .badge", has_text="online").first).to_be_visible()
            # RunPod as its provider reports it into the system KV bucket (none runs here: no key)
            expect(page.locator("#runpod")).to_contain_text("RunPod provider not reporting")
            write_runpod_status_via_nats(up, RUNPOD_REPORT)
            page.reload()
            expect(page.locator("#rp-balance")).to_have_text("$42.17")
            expect(page.locator("#rp-spend")).to_have_text("$0.79 per hour")
            expect(page.locator("#rp-launches")).to_contain_text("allowed")
            expect(page.locator("#runpod tr[data-pod='pod-rogue-7']")).to_contain_text("no task owns it")
            shot(page, "system", full_page=True)

            # Tokens: the secret is shown once
            page.goto(f"{base}/ui/tokens")
            page.fill("#f-user", "alice")
            page.click("form[action='/ui/tokens'] button[type=submit]")
            secret = page.locator("#new-secret").input_value()
            assert secret.startswith("tst_")
            shot(page, "tokens")
            page.reload()
            expect(page.locator("#new-secret")).to_have_count(0)

            # the user: no admin controls, admin URLs refused, the cookie is no API credential
            user = browser.new_context(viewport={"width": 1280, "height": 800})
            user.set_default_timeout(60_000)
            upage = user.new_page()
            sign_in(upage, base, secret)
            expect(upage.locator(".empty")).to_contain_text("No submissions yet")
            for link in ("Tasks", "System", "Tokens"):
                expect(upage.locator("header nav").get_by_role("link", name=link)).to_have_count(0)
            upage.click("[data-action=new]")
            upage.fill("#f-git_url", example)
            upage.click("dialog button[type=submit]")
            urow = upage.locator("tbody.sub").first
            expect(urow.locator(".status .badge")).to_have_text(re.compile("ACCEPTED|REJECTED"), timeout=180_000)
            expect(urow.locator("[data-action=delete]")).to_be_visible()
            expect(upage.locator("[data-action=schedule], [data-action=cancel]")).to_have_count(0)
            shot(upage, "user-submissions")
            for path in (
                "/ui/tasks",
                "/ui/system",
                "/ui/tokens",
                f"/ui/tasks/{sid}/pi-15",
                f"/ui/submissions/{sid}/schedule",
                f"/ui/submissions/{sid}/results",
            ):
                got = upage.goto(f"{base}{path}")
                assert got is not None and got.status in (403, 404), (path, got and got.status)
            assert user.request.get(f"{base}/api/v1/submissions").status == 401
            forged = user.request.post(f"{base}/ui/submissions/new", form={"git_url": "https://example.com/r.git"})
            assert forged.status == 403
            upage.goto(f"{base}/ui/submissions")
            upage.click("header .who button[type=submit]")
            expect(upage).to_have_url(re.compile(r"/ui/sign-in"))
            upage.goto(f"{base}/ui/submissions")
            expect(upage).to_have_url(re.compile(r"/ui/sign-in"))

            # Sign in with SSO: to the identity provider and back, ending in the same session cookie
            sso = browser.new_context(viewport={"width": 1280, "height": 800})
            spage = sso.new_page()
            spage.goto(f"{base}/ui/")
            idp.lifetime_s = -3600  # first the provider sends an expired ID token: refused, and said so
            spage.click("#sso")
            expect(spage.locator("#sso-error")).to_contain_text("Signature has expired")
            shot(spage, "sso-refused")
            idp.lifetime_s = 300
            spage.click("#sso")
            expect(spage).to_have_url(re.compile(r"/ui/submissions$"))
            expect(spage.locator("header .who")).to_contain_text("dana")
            expect(spage.locator(".empty")).to_contain_text("No submissions yet")
            expect(spage.locator("header nav").get_by_role("link", name="Tasks")).to_have_count(0)
            session = [c for c in sso.cookies() if c["name"] == "touchstone_session"]
            assert session and session[0]["httpOnly"] and session[0]["secure"], session
            assert session[0]["sameSite"] == "Strict" and session[0]["value"].count(".") == 2  # the ID token
            assert idp.exchanged == 2

            phone = browser.new_context(viewport={"width": 390, "height": 780}, is_mobile=True)
            ppage = phone.new_page()
            sign_in(ppage, base, admin_token)
            expect(ppage.locator(f"#s-{sid}")).to_be_visible()
            shot(ppage, "phone-submissions")
        finally:
            browser.close()
    assert up.stop() == 0
