"""A finished training attempt becomes two evaluation rows in the projection store (a real
SQLite file), with the submission's owner and name and the task's trainer ref; a redelivery
writes the same rows again, nothing more."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from touchstone.results.adapters import LocalArtifactStore
from touchstone.results.config import ResultsSettings
from touchstone.results.handlers import REACTIONS, consumer_spec
from touchstone.results.service import bootstrap
from touchstone.shared import events as ev
from touchstone.shared.consumer import ConsumerLoop
from touchstone.shared.evaluations import EvaluationQuery, rows_from_metrics
from touchstone.shared.publisher import EventPublisher
from touchstone.shared.store.sqlite import SqliteStore
from touchstone.shared.subjects import task_aggregate_id


async def test_a_finished_attempt_lands_as_one_row_per_side(rjs: Any, subjects: Any, staged: Any,
                                                             tmp_path: Path) -> None:
    e = staged.event
    pub = EventPublisher(rjs, subjects)
    await pub.append(ev.SubmissionCreated(aggregate_id=e.submission_id, correlation_id=e.submission_id,
                                          owner="alice", name="momentum", git_url="https://git/fs"))
    await pub.append(ev.TaskQueued(
        aggregate_id=task_aggregate_id(e.submission_id, e.task_id), correlation_id=e.submission_id,
        submission_id=e.submission_id, task_id=e.task_id, prediction_interval=60,
        spec=ev.TaskSpec(git_url="https://git/fs", trainer_ref="v1.2", config_file="configs/fast.toml"),
    ))
    table = SqliteStore(tmp_path / "projections.db")
    deps = await bootstrap(ResultsSettings(data_dir=tmp_path), rjs, subjects,
                           store=LocalArtifactStore(tmp_path / "objects"), evaluations=table)
    loop: ConsumerLoop[Any] = ConsumerLoop(rjs, subjects, consumer_spec(subjects), REACTIONS.bind(deps),
                                           ev.decode_event, idle_wait_s=0.2, base_delay_s=0.1)
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    subject = pub.subject_of(e)
    for _ in range(2):
        await rjs.publish(subject, ev.encode_event(e), stream=subjects.events_stream)
    deadline = time.monotonic() + 60
    while loop.processed < 2:
        assert time.monotonic() < deadline, "timed out waiting for both deliveries"
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 30)

    rows = (await table.list_evaluations(EvaluationQuery(sort="roc_auc"))).items
    assert [(r.side, r.metrics["roc_auc"], r.metrics["sharpe"]) for r in rows] == [
        ("long", 0.61, 1.3), ("short", 0.58, -0.2)
    ]
    for r in rows:
        assert (r.owner, r.feature_set, r.trainer_ref) == ("alice", "momentum", "v1.2")
        assert r.config_file == "configs/fast.toml"
        assert (r.submission_id, r.task_id, r.attempt, r.prediction_interval) == (e.submission_id, e.task_id, 1, 60)
        assert r.event_id == e.event_id and r.beats_baseline is None
    await table.close()


def test_rows_keep_the_baseline_comparison_and_drop_what_is_not_a_number() -> None:
    metrics = {
        "prediction_interval": 15,
        "data": {"start": "2024-01-01T00:00:00+00:00", "end": "2024-03-01T00:00:00+00:00"},
        "baseline": {"name": "returns"},
        "long": {
            "roc_auc": 0.7, "warnings": ["x"], "model_kind": "logistic", "Bad-Name": 3.0, "nan": float("nan"),
            "backtest": {"sharpe": 2.0, "trades": 10},
            "vs_baseline": {"roc_auc": {"model": 0.7, "baseline": 0.5, "difference": 0.2, "low": 0.15,
                                        "high": 0.25, "beats": True}},
            "verdict": "beats the baseline on roc_auc",
        },
    }
    from datetime import UTC, datetime

    [row] = rows_from_metrics(metrics, submission_id="s-1", task_id="pi-15", attempt=2,
                              finished_at=datetime(2026, 1, 1, tzinfo=UTC))
    assert row.metrics == {"roc_auc": 0.7, "nan": None, "sharpe": 2.0, "trades": 10.0}
    assert row.prediction_interval == 15 and row.data_start.startswith("2024-01-01")
    assert row.beats_baseline is True and row.baseline_name == "returns"
    assert row.sort_values()["roc_auc_vs_baseline"] == 0.2


def test_hostile_metrics_give_rows_not_errors() -> None:
    from datetime import UTC, datetime

    metrics = {"feature_set": "not a dict", "data": [1, 2], "baseline": "x", "prediction_interval": "15",
               "long": {"roc_auc": "high", "backtest": "none", "vs_baseline": {"roc_auc": "yes", "$where": {}},
                        "verdict": 7, "sharpe": True},
               "short": "nothing"}
    [row] = rows_from_metrics(metrics, submission_id="s-1", task_id="pi-15", attempt=1,
                              finished_at=datetime(2026, 1, 1, tzinfo=UTC))
    assert row.metrics == {} and row.vs_baseline == {} and row.verdict == "" and row.feature_set == ""
    assert row.prediction_interval is None and row.beats_baseline is None
