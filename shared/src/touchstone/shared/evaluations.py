"""Evaluations as a table: one row per (submission, task, attempt, side) with every metric.

The results service turns each training task's ``metrics.json`` (carried by
``TrainingFinished``) into two rows, long and short, and writes them to the projection store;
the API lists, filters, sorts and exports them, and the leaderboard ranks them. Pure code:
``rows_from_metrics`` reads no clock and does no I/O.

Metric names are flat (``roc_auc``, ``sharpe``, ...): the trainer's ``backtest`` block is
lifted to the top. A difference from the baseline is sortable as ``{metric}_vs_baseline``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SIDES = ("long", "short")
VS_BASELINE = "_vs_baseline"
SORT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
FIXED_SORTS = ("finished_at", "prediction_interval")
MAX_METRICS = 64
NOT_METRICS = frozenset({"verdict", "vs_baseline", "backtest", "model_file", "model_kind", "warnings"})


class Comparison(BaseModel):
    """One metric of a model against the baseline on the same test rows."""

    model_config = ConfigDict(frozen=True)

    model: float | None = None
    baseline: float | None = None
    difference: float | None = None
    low: float | None = Field(None, description="lower end of the difference's confidence interval")
    high: float | None = None
    confidence: float = 0.95
    beats: bool = Field(False, description="the interval lies wholly above zero")
    worse: bool = Field(False, description="the interval lies wholly below zero")


class Evaluation(BaseModel):
    """One side's model of one task attempt, as the trainer evaluated it."""

    model_config = ConfigDict(frozen=True)

    submission_id: str
    task_id: str
    attempt: int
    side: Literal["long", "short"]
    owner: str = ""
    feature_set: str = Field("", description="the submission's name")
    prediction_interval: int | None = None
    trainer_ref: str = ""
    config_file: str = ""
    data_start: str | None = None
    data_end: str | None = None
    fetched_data_end_to: str | None = None
    metrics: dict[str, float | None] = Field(default_factory=dict)
    baseline_name: str | None = None
    vs_baseline: dict[str, Comparison] = Field(default_factory=dict)
    beats_baseline: bool | None = Field(None, description="None when the trainer ran no baseline")
    verdict: str = Field("", description="the comparison in words")
    finished_at: datetime
    event_id: str = ""

    @property
    def key(self) -> str:
        return f"{self.submission_id}/{self.task_id}/{self.attempt}/{self.side}"

    def sort_values(self) -> dict[str, float | None]:
        """What a list may be sorted by besides the fixed columns: every metric and every
        difference from the baseline."""
        values = dict(self.metrics)
        for name, c in self.vs_baseline.items():
            values[f"{name}{VS_BASELINE}"] = c.difference
        return values


@dataclass(frozen=True)
class EvaluationQuery:
    """Filters, order and page of a list of evaluations (every filter optional)."""

    owner: str | None = None
    feature_set: str | None = None
    prediction_interval: int | None = None
    trainer_ref: str | None = None
    side: str | None = None
    submission_id: str | None = None
    sort: str = "finished_at"
    descending: bool = True
    limit: int = 50
    cursor: str | None = None

    def __post_init__(self) -> None:
        if not SORT_NAME.match(self.sort):
            raise ValueError(f"cannot sort by {self.sort!r}: a metric name is lower case letters, digits and _")

    @property
    def offset(self) -> int:
        return decode_offset(self.cursor) if self.cursor else 0


OFFSET_CURSOR_PATTERN = r"^o[0-9]{1,9}$"
_OFFSET_CURSOR = re.compile(OFFSET_CURSOR_PATTERN)


def encode_offset(offset: int) -> str:
    return f"o{offset}"


def decode_offset(cursor: str) -> int:
    """Raises ValueError on a cursor we did not make (the API states the same pattern)."""
    if not _OFFSET_CURSOR.match(cursor):
        raise ValueError("invalid cursor")
    return int(cursor[1:])


def next_cursor(query: EvaluationQuery, fetched: int) -> str | None:
    """The cursor of the next page when ``fetched`` (up to limit + 1) rows came back."""
    return encode_offset(query.offset + query.limit) if fetched > query.limit else None


# --- from metrics.json to rows ----------------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def flat_metrics(side: dict[str, Any]) -> dict[str, float | None]:
    """A side's numeric metrics, the backtest lifted to the top level; names that are not
    plain lower-case words are left out (they could not be sorted on)."""
    out: dict[str, float | None] = {}
    blocks = [side, _dict(side.get("backtest"))]
    for block in blocks:
        for name, value in block.items():
            if len(out) >= MAX_METRICS or not SORT_NAME.match(str(name)) or name in NOT_METRICS:
                continue
            if name.endswith(VS_BASELINE):  # that name sorts by a difference from the baseline
                continue
            if name in out or not (value is None or (isinstance(value, int | float) and not isinstance(value, bool))):
                continue
            out[name] = _number(value)
    return out


def _comparisons(side: dict[str, Any]) -> dict[str, Comparison]:
    raw = side.get("vs_baseline")
    if not isinstance(raw, dict):
        return {}
    out: dict[str, Comparison] = {}
    for name, value in list(raw.items())[:MAX_METRICS]:
        if SORT_NAME.match(str(name)) and isinstance(value, dict):
            try:
                out[name] = Comparison.model_validate(value)
            except ValueError:
                continue
    return out


def rows_from_metrics(
    metrics: dict[str, Any],
    *,
    submission_id: str,
    task_id: str,
    attempt: int,
    finished_at: datetime,
    event_id: str = "",
    owner: str = "",
    feature_set: str = "",
    trainer_ref: str = "",
    config_file: str = "",
    prediction_interval: int | None = None,
) -> list[Evaluation]:
    """Two rows (long, short) from one attempt's metrics; a side that is missing gives none."""
    data = _dict(metrics.get("data"))
    baseline = _dict(metrics.get("baseline"))
    interval = metrics.get("prediction_interval")
    rows = []
    for side in SIDES:
        block = metrics.get(side)
        if not isinstance(block, dict):
            continue
        comparisons = _comparisons(block)
        said = block.get("verdict")
        verdict = said if isinstance(said, str) else ""
        rows.append(Evaluation(
            submission_id=submission_id, task_id=task_id, attempt=attempt, side=side, owner=owner,
            feature_set=feature_set or str(_dict(metrics.get("feature_set")).get("name", ""))[:200],
            prediction_interval=prediction_interval if prediction_interval is not None
            else (interval if isinstance(interval, int) else None),
            trainer_ref=trainer_ref, config_file=config_file or str(metrics.get("config_file", ""))[:500],
            data_start=_text(data.get("start")), data_end=_text(data.get("end")),
            fetched_data_end_to=_text(data.get("fetched_data_end_to")),
            metrics=flat_metrics(block),
            baseline_name=_text(baseline.get("name")) if baseline else None,
            vs_baseline=comparisons,
            beats_baseline=(any(c.beats for c in comparisons.values()) if comparisons else None),
            verdict=verdict[:2000], finished_at=finished_at, event_id=event_id,
        ))
    return rows


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return str(value)[:100] if value is not None else None


CSV_FIXED = (
    "submission_id", "task_id", "attempt", "side", "owner", "feature_set", "prediction_interval",
    "trainer_ref", "config_file", "data_start", "data_end", "fetched_data_end_to", "finished_at",
    "baseline_name", "beats_baseline", "verdict",
)


def csv_columns(rows: list[Evaluation]) -> list[str]:
    """The fixed columns, then every metric and every baseline difference (with its interval)
    seen in ``rows``, in a stable order."""
    metrics = sorted({m for r in rows for m in r.metrics})
    compared = sorted({m for r in rows for m in r.vs_baseline})
    extra = [f"{m}{VS_BASELINE}{part}" for m in compared for part in ("", "_low", "_high")]
    return [*CSV_FIXED, *metrics, *extra]


def csv_record(row: Evaluation) -> dict[str, Any]:
    record: dict[str, Any] = {name: getattr(row, name) for name in CSV_FIXED}
    record["finished_at"] = row.finished_at.isoformat()
    record.update(row.metrics)
    for name, c in row.vs_baseline.items():
        record[f"{name}{VS_BASELINE}"] = c.difference
        record[f"{name}{VS_BASELINE}_low"] = c.low
        record[f"{name}{VS_BASELINE}_high"] = c.high
    return record


SortOrder = Literal["asc", "desc"]
