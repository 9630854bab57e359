"""Evaluations and the leaderboard: ``/api/v1/evaluations`` (list, sort, page, CSV/JSON
export) and ``/api/v1/leaderboard``. Users see their own submissions' rows; admins all."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Literal

from litestar import Response, get
from litestar.params import Parameter
from pydantic import BaseModel
from touchstone.shared.evaluations import Evaluation, EvaluationQuery, csv_columns, csv_record
from touchstone.submission.deps import DepsArg, PrincipalArg
from touchstone.submission.domain import Principal
from touchstone.submission.leaderboard import Leaderboard, rank
from touchstone.submission.problems import BadQuery, documented

PREFIX = "/api/v1"
EXPORT_MAX_ROWS = 10_000
LEADERBOARD_READ = 5_000

Interval = Annotated[int | None, Parameter(ge=1, le=10_000_000, description="prediction interval, minutes")]
Text = Annotated[str | None, Parameter(max_length=200)]
Side = Annotated[Literal["long", "short"] | None, Parameter(description="one side only")]
Sort = Annotated[str, Parameter(max_length=64, description="finished_at, prediction_interval, any metric "
                                "(roc_auc, sharpe, ...) or a difference from the baseline (roc_auc_vs_baseline)")]
Order = Annotated[Literal["asc", "desc"], Parameter(description="sort order")]


class EvaluationPage(BaseModel):
    items: list[Evaluation]
    next_cursor: str | None = None


def _query(principal: Principal, *, owner: str | None, **kw: object) -> EvaluationQuery:
    if not principal.is_admin:
        owner = principal.name
    try:
        return EvaluationQuery(owner=owner, **kw)  # type: ignore[arg-type]
    except ValueError as e:
        raise BadQuery(str(e)) from e


@get(f"{PREFIX}/evaluations", summary="Evaluations: one row per task attempt and side", tags=["evaluations"],
     responses=documented(400, 401))
async def list_evaluations(
    deps: DepsArg,
    principal: PrincipalArg,
    interval: Interval = None,
    feature_set: Text = None,
    owner: Annotated[str | None, Parameter(max_length=128, description="admins only")] = None,
    trainer_ref: Text = None,
    side: Side = None,
    submission_id: Annotated[str | None, Parameter(max_length=64)] = None,
    sort: Sort = "finished_at",
    order: Order = "desc",
    limit: Annotated[int, Parameter(ge=1, le=500, description="page size")] = 50,
    cursor: Annotated[str | None, Parameter(max_length=100, description="next_cursor of the previous page")] = None,
) -> EvaluationPage:
    query = _query(principal, owner=owner, feature_set=feature_set, prediction_interval=interval,
                   trainer_ref=trainer_ref, side=side, submission_id=submission_id, sort=sort,
                   descending=order == "desc", limit=limit, cursor=cursor)
    try:
        page = await deps.store.list_evaluations(query)
    except ValueError as e:
        raise BadQuery(f"cursor: {e}") from e
    return EvaluationPage(items=page.items, next_cursor=page.next_cursor)


@get(f"{PREFIX}/evaluations/export", summary="Every matching evaluation as one CSV or JSON file",
     tags=["evaluations"], responses=documented(400, 401))
async def export_evaluations(
    deps: DepsArg,
    principal: PrincipalArg,
    format: Annotated[Literal["csv", "json"], Parameter(description="file format")] = "csv",
    interval: Interval = None,
    feature_set: Text = None,
    owner: Annotated[str | None, Parameter(max_length=128, description="admins only")] = None,
    trainer_ref: Text = None,
    side: Side = None,
    sort: Sort = "finished_at",
    order: Order = "desc",
) -> Response[bytes]:
    query = _query(principal, owner=owner, feature_set=feature_set, prediction_interval=interval,
                   trainer_ref=trainer_ref, side=side, sort=sort, descending=order == "desc",
                   limit=EXPORT_MAX_ROWS)
    rows = (await deps.store.list_evaluations(query)).items
    headers = {"content-disposition": f'attachment; filename="evaluations.{format}"'}
    if format == "json":
        body = EvaluationPage(items=rows).model_dump_json().encode()
        return Response(body, media_type="application/json", headers=headers)
    return Response(to_csv(rows).encode(), media_type="text/csv; charset=utf-8", headers=headers)


def to_csv(rows: list[Evaluation]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=csv_columns(rows), extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: _cell(v) for k, v in csv_record(r).items()})
    return out.getvalue()


def _cell(value: object) -> object:
    """Text a spreadsheet will not run as a formula (feature set names come from users)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


@get(f"{PREFIX}/leaderboard", summary="Feature sets ranked by their difference from the baseline",
     tags=["evaluations"], responses=documented(400, 401))
async def leaderboard(
    deps: DepsArg,
    principal: PrincipalArg,
    interval: Interval = None,
    metric: Annotated[str, Parameter(max_length=64, description="the metric to rank by")] = "roc_auc",
    feature_set: Text = None,
    owner: Annotated[str | None, Parameter(max_length=128, description="admins only")] = None,
    trainer_ref: Text = None,
    side: Side = None,
    limit: Annotated[int, Parameter(ge=1, le=500)] = 100,
) -> Leaderboard:
    query = _query(principal, owner=owner, feature_set=feature_set, prediction_interval=interval,
                   trainer_ref=trainer_ref, side=side, sort=metric, limit=LEADERBOARD_READ)
    page = await deps.store.list_evaluations(
        EvaluationQuery(**{**query.__dict__, "sort": "finished_at"})
    )
    return Leaderboard(prediction_interval=interval, metric=metric, entries=rank(page.items, metric, limit),
                       truncated=page.next_cursor is not None)


ROUTES = [list_evaluations, export_evaluations, leaderboard]
