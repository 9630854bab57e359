"""The Alertmanager-to-Lark relay, run as an operator runs it, against a local webhook receiver."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from touchstone.shared.natsserver import free_port

NOTIFICATION = {  # Alertmanager's webhook body (version 4), as alerts.yml's rules produce it
    "version": "4", "groupKey": "{}:{alertname=\"TouchstoneRunpodBalanceLow\"}", "truncatedAlerts": 0,
    "status": "firing", "receiver": "oncall", "groupLabels": {"alertname": "TouchstoneRunpodBalanceLow"},
    "commonLabels": {"alertname": "TouchstoneRunpodBalanceLow", "severity": "page"},
    "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
    "alerts": [{
        "status": "firing",
        "labels": {"alertname": "TouchstoneRunpodBalanceLow", "severity": "page", "instance": "rp:9100"},
        "annotations": {"summary": "RunPod balance is $42.50",
                        "runbook": "docs/monitoring.md#touchstonerunpodbalancelow"},
        "startsAt": "2026-06-01T12:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph", "fingerprint": "c0ffee",
    }],
}


@pytest.fixture
def relay(receiver: Any, tmp_path: Any) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "TOUCHSTONE_RELAY_WEBHOOK_URL": receiver.url, "TOUCHSTONE_RELAY_WEBHOOK_KIND": "lark",
           "TOUCHSTONE_RELAY_PORT": str(port), "TOUCHSTONE_RELAY_TIMEOUT_S": "5"}
    log = (tmp_path / "relay.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "touchstone.results.relay"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "relay.log").read_text()
        time.sleep(0.1)
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(10)
    log.close()


def test_an_alertmanager_notification_becomes_a_lark_post(relay: str, receiver: Any) -> None:
    receiver.answer(200, {"code": 0, "msg": "success"})
    response = httpx.post(f"{relay}/alertmanager", json=NOTIFICATION, timeout=10)
    assert response.status_code == 200
    (body,) = receiver.bodies()
    post = body["content"]["post"]["en_us"]
    assert body["msg_type"] == "post"
    assert post["title"] == "FIRING (1): TouchstoneRunpodBalanceLow [page]"
    assert post["content"][0] == [{"tag": "text", "text": "RunPod balance is $42.50"}]


def test_the_relay_tells_alertmanager_to_retry_or_not(relay: str, receiver: Any) -> None:
    receiver.answer(503, b"busy")
    assert httpx.post(f"{relay}/alertmanager", json=NOTIFICATION, timeout=10).status_code == 503
    receiver.answer(200, {"code": 19021, "msg": "sign match fail"})
    assert httpx.post(f"{relay}/alertmanager", json=NOTIFICATION, timeout=10).status_code == 502
    for bad in (b"not json", b'{"status": "exploded", "alerts": []}', b'{"alerts": "x"}'):
        assert httpx.post(f"{relay}/alertmanager", content=bad, timeout=10).status_code == 400
    huge = httpx.post(f"{relay}/alertmanager", content=b"{" + b" " * (2 * 1024 * 1024) + b"}", timeout=10)
    assert huge.status_code == 413
    assert len(receiver.bodies()) == 2  # only the two well-formed notifications were posted
