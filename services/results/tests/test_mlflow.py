"""MLflow against a real ``mlflow server`` process (sqlite backend in a temporary folder),
started once for this module: one run per task attempt, found again on redelivery."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from touchstone.results.config import ResultsSettings
from touchstone.results.domain import RunSpec
from touchstone.results.handlers import REACTIONS, consumer_spec
from touchstone.results.service import bootstrap
from touchstone.results.tracking import MlflowTracker
from touchstone.shared import events as ev
from touchstone.shared.consumer import ConsumerLoop
from touchstone.shared.errors import UnavailableError
from touchstone.shared.publisher import EventPublisher

pytestmark = [pytest.mark.mlflow, pytest.mark.integration]  # a real mlflow server

STARTUP_TIMEOUT_S = 300.0  # ≈ 11 s on an idle machine; far longer on a busy 2-core one


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def mlflow_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if importlib.util.find_spec("mlflow.server") is None or importlib.util.find_spec("sqlalchemy") is None:
        pytest.skip("the full `mlflow` package (results' dev group) is not installed: no `mlflow server`")
    root = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    log_file = (root / "server.log").open("wb")
    env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--default-artifact-root", str(root / "art")],
        stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited {proc.returncode}:\n{(root / 'server.log').read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server not healthy after {STARTUP_TIMEOUT_S:.0f} s")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and the workers it started, nothing else
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log_file.close()


def _spec(event_id: str) -> RunSpec:
    return RunSpec(
        name="s1/pi-60/attempt-1", event_id=event_id,
        params={"submission_id": "s1", "task_id": "pi-60", "prediction_interval": "60", "trainer_ref": "main"},
        metrics={"long.roc_auc": 0.61, "short.roc_auc": 0.58},
        tags={"artifact.long.pkl": "s3://b/models/s1/pi-60/attempt-1/models/long.pkl"},
    )


async def test_record_makes_one_finished_run_and_finds_it_again(mlflow_url: str) -> None:
    tracker = MlflowTracker(mlflow_url, f"exp-{uuid.uuid4().hex[:8]}", timeout_s=20, max_retries=0)
    event_id = uuid.uuid4().hex
    first = await tracker.record(_spec(event_id))
    second = await tracker.record(_spec(event_id))
    assert first is not None and second is not None
    assert first.created and not second.created
    assert first.run_id == second.run_id
    assert first.url and first.url.startswith(f"{mlflow_url}/#/experiments/") and first.url.endswith(first.run_id)
    run = await asyncio.to_thread(tracker.find, event_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["prediction_interval"] == "60"
    assert run.data.metrics == {"long.roc_auc": 0.61, "short.roc_auc": 0.58}
    assert run.data.tags["artifact.long.pkl"].startswith("s3://")


async def test_an_unfinished_run_is_completed_not_duplicated(mlflow_url: str) -> None:
    tracker = MlflowTracker(mlflow_url, f"exp-{uuid.uuid4().hex[:8]}", timeout_s=20, max_retries=0)
    event_id = uuid.uuid4().hex

    def crash_after_create() -> str:  # what a crash between create_run and log_batch leaves
        client = tracker._client_()
        return str(client.create_run(tracker._experiment(), tags={"touchstone.event_id": event_id}).info.run_id)

    run_id = await asyncio.to_thread(crash_after_create)
    again = await tracker.record(_spec(event_id))
    assert again is not None and again.run_id == run_id and not again.created
    run = await asyncio.to_thread(tracker.find, event_id)
    assert run.info.status == "FINISHED" and run.data.metrics["long.roc_auc"] == 0.61


async def test_unreachable_tracking_server_is_retryable() -> None:
    tracker = MlflowTracker(f"http://127.0.0.1:{_free_port()}", "x", timeout_s=2, max_retries=0)
    with pytest.raises(UnavailableError):
        await tracker.record(_spec("e"))


async def test_redelivered_training_finished_makes_one_run(
    mlflow_url: str, rjs: Any, subjects: Any, staged: Any, tmp_path: Path
) -> None:
    event = staged.event
    publisher = EventPublisher(rjs, subjects)
    await publisher.append(ev.TaskQueued(
        aggregate_id=event.aggregate_id, correlation_id=event.submission_id, submission_id=event.submission_id,
        task_id=event.task_id, spec=ev.TaskSpec(git_url="https://git/fs", trainer_ref="v2", config_file="c.toml"),
        prediction_interval=60,
    ))
    experiment = f"touchstone_service_{uuid.uuid4().hex[:6]}"
    settings = ResultsSettings(data_dir=tmp_path, mlflow_tracking_uri=mlflow_url, mlflow_experiment=experiment,
                               mlflow_max_retries=0)
    deps = await bootstrap(settings, rjs, subjects)
    await staged.upload(deps.store)
    loop: ConsumerLoop[Any] = ConsumerLoop(rjs, subjects, consumer_spec(subjects), REACTIONS.bind(deps),
                                           ev.decode_event, idle_wait_s=0.2, base_delay_s=0.1)
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    try:
        for _ in range(2):  # the same event stored twice, as a redelivery presents it
            await rjs.publish(publisher.subject_of(event), ev.encode_event(event), stream=subjects.events_stream)
        deadline = time.monotonic() + 120
        while loop.processed < 2:
            assert time.monotonic() < deadline, "timed out waiting for both deliveries"
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)

    assert loop.dead_lettered == 0
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_url)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.run_name == f"{event.submission_id}/{event.task_id}/attempt-1"
    assert run.data.params["trainer_ref"] == "v2" and run.data.params["config_file"] == "c.toml"
    assert run.data.params["prediction_interval"] == "60"
    assert run.data.metrics["long.backtest.sharpe"] == 1.3 and run.data.metrics["short.roc_auc"] == 0.58
    assert run.data.tags["log"] == deps.store.uri(event.log_key or "")
    assert run.data.tags["artifact.long.pkl"].endswith("/models/long.pkl")
    record = await deps.ledger.get(f"attempt.{event.submission_id}.{event.task_id}.1")
    assert record is not None and record["mlflow_run_id"] == run.info.run_id
    assert record["mlflow_run_url"].endswith(run.info.run_id)
