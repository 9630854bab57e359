"""The service end to end over a real nats-server: events in, objects, ledger records and
webhook messages out. Redeliveries (the same event stored twice) change nothing."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from touchstone.results.adapters import KvLedger, LocalArtifactStore, S3ArtifactStore
from touchstone.results.config import ResultsSettings
from touchstone.results.domain import RunSpec
from touchstone.results.handlers import REACTIONS, Deps, consumer_spec
from touchstone.results.service import artifact_store, bootstrap
from touchstone.results.tracking import TrackedRun
from touchstone.shared import events as ev
from touchstone.shared.consumer import ConsumerLoop
from touchstone.shared.publisher import EventPublisher
from touchstone.shared.subjects import task_aggregate_id
from touchstone.shared.testing import sample_report


async def until(cond: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running(js: Any, subjects: Any, deps: Deps) -> AsyncIterator[ConsumerLoop[Any]]:
    loop: ConsumerLoop[Any] = ConsumerLoop(
        js, subjects, consumer_spec(subjects), REACTIONS.bind(deps), ev.decode_event, idle_wait_s=0.2, base_delay_s=0.1
    )
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    try:
        yield loop
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def deliver_twice(js: Any, subjects: Any, event: ev.Event) -> None:
    """Store the event twice (no message id), as a redelivery would present it again."""
    subject = EventPublisher(js, subjects).subject_of(event)
    for _ in range(2):
        await js.publish(subject, ev.encode_event(event), stream=subjects.events_stream)


def _queued(submission_id: str, task_id: str) -> ev.TaskQueued:
    return ev.TaskQueued(
        aggregate_id=task_aggregate_id(submission_id, task_id), correlation_id=submission_id,
        submission_id=submission_id, task_id=task_id, spec=ev.TaskSpec(git_url="https://git/fs"),
        prediction_interval=60,
    )


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "local":
        return LocalArtifactStore(tmp_path / "objects")
    return request.getfixturevalue("s3_store")


async def test_a_finished_attempt_is_published_once(rjs: Any, subjects: Any, store: Any, staged: Any,
                                                    tmp_path: Path) -> None:
    event = staged.event
    await staged.upload(store)
    await EventPublisher(rjs, subjects).append(_queued(event.submission_id, event.task_id))
    deps = await bootstrap(ResultsSettings(data_dir=tmp_path), rjs, subjects, store=store)
    async with running(rjs, subjects, deps) as loop:
        await deliver_twice(rjs, subjects, event)
        await until(lambda: loop.processed >= 2, "both deliveries")

    s, t = event.submission_id, event.task_id
    prefix = f"attempts/{s}/{t}/attempt-1/"
    record = await (await KvLedger.open(rjs, subjects)).get(f"attempt.{s}.{t}.1")
    assert record is not None and record["event_id"] == event.event_id
    assert record["artifacts"] == {"long.pkl": f"{prefix}models/long.pkl", "short.pkl": f"{prefix}models/short.pkl",
                                   "metrics.json": f"{prefix}metrics.json", "report.json": f"{prefix}report.json"}
    assert record["log_key"] == f"{prefix}console.log"
    assert record["mlflow_run_id"] is None and record["missing"] == []

    history = await EventPublisher(rjs, subjects).load_task(s, t)
    announced = [r.event for r in history if r.event.event_type == "ResultsPublished"]
    assert len(announced) == 1, "a redelivered TrainingFinished announces nothing twice"
    assert announced[0].artifacts == record["artifacts"] and announced[0].log_key == record["log_key"]
    assert announced[0].log_uri is None


async def test_an_object_the_producer_never_uploaded_is_reported(rjs: Any, subjects: Any, staged: Any,
                                                                 tmp_path: Path) -> None:
    deps = await bootstrap(ResultsSettings(data_dir=tmp_path), rjs, subjects)
    await staged.upload(deps.store, skip=("report.json",))
    async with running(rjs, subjects, deps) as loop:
        await deliver_twice(rjs, subjects, staged.event)
        await until(lambda: loop.processed >= 2, "both deliveries")
    e = staged.event
    record = await deps.ledger.get(f"attempt.{e.submission_id}.{e.task_id}.1")
    assert record is not None and record["missing"] == ["report.json"]
    assert set(record["artifacts"]) == {"long.pkl", "short.pkl", "metrics.json"}


async def test_a_failed_attempt_keeps_its_full_log(rjs: Any, subjects: Any, staged: Any, tmp_path: Path) -> None:
    e = staged.event
    failed = ev.TaskFailed(
        aggregate_id=e.aggregate_id, correlation_id=e.submission_id, submission_id=e.submission_id,
        task_id=e.task_id, attempt=1, reason="trainer exited 1", failure_class="trainer",
        log_snippet="epoch 199: loss 0.005", log_key=e.log_key,
    )
    deps = await bootstrap(ResultsSettings(data_dir=tmp_path), rjs, subjects)
    await staged.upload(deps.store)
    async with running(rjs, subjects, deps) as loop:
        await deliver_twice(rjs, subjects, failed)
        await until(lambda: loop.processed >= 2, "both deliveries")
    record = await deps.ledger.get(f"attempt.{e.submission_id}.{e.task_id}.1")
    assert record is not None and record["outcome"] == "failed" and record["log_key"] == e.log_key


def _forged(staged: Any, tmp_path: Path) -> list[ev.TaskEvent]:
    """Events that name a host path, a URL or another attempt's objects."""
    secret = tmp_path / "host-secret.txt"
    secret.write_text("the agent's NATS password")
    e = staged.event
    other = f"attempts/{e.submission_id}/{e.task_id}/attempt-2/models/long.pkl"
    common = dict(aggregate_id=e.aggregate_id, correlation_id=e.submission_id, submission_id=e.submission_id,
                  task_id=e.task_id, attempt=1)
    return [
        e.model_copy(update={"event_id": "path", "artifacts": {"long.pkl": str(secret)}}),
        e.model_copy(update={"event_id": "file", "artifacts": {"long.pkl": secret.as_uri()}}),
        e.model_copy(update={"event_id": "url", "artifacts": {"long.pkl": "https://evil.example/x"}}),
        e.model_copy(update={"event_id": "other", "artifacts": {"long.pkl": other}}),
        e.model_copy(update={"event_id": "climb", "artifacts": {"x": f"{e.log_key}/../../../attempt-2/x"}}),
        e.model_copy(update={"event_id": "logpath", "log_uri": secret.as_uri()}),
        ev.TaskFailed(**common, event_id="failpath", reason="x", log_uri=str(secret)),
        ev.TaskFailed(**common, event_id="failkey", reason="x", log_key="/etc/passwd"),
    ]


async def test_an_event_that_names_a_host_path_or_url_is_refused(rjs: Any, subjects: Any, staged: Any,
                                                                 tmp_path: Path) -> None:
    """Nothing is read from the path, nothing recorded or announced; the event is dead-lettered."""
    deps = await bootstrap(ResultsSettings(data_dir=tmp_path / "results"), rjs, subjects)
    forged = _forged(staged, tmp_path)
    async with running(rjs, subjects, deps) as loop:
        for event in forged:
            await EventPublisher(rjs, subjects).append(event)
        await until(lambda: loop.dead_lettered >= len(forged), "every forged event refused")
    e = staged.event
    assert await deps.ledger.get(f"attempt.{e.submission_id}.{e.task_id}.1") is None
    history = await EventPublisher(rjs, subjects).load_task(e.submission_id, e.task_id)
    assert not [r for r in history if r.event.event_type == "ResultsPublished"]
    objects = tmp_path / "results" / "objects"
    assert not objects.exists() or not [p for p in objects.rglob("*") if p.is_file()]


def _submission(name: str) -> ev.SubmissionCreated:
    sid = f"s-{uuid.uuid4().hex[:8]}"
    return ev.SubmissionCreated(aggregate_id=sid, correlation_id=sid, owner="ana", name=name, git_url="https://g/x")


async def test_one_message_per_submission_ending(rjs: Any, subjects: Any, receiver: Any, tmp_path: Path) -> None:
    publisher = EventPublisher(rjs, subjects)
    done, bad, broken, good = (_submission(n) for n in ("done", "bad", "broken", "good"))
    for created in (done, bad, broken, good):
        await publisher.append(created)
    report = sample_report(False, failing="nan_warmup", detail="NaN at row 70")
    endings: list[ev.Event] = [
        ev.SubmissionCompleted(aggregate_id=done.aggregate_id, correlation_id=done.aggregate_id),
        ev.SubmissionValidated(aggregate_id=bad.aggregate_id, correlation_id=bad.aggregate_id, passed=False,
                               report=report),
        ev.SubmissionFailed(aggregate_id=broken.aggregate_id, correlation_id=broken.aggregate_id,
                            reason="pi-60 failed 3 times"),
        ev.SubmissionValidated(aggregate_id=good.aggregate_id, correlation_id=good.aggregate_id, passed=True),
    ]
    settings = ResultsSettings(data_dir=tmp_path, webhook_url=receiver.url,
                               submission_url_template="https://ts.example/submissions/{submission_id}")
    deps = await bootstrap(settings, rjs, subjects)
    async with running(rjs, subjects, deps) as loop:
        for event in endings:
            await deliver_twice(rjs, subjects, event)
        await until(lambda: loop.processed >= 2 * len(endings), "every delivery")

    texts = sorted(b["text"] for b in receiver.bodies())
    assert len(texts) == 3
    assert texts[0].startswith("*Submission bad") and "nan_warmup: NaN at row 70" in texts[0]
    assert texts[1].startswith("*Submission broken") and "pi-60 failed 3 times" in texts[1]
    assert texts[2].startswith("*Submission done") and f"ts.example/submissions/{done.aggregate_id}" in texts[2]


async def test_a_webhook_that_is_down_gets_the_message_later(rjs: Any, subjects: Any, receiver: Any,
                                                              tmp_path: Path) -> None:
    created = _submission("later")
    await EventPublisher(rjs, subjects).append(created)
    receiver.answer(503, b"busy")
    deps = await bootstrap(ResultsSettings(data_dir=tmp_path, webhook_url=receiver.url, webhook_kind="lark"),
                           rjs, subjects)
    async with running(rjs, subjects, deps) as loop:
        await EventPublisher(rjs, subjects).append(
            ev.SubmissionCompleted(aggregate_id=created.aggregate_id, correlation_id=created.aggregate_id)
        )
        await until(lambda: len(receiver.bodies()) >= 1, "the first try")
        receiver.answer(200, {"code": 0, "msg": "success"})
        await until(lambda: loop.processed >= 1, "the retry to succeed")
    bodies = receiver.bodies()
    assert all(b["msg_type"] == "post" for b in bodies)
    assert await deps.ledger.get(f"notice.{created.aggregate_id}.COMPLETED") is not None
    assert loop.dead_lettered == 0


class RecordingTracker:
    """A full stand-in for MLflow: keeps one run per event id."""

    def __init__(self) -> None:
        self.runs: dict[str, RunSpec] = {}

    async def record(self, spec: RunSpec) -> TrackedRun | None:
        created = spec.event_id not in self.runs
        self.runs.setdefault(spec.event_id, spec)
        return TrackedRun(f"run-{spec.event_id[:6]}", f"http://mlflow/#/runs/{spec.event_id[:6]}", created)


async def test_validation_outputs_are_published_without_a_run(rjs: Any, subjects: Any, stage: Any,
                                                              tmp_path: Path) -> None:
    sid = f"s-{uuid.uuid4().hex[:8]}"
    deps = await bootstrap(ResultsSettings(data_dir=tmp_path), rjs, subjects)
    validation, training = stage(sid, ev.VALIDATION_TASK_ID), stage(sid, "pi-15")
    for staged in (validation, training):
        await staged.upload(deps.store)
    validation, training = validation.event, training.event
    await EventPublisher(rjs, subjects).append(_queued(sid, "pi-15"))
    deps.tracker = tracker = RecordingTracker()
    async with running(rjs, subjects, deps) as loop:
        await deliver_twice(rjs, subjects, validation)
        await deliver_twice(rjs, subjects, training)
        await until(lambda: loop.processed >= 4, "every delivery")
    assert list(tracker.runs) == [training.event_id]
    assert tracker.runs[training.event_id].params["prediction_interval"] == "60"
    assert tracker.runs[training.event_id].tags["artifact.long.pkl"] == deps.store.uri(training.artifacts["long.pkl"])
    record = await deps.ledger.get(f"attempt.{sid}.pi-15.1")
    assert record is not None and record["mlflow_run_url"] == f"http://mlflow/#/runs/{training.event_id[:6]}"
    assert (await deps.ledger.get(f"attempt.{sid}.validation.1") or {}).get("mlflow_run_id") is None


def test_the_settings_choose_the_store(tmp_path: Path) -> None:
    local = artifact_store(ResultsSettings(data_dir=tmp_path))
    assert isinstance(local, LocalArtifactStore) and local.root == (tmp_path / "objects").resolve()
    s3 = artifact_store(ResultsSettings(artifact_store="s3", s3_bucket="bkt", s3_prefix="p/",
                                        s3_endpoint_url="http://127.0.0.1:9"))
    assert isinstance(s3, S3ArtifactStore) and s3.uri("k") == "s3://bkt/p/k"
    with pytest.raises(ValueError, match="s3_bucket"):
        artifact_store(ResultsSettings(artifact_store="s3"))
