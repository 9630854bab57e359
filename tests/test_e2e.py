"""The whole path, end to end, against `touchstone up` with its local agent (process runtime):
submit → validate → ACCEPTED or REJECTED; schedule two intervals → both models trained →
COMPLETED; a trainer that fails every time → three attempts, then ERROR with the log snippet."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from touchstone.cli.supervisor import available_services

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "feature-sets"
SETTLED = {"ACCEPTED", "REJECTED", "COMPLETED", "ERROR", "CANCELLED", "RETRACTED"}


def wait_status(api: httpx.Client, sid: str, wanted: set[str], up, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        body = api.get(f"/api/v1/submissions/{sid}").json()
        if body.get("status") in wanted:
            return body
        time.sleep(0.3)
    raise AssertionError(f"{sid} stuck in {body.get('status')}: {body}\n--- up log ---\n{up.tail()}")


def submit(api: httpx.Client, example: str) -> str:
    r = api.post("/api/v1/submissions", json={"git_url": str(EXAMPLES / example), "name": example})
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "VALIDATING"
    return str(r.json()["id"])


def test_submit_validate_schedule_train_complete(make_up) -> None:
    up = make_up(TOUCHSTONE_RETRY_BASE_DELAY_S="0.2", TOUCHSTONE_RETRY_FACTOR="2")
    up.start()
    up.wait_healthy(len(available_services()))
    with up.api() as api:
        good = submit(api, "momentum")
        faulty = submit(api, "lookahead")

        accepted = wait_status(api, good, SETTLED, up)
        assert accepted["status"] == "ACCEPTED", accepted
        assert accepted["validation_report"]["passed"] is True

        rejected = wait_status(api, faulty, SETTLED, up)
        assert rejected["status"] == "REJECTED"
        failed_checks = [c["name"] for c in rejected["validation_report"]["checks"] if c["passed"] is False]
        assert "no_lookahead" in failed_checks or any("look" in c for c in failed_checks), failed_checks

        r = api.post(f"/api/v1/submissions/{good}/schedule",
                     json={"prediction_intervals": [15, 60], "platform": "onprem"})
        assert r.status_code == 202, r.text
        done = wait_status(api, good, SETTLED - {"ACCEPTED"}, up, timeout=300)
        assert done["status"] == "COMPLETED", done
        training = {t["task_id"]: t for t in done["tasks"] if t["task_id"] != "validation"}
        assert set(training) == {"pi-15", "pi-60"}
        for task in training.values():
            assert task["status"] == "SUCCEEDED"
            assert task["platform"] == "onprem" and task["placement"].startswith("local/")
            for side in ("long", "short"):
                metrics = task["metrics"][side]
                assert 0.0 <= metrics["roc_auc"] <= 1.0 and "sharpe" in str(metrics)
            for name in ("long.json", "short.json", "metrics.json"):
                assert name in task["artifacts"]
                got = api.get(f"/api/v1/submissions/{good}/tasks/{task['task_id']}/artifacts/{name}")
                assert got.status_code == 200 and got.content
            log = api.get(f"/api/v1/submissions/{good}/tasks/{task['task_id']}/logs")
            assert log.status_code == 200 and log.text.strip()

        # a trainer that fails every time: an unknown config key is the trainer's own error
        doomed = submit(api, "momentum")
        assert wait_status(api, doomed, SETTLED, up)["status"] == "ACCEPTED"
        r = api.post(f"/api/v1/submissions/{doomed}/schedule",
                     json={"prediction_intervals": [15], "platform": "onprem",
                           "passthrough_args": ["--config_override", "no_such.key=1"]})
        assert r.status_code == 202, r.text
        errored = wait_status(api, doomed, SETTLED - {"ACCEPTED"}, up, timeout=300)
        assert errored["status"] == "ERROR", errored
        (task,) = [t for t in errored["tasks"] if t["task_id"] == "pi-15"]
        assert task["status"] == "ERROR" and task["attempt"] == 3
        assert "no_such.key" in (task.get("log_snippet") or ""), task
    assert up.stop() == 0
