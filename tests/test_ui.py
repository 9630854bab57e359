"""The web UI in a real browser (Playwright driving Debian's Chromium) against `touchstone up`
with its local agent: an admin signs in, submits, watches validation live, schedules two
intervals, follows the tasks, opens the Results box and a log, changes a system setting and
creates a user token; the user signs in and finds no admin controls, and admin URLs refused.

Each page is saved to docs/screenshots/ (1280x800, PNG) for the README."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

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


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def sign_in(page, base: str, token: str) -> None:
    page.goto(f"{base}/ui/")
    expect(page).to_have_url(re.compile(r"/ui/sign-in"))
    page.fill("#token", token)
    page.click("form[action='/ui/sign-in'] button[type=submit]")
    expect(page).to_have_url(re.compile(r"/ui/submissions$"))


@pytest.mark.timeout(600)
def test_ui_admin_then_user(make_up) -> None:
    up = make_up(TOUCHSTONE_RETRY_BASE_DELAY_S="0.2", TOUCHSTONE_RETRY_FACTOR="2")
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
            page.fill("#f-git_url", str(EXAMPLES / "momentum"))
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

            # Tasks page: both training tasks progress to SUCCEEDED without a reload
            page.goto(f"{base}/ui/tasks")
            page.evaluate("window.__notReloaded = true")
            for interval in (15, 60):
                expect(page.locator(f"tr[data-task='{sid}/pi-{interval}']")).to_be_visible()
            shot(page, "tasks")
            for interval in (15, 60):
                badge = page.locator(f"tr[data-task='{sid}/pi-{interval}'] .badge")
                expect(badge).to_have_text("SUCCEEDED", timeout=300_000)
            assert page.evaluate("window.__notReloaded === true")

            page.click(f"tr[data-task='{sid}/pi-60'] a")
            expect(page.locator("ol.timeline")).to_contain_text("TrainingFinished")
            expect(page.locator("#log")).not_to_be_empty()
            shot(page, "task")

            # Results box and a log
            page.goto(f"{base}/ui/submissions")
            details = page.locator(f"#s-{sid} details")
            details.locator("summary").click()
            results = details.locator("table.results")
            expect(results.locator("tr[data-task='pi-15'] .badge")).to_have_text("SUCCEEDED")
            expect(results.locator("tr[data-task='pi-60'] .metrics")).to_contain_text("roc_auc")
            expect(results.locator("tr[data-task='pi-60'] a", has_text="metrics.json")).to_be_visible()
            shot(page, "results")
            results.locator("tr[data-task='pi-60'] a[data-log]").click()
            expect(page.locator("#log")).not_to_be_empty()
            shot(page, "log")

            # System: a change applies at once and says so
            page.goto(f"{base}/ui/system")
            page.fill("#f-rp", "2")
            page.click("form[action='/ui/system'] button[type=submit]")
            expect(page.locator("#notice")).to_contain_text("at once")
            expect(page.locator("#f-rp")).to_have_value("2")
            assert up.api().get("/api/v1/system").json()["runpod_max_running_tasks"] == 2
            online = page.locator("tr[data-host] .badge", has_text="online")
            for _ in range(30):  # the local agent's heartbeats (every 5 s) since the page first listened
                if online.count():
                    break
                page.wait_for_timeout(1000)
                page.reload()
            expect(online.first).to_be_visible()
            shot(page, "system")

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
            upage.fill("#f-git_url", str(EXAMPLES / "momentum"))
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

            phone = browser.new_context(viewport={"width": 390, "height": 780}, is_mobile=True)
            ppage = phone.new_page()
            sign_in(ppage, base, admin_token)
            expect(ppage.locator(f"#s-{sid}")).to_be_visible()
            shot(ppage, "phone-submissions")
        finally:
            browser.close()
    assert up.stop() == 0
