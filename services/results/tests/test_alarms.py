"""Alarms reach people: AlarmRaised events and dead letters go to a real local webhook receiver
and by email to a real SMTP server (aiosmtpd), held back within the repeat interval, and a
failing channel never holds another back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from touchstone.results import alarms
from touchstone.results.alarms import Alarm, AlarmDeps, AlarmLedger, Channel, SentRecord, decide
from touchstone.results.config import ResultsSettings
from touchstone.results.service import alarm_channels, alarm_deps
from touchstone.shared import events as ev
from touchstone.shared.consumer import ConsumerLoop, ConsumerSpec
from touchstone.shared.errors import PermanentError
from touchstone.shared.publisher import EventPublisher
from touchstone.shared.subjects import Bucket
from touchstone.shared.testing import queued, task_event

WAIT_S = 20.0


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def settings(subjects: Any, receiver: Any, smtp: Any, **kw: Any) -> ResultsSettings:
    values: dict[str, Any] = {
        "namespace": subjects.ns, "alarm_webhook_urls": [receiver.url], "smtp_host": smtp.host,
        "smtp_port": smtp.port, "smtp_security": "none", "alarm_email_to": ["oncall@example.com", "ops@example.com"],
        "alarm_email_from": "touchstone@example.com", "webhook_timeout_s": 5, "smtp_timeout_s": 5,
    }
    return ResultsSettings(**{**values, **kw})


@contextlib.asynccontextmanager
async def running(js: Any, subjects: Any, deps: AlarmDeps) -> AsyncIterator[None]:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(loop.run(stop)) for loop in alarms.consumers(js, subjects, deps, ack_wait_s=10)]
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 15)
        with contextlib.suppress(Exception):
            await js.delete_key_value(subjects.bucket(Bucket.ALARMS))


async def eventually(check: Any, within: float = WAIT_S) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


def alarm(kind: str = "low_balance", message: str = "RunPod balance $42.50") -> ev.AlarmRaised:
    return ev.AlarmRaised(aggregate_id="runpod", correlation_id="runpod", kind=kind, message=message,
                          service="runpod-provider")


async def test_the_low_balance_alarm_reaches_the_webhook_and_the_mailboxes(js, subjects, receiver, smtp_server):
    deps = await alarm_deps(settings(subjects, receiver, smtp_server), js, subjects)
    async with running(js, subjects, deps):
        await EventPublisher(js, subjects).append(alarm())
        await eventually(lambda: receiver.bodies() and smtp_server.received())
        await asyncio.sleep(0.5)  # nothing more comes
    (body,) = receiver.bodies()
    assert body["text"].startswith(f"*{subjects.ns}: runpod-provider alarm low_balance*")
    assert "RunPod balance $42.50" in body["text"]
    ((recipients, mail),) = smtp_server.received()
    assert recipients == ("oncall@example.com", "ops@example.com")
    assert mail["Subject"].strip() == f"[Touchstone] {subjects.ns}: runpod-provider alarm low_balance"
    assert mail["From"] == "touchstone@example.com"
    assert "RunPod balance $42.50" in mail.get_content()


async def test_lark_webhooks_get_lark_bodies() -> None:
    s = ResultsSettings(alarm_webhook_urls=["https://open.larksuite.com/open-apis/bot/v2/hook/x",
                                            "https://hooks.slack.com/services/T/B/X"])
    kinds = [c.sender.kind for c in alarm_channels(s)]  # type: ignore[attr-defined]
    assert kinds == ["lark", "slack"]


async def test_the_same_alarm_is_held_back_within_the_repeat_interval_then_sent_with_a_count(
        js, subjects, receiver, smtp_server):
    clock = Clock()
    deps = await alarm_deps(settings(subjects, receiver, smtp_server, alarm_repeat_interval_s=3600), js, subjects)
    deps.clock = clock
    pub = EventPublisher(js, subjects)
    async with running(js, subjects, deps):
        for dollars in ("42.50", "41.00", "40.25"):
            await pub.append(alarm(message=f"RunPod balance ${dollars}"))
        await pub.append(alarm(kind="api_key_rejected", message="RunPod rejected the API key"))
        await eventually(lambda: len(smtp_server.received()) == 2)
        await asyncio.sleep(1.0)
        assert len(smtp_server.received()) == 2 and len(receiver.bodies()) == 2  # one per kind

        clock.now += timedelta(hours=1, seconds=1)
        await pub.append(alarm(message="RunPod balance $12.00"))
        await eventually(lambda: len(smtp_server.received()) == 3)
    subjects_sent = [m["Subject"] for _, m in smtp_server.received()]
    assert sum("low_balance" in s for s in subjects_sent) == 2
    last = smtp_server.received()[-1][1].get_content()
    assert "RunPod balance $12.00" in last and "2 more like this were held back since" in last
    assert "2 more like this" in receiver.bodies()[-1]["text"]


async def test_a_failing_webhook_does_not_hold_the_email_back_and_is_retried_alone(
        js, subjects, receiver, smtp_server):
    receiver.answer(503, b"down for maintenance")
    deps = await alarm_deps(settings(subjects, receiver, smtp_server), js, subjects)
    async with running(js, subjects, deps):
        await EventPublisher(js, subjects).append(alarm())
        await eventually(lambda: smtp_server.received() and receiver.bodies())
        assert len(smtp_server.received()) == 1  # the email went out while the webhook failed
        receiver.answer(200, b"ok")
        await eventually(lambda: len(receiver.bodies()) >= 2)
        await asyncio.sleep(1.5)  # no further retry once the webhook took it
    assert len(receiver.bodies()) == 2
    assert len(smtp_server.received()) == 1  # the retry went to the webhook only


async def test_a_webhook_that_refuses_for_good_is_given_up_and_email_still_goes(js, subjects, receiver, smtp_server):
    receiver.answer(404, b"no such hook")
    deps = await alarm_deps(settings(subjects, receiver, smtp_server), js, subjects)
    async with running(js, subjects, deps):
        await EventPublisher(js, subjects).append(alarm())
        await eventually(lambda: smtp_server.received() and receiver.bodies())
        await asyncio.sleep(1.5)
        record, _ = await AlarmLedger(await js.key_value(subjects.bucket(Bucket.ALARMS))).get(
            "alarm|runpod-provider|low_balance")
    assert len(receiver.bodies()) == 1 and len(smtp_server.received()) == 1
    assert record is not None and (record.delivered, record.given_up) == (("email",), ("webhook-1",))


async def test_a_dead_letter_is_announced_with_its_reason_and_held_back_when_it_repeats(
        js, subjects, receiver, smtp_server):
    async def refuse(event: Any, delivery: Any) -> None:
        raise PermanentError(f"cannot publish {event.task_id}: bucket policy denies PutObject")

    spec = ConsumerSpec(name="flaky", stream=subjects.events_stream,
                        filter_subjects=[f"{subjects.ns}.evt.task.*.TaskFailed"])
    flaky = ConsumerLoop(js, subjects, spec, {"TaskFailed": refuse}, ev.decode_event)
    pub = EventPublisher(js, subjects)
    deps = await alarm_deps(settings(subjects, receiver, smtp_server), js, subjects)
    stop = asyncio.Event()
    runner = asyncio.create_task(flaky.run(stop))
    try:
        async with running(js, subjects, deps):
            for tid in ("pi-15", "pi-60"):
                await pub.append(queued("s-dl", tid))
                await pub.append(task_event(ev.TaskFailed, "s-dl", tid, attempt=1, reason="pod lost"))
            await eventually(lambda: flaky.dead_lettered == 2 and smtp_server.received())
            await asyncio.sleep(1.0)
    finally:
        stop.set()
        await asyncio.wait_for(runner, 10)
    ((_, mail),) = smtp_server.received()  # the second of the same consumer and type is held back
    assert mail["Subject"].endswith(f"{subjects.durable('flaky')} dead-lettered a TaskFailed")
    text = mail.get_content()
    assert "bucket policy denies PutObject" in text and f"{subjects.ns}.evt.task.s-dl-pi-15.TaskFailed" in text
    assert len(receiver.bodies()) == 1


async def test_dead_letters_of_the_alarm_consumers_themselves_are_not_announced(js, subjects, receiver, smtp_server):
    deps = await alarm_deps(settings(subjects, receiver, smtp_server), js, subjects)
    async with running(js, subjects, deps):
        own = subjects.durable(alarms.EVENTS_CONSUMER)
        await js.publish(subjects.dead_letter(alarms.EVENTS_CONSUMER), b"{}", stream=subjects.dead_letter_stream,
                         headers={"Touchstone-Consumer": own, "Touchstone-Reason": "every channel failed",
                                  "Touchstone-Original-Subject": f"{subjects.ns}.evt.platform.runpod.AlarmRaised"})
        await js.publish(subjects.dead_letter("results"), b"not json", stream=subjects.dead_letter_stream,
                         headers={"Touchstone-Consumer": subjects.durable("results"),
                                  "Touchstone-Reason": "malformed payload: body",
                                  "Touchstone-Original-Subject": f"{subjects.ns}.evt.task.s-x-pi-15.TrainingFinished"})
        await eventually(lambda: smtp_server.received())
        await asyncio.sleep(1.0)
    ((_, mail),) = smtp_server.received()
    assert "dead-lettered a TrainingFinished" in mail["Subject"]


# --- the decision, without I/O ------------------------------------------------------------

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
HOUR, DAY = timedelta(hours=1), timedelta(days=1)


def an_alarm(id_: str, at: datetime = T0) -> Alarm:
    return Alarm(id=id_, fingerprint="alarm|runpod-provider|low_balance", title="t", lines=("l",), occurred_at=at)


def test_decide_sends_the_first_holds_the_next_and_sends_after_the_interval() -> None:
    first = decide(None, an_alarm("a"), ["webhook-1", "email"], T0, HOUR, DAY)
    assert (first.action, first.channels, first.held_before) == ("send", ("webhook-1", "email"), 0)
    sent = first.record.model_copy(update={"delivered": ("webhook-1", "email")})
    held = decide(sent, an_alarm("b"), ["webhook-1", "email"], T0 + timedelta(minutes=5), HOUR, DAY)
    assert held.action == "hold" and held.record.held_back == 1
    again = decide(held.record, an_alarm("c", T0 + HOUR), ["webhook-1", "email"], T0 + HOUR, HOUR, DAY)
    assert (again.action, again.held_before, again.record.alarm_id, again.record.held_back) == ("send", 1, "c", 0)


def test_decide_finishes_a_redelivered_alarm_on_the_channels_left_only() -> None:
    record = SentRecord(fingerprint="f", alarm_id="a", sent_at=T0, delivered=("email",), given_up=("webhook-2",))
    left = decide(record, an_alarm("a"), ["webhook-1", "webhook-2", "email"], T0 + HOUR * 5, HOUR, DAY)
    assert (left.action, left.channels) == ("send", ("webhook-1",))
    done = decide(record, an_alarm("a"), ["webhook-2", "email"], T0, HOUR, DAY)
    assert done.action == "done"


def test_decide_drops_alarms_older_than_the_max_age() -> None:
    assert decide(None, an_alarm("a", T0 - timedelta(days=2)), ["email"], T0, HOUR, DAY).action == "stale"


@pytest.mark.parametrize("title", ["balance\r\nBcc: victim@example.com", "x\nSubject: forged"])
def test_an_alarm_title_cannot_inject_mail_headers(title: str) -> None:
    from touchstone.results.mail import SmtpMailer

    mail = SmtpMailer("h", 25, sender="a@example.com", recipients=["b@example.com"]).compose(
        Alarm(id="a", fingerprint="f", title=title, lines=("x",), occurred_at=T0))
    assert "Bcc" not in mail and mail["Subject"].count("\n") == 0 and len(mail.get_all("Subject")) == 1


def test_channels_follow_the_settings() -> None:
    assert alarm_channels(ResultsSettings()) == ()
    s = ResultsSettings(smtp_host="mail", alarm_email_to=["a@example.com"], alarm_webhook_urls=["https://x/1"])
    assert [c.name for c in alarm_channels(s)] == ["webhook-1", "email"]
    assert s.alarms_enabled and not ResultsSettings(smtp_host="mail").alarms_enabled
    assert isinstance(alarm_channels(s)[0], Channel)
