"""The seed's low-balance email, end to end: the RunPod provider sees $42.50 (under the $50
threshold) on the local RunPod and raises the alarm; the results service, run as an operator
runs it, emails it to a real SMTP server (aiosmtpd). A message the results consumer gives up
on is emailed too, and both show in the results service's /metrics."""

from __future__ import annotations

import asyncio
import sys
import threading
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from touchstone.runpod_local import FakeRunpod
from touchstone.runpod_provider.testing import API_KEY
from touchstone.shared.natsserver import free_port

sys.path.insert(0, str(Path(__file__).parent))

from metricskit import ServiceProcess, service_env, value


class Mailbox:
    def __init__(self) -> None:
        self.mails: list[Any] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.mails.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"

    def subjects(self) -> list[str]:
        with self.lock:
            return [str(m["Subject"]).strip() for m in self.mails]


@pytest.fixture
def mailbox() -> Any:
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    box.port = controller.port  # type: ignore[attr-defined]
    yield box
    controller.stop()


async def test_low_balance_and_a_dead_letter_reach_the_mailbox(nats_server, js, subjects, tmp_path, mailbox) -> None:
    base = service_env(nats_server.url, subjects.ns, tmp_path / "data")
    results = ServiceProcess("touchstone.results", {
        **base, "TOUCHSTONE_SMTP_HOST": "127.0.0.1", "TOUCHSTONE_SMTP_PORT": str(mailbox.port),
        "TOUCHSTONE_SMTP_SECURITY": "none", "TOUCHSTONE_ALARM_EMAIL_TO": '["oncall@example.com"]',
        "TOUCHSTONE_DATA_DIR": str(tmp_path / "results")}, tmp_path / "results.log").start()
    async with FakeRunpod(api_key=API_KEY, root=tmp_path / "pods", pod_backend="ssh") as fake:
        fake.faults.balance = 42.5
        provider = ServiceProcess("touchstone.runpod_provider", {
            **base, "TOUCHSTONE_RUNPOD_API_KEY": fake.api_key, "TOUCHSTONE_RUNPOD_BASE_URL": fake.base_url,
            "TOUCHSTONE_RUNPOD_GRAPHQL_URL": fake.graphql_url, "TOUCHSTONE_BALANCE_INTERVAL_S": "0.3",
            "TOUCHSTONE_DATA_DIR": str(tmp_path / "runpod")}, tmp_path / "runpod.log").start()
        try:
            await provider.until(lambda s: value(s, "touchstone_runpod_alarm_active", kind="low_balance") == 1)
            # a TrainingFinished the results service cannot read: it gives up on it at once
            await js.publish(f"{subjects.ns}.evt.task.s-bad-pi-60.TrainingFinished", b'{"type": "TrainingFinished"}',
                             stream=subjects.events_stream)
            seen = await results.until(lambda s: value(
                s, "touchstone_alarm_notifications_total", channel="email", outcome="sent") == 2)
        finally:
            provider.stop()
            results.stop()
    assert value(seen, "touchstone_dead_letters_total", consumer="results") == 1
    assert value(seen, "touchstone_consumer_messages_total", consumer="results", outcome="dead_lettered") == 1
    assert value(seen, "touchstone_consumer_messages_total", consumer="alarms", outcome="acked") >= 1
    for _ in range(20):
        if len(mailbox.subjects()) == 2:
            break
        await asyncio.sleep(0.1)
    titles = sorted(mailbox.subjects())
    gave_up = f"{subjects.durable('results')} dead-lettered a TrainingFinished"
    assert titles == sorted([f"[Touchstone] {subjects.ns}: runpod-provider alarm low_balance",
                             f"[Touchstone] {subjects.ns}: {gave_up}"])
    body = next(m for m in mailbox.mails if "low_balance" in str(m["Subject"])).get_content()
    assert "RunPod balance $42.50" in body
