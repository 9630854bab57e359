"""The leaderboard, decided without I/O: for one interval and one metric, each submission's
latest evaluated attempt per side, ranked by its difference from the baseline.

A row whose interval lies wholly above zero "beats the baseline"; rows without a comparison
for the metric (a trainer that ran no baseline) rank after every compared row.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field
from touchstone.shared.evaluations import Evaluation


class LeaderboardEntry(BaseModel):
    rank: int
    submission_id: str
    feature_set: str
    owner: str
    side: str
    task_id: str
    attempt: int
    prediction_interval: int | None
    trainer_ref: str
    finished_at: datetime
    metric: str
    value: float | None = Field(None, description="the model's value of the metric")
    baseline: float | None = Field(None, description="the baseline's value on the same test rows")
    difference: float | None = None
    low: float | None = None
    high: float | None = None
    confidence: float | None = None
    beats_baseline: bool = False
    verdict: str = ""


class Leaderboard(BaseModel):
    prediction_interval: int | None
    metric: str
    entries: list[LeaderboardEntry]
    truncated: bool = Field(False, description="more evaluations matched than were read")


def latest_per_side(rows: list[Evaluation]) -> list[Evaluation]:
    """The highest attempt of each (submission, task, side)."""
    best: dict[tuple[str, str, str], Evaluation] = {}
    for r in rows:
        key = (r.submission_id, r.task_id, r.side)
        if key not in best or r.attempt > best[key].attempt:
            best[key] = r
    return list(best.values())


def rank(rows: list[Evaluation], metric: str, limit: int) -> list[LeaderboardEntry]:
    """Largest difference first; ties by the metric's own value, then newest."""

    def order(r: Evaluation) -> tuple[int, float, float, float]:
        c = r.vs_baseline.get(metric)
        diff = c.difference if c is not None else None
        value = r.metrics.get(metric)
        return (
            0 if diff is not None else 1,
            -(diff if diff is not None else 0.0),
            -(value if value is not None else float("-inf")),
            -r.finished_at.timestamp(),
        )

    entries = []
    for i, r in enumerate(sorted(latest_per_side(rows), key=order)[:limit], start=1):
        c = r.vs_baseline.get(metric)
        entries.append(LeaderboardEntry(
            rank=i, submission_id=r.submission_id, feature_set=r.feature_set, owner=r.owner, side=r.side,
            task_id=r.task_id, attempt=r.attempt, prediction_interval=r.prediction_interval,
            trainer_ref=r.trainer_ref, finished_at=r.finished_at, metric=metric,
            value=r.metrics.get(metric) if c is None or c.model is None else c.model,
            baseline=c.baseline if c else None, difference=c.difference if c else None,
            low=c.low if c else None, high=c.high if c else None, confidence=c.confidence if c else None,
            beats_baseline=bool(c and c.beats), verdict=r.verdict,
        ))
    return entries
