"""The results pages: the Leaderboard and a submission's Evaluations (each metric against the
prediction interval, long and short). Both read the evaluations table through the same store
and rules as the API: users see their own submissions' rows; admins all.

Charts are drawn in the browser by ``static/charts.js`` (vendored Chart.js) from JSON specs
that these handlers put in the page; the numbers are also in a table beside each chart.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Response, get
from litestar.params import FromPath, Parameter
from touchstone.shared.errors import InvalidInputError
from touchstone.shared.evaluations import SORT_NAME, Evaluation, EvaluationQuery
from touchstone.submission.deps import DepsArg
from touchstone.submission.leaderboard import latest_per_side, rank
from touchstone.submission.ui.session import ViewerArg, render

METRICS = ("roc_auc", "accuracy", "sharpe", "total_return")
READ = 5_000
Text = Annotated[str | None, Parameter(max_length=200)]


def _blank(value: str | None) -> str | None:
    return value.strip() or None if value else None


@get("/leaderboard")
async def leaderboard_page(
    deps: DepsArg,
    viewer: ViewerArg,
    interval: Annotated[str | None, Parameter(max_length=12)] = None,
    metric: Annotated[str, Parameter(max_length=64)] = "roc_auc",
    side: Annotated[str | None, Parameter(max_length=8)] = None,
    feature_set: Text = None,
    owner: Text = None,
    trainer_ref: Text = None,
) -> Response[str]:
    if not SORT_NAME.match(metric):
        raise InvalidInputError(f"metric: {metric!r} is not a metric name")
    minutes = int(interval) if interval and interval.strip().isdigit() else None
    chosen_side = side if side in ("long", "short") else None
    query = EvaluationQuery(
        owner=_blank(owner) if viewer.is_admin else viewer.name, feature_set=_blank(feature_set),
        prediction_interval=minutes, trainer_ref=_blank(trainer_ref), side=chosen_side, limit=READ,
    )
    page = await deps.store.list_evaluations(query)
    entries = rank(page.items, metric, 100)
    chart = _leaderboard_chart(entries, metric)
    values = {"interval": interval or "", "metric": metric, "side": chosen_side or "",
              "feature_set": feature_set or "", "owner": owner or "", "trainer_ref": trainer_ref or ""}
    return render("leaderboard.html", me=viewer, active="leaderboard", entries=entries, values=values,
                  metrics=METRICS, chart=chart, truncated=page.next_cursor is not None)


def _leaderboard_chart(entries: list[Any], metric: str) -> dict[str, Any] | None:
    compared = [e for e in entries if e.difference is not None and e.low is not None][:30]
    if not compared:
        return None
    labels = [f"{e.rank}. {e.feature_set} ({e.side})" for e in compared]
    return {
        "type": "bar",
        "data": {
            "labels": labels,
            "datasets": [
                {"type": "bar", "label": "interval", "data": [[e.low, e.high] for e in compared],
                 "backgroundColor": ["#1a7f3766" if e.beats_baseline else "#8b949e55" for e in compared],
                 "borderColor": ["#1a7f37" if e.beats_baseline else "#8b949e" for e in compared],
                 "borderWidth": 1, "barPercentage": 0.5},
                {"type": "line", "label": "difference", "data": [e.difference for e in compared], "showLine": False,
                 "pointRadius": 5, "borderColor": "#1f6feb", "backgroundColor": "#1f6feb"},
            ],
        },
        "options": {"indexAxis": "y", "plugins": {"title": {"display": True,
                    "text": f"{metric}: difference from the baseline with its interval (0 = no better)"}},
                    "scales": {"x": {"title": {"display": True, "text": f"{metric} minus baseline"}}}},
    }


@get("/submissions/{submission_id:str}/evaluations")
async def submission_evaluations(submission_id: FromPath[str], deps: DepsArg, viewer: ViewerArg) -> Response[str]:
    view = await deps.commands.view(submission_id, viewer.principal)  # 404 unless the viewer may see it
    page = await deps.store.list_evaluations(EvaluationQuery(submission_id=submission_id, limit=READ))
    rows = sorted(latest_per_side(page.items), key=lambda r: (r.prediction_interval or 0, r.side))
    charts = {m: _metric_chart(rows, m) for m in METRICS}
    return render("evaluations.html", me=viewer, active="submissions", s=view, rows=rows,
                  charts={m: c for m, c in charts.items() if c}, metrics=METRICS)


def _metric_chart(rows: list[Evaluation], metric: str) -> dict[str, Any] | None:
    intervals = sorted({r.prediction_interval for r in rows if r.prediction_interval is not None})
    if not intervals:
        return None
    by = {(r.prediction_interval, r.side): r for r in rows}
    colors = {"long": "#1a7f37", "short": "#cf222e"}
    datasets = []
    for side in ("long", "short"):
        model = [_value(by.get((i, side)), metric) for i in intervals]
        base = [_baseline(by.get((i, side)), metric) for i in intervals]
        if any(v is not None for v in model):
            datasets.append({"label": side, "data": model, "borderColor": colors[side],
                             "backgroundColor": colors[side], "pointRadius": 4, "spanGaps": True})
        if any(v is not None for v in base):
            datasets.append({"label": f"{side} baseline", "data": base, "borderColor": colors[side],
                             "backgroundColor": colors[side], "borderDash": [5, 4], "pointRadius": 2,
                             "borderWidth": 1, "spanGaps": True})
    if not datasets:
        return None
    return {"type": "line", "data": {"labels": [f"{i} min" for i in intervals], "datasets": datasets},
            "options": {"plugins": {"title": {"display": True, "text": f"{metric} by prediction interval"}},
                        "scales": {"x": {"title": {"display": True, "text": "prediction interval"}}}}}


def _value(row: Evaluation | None, metric: str) -> float | None:
    return row.metrics.get(metric) if row else None


def _baseline(row: Evaluation | None, metric: str) -> float | None:
    c = row.vs_baseline.get(metric) if row else None
    return c.baseline if c else None


ROUTES = [leaderboard_page, submission_evaluations]
