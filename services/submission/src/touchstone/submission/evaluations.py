"""Evaluations and the leaderboard: ``/api/v1/evaluations`` (list, sort, page), every matching
row as ``/api/v1/evaluations/export.csv`` or ``export.json``, and ``/api/v1/leaderboard``.
Users see their own submissions' rows; admins all."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any, Literal

from litestar import Response, get
from litestar.params import Parameter
from pydantic import BaseModel
from touchstone.shared.evaluations import (
    OFFSET_CURSOR_PATTERN,
    SORT_NAME,
    Evaluation,
    EvaluationQuery,
    csv_columns,
    csv_record,
)
from touchstone.submission.deps import EvaluationsArg, EvaluationsDeps, PrincipalArg
from touchstone.submission.domain import Principal
from touchstone.submission.leaderboard import Leaderboard, rank
from touchstone.submission.problems import BadQuery, documented

PREFIX = "/api/v1"
EXPORT_MAX_ROWS = 10_000
LEADERBOARD_READ = 5_000

Interval = Annotated[int | None, Parameter(ge=1, le=10_000_000, description="prediction interval, minutes")]
Text = Annotated[str | None, Parameter(max_length=200)]
Side = Annotated[Literal["long", "short"] | None, Parameter(description="one side only")]
Sort = Annotated[str, Parameter(max_length=64, pattern=SORT_NAME.pattern,
                                description="finished_at, prediction_interval, any metric "
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
    deps: EvaluationsArg,
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
    cursor: Annotated[str | None, Parameter(max_length=10, pattern=OFFSET_CURSOR_PATTERN,
                                         description="next_cursor of the previous page")] = None,
) -> EvaluationPage:
    query = _query(principal, owner=owner, feature_set=feature_set, prediction_interval=interval,
                   trainer_ref=trainer_ref, side=side, submission_id=submission_id, sort=sort,
                   descending=order == "desc", limit=limit, cursor=cursor)
    try:
        page = await deps.store.list_evaluations(query)
    except ValueError as e:
        raise BadQuery(f"cursor: {e}") from e
    return EvaluationPage(items=page.items, next_cursor=page.next_cursor)


async def _export_rows(deps: EvaluationsDeps, principal: Principal, **kw: Any) -> list[Evaluation]:
    query = _query(principal, limit=EXPORT_MAX_ROWS, **kw)
    return (await deps.store.list_evaluations(query)).items


def _attachment(name: str) -> dict[str, str]:
    return {"content-disposition": f'attachment; filename="{name}"'}


@get(f"{PREFIX}/evaluations/export.csv", summary="Every matching evaluation as one CSV file",
     tags=["evaluations"], media_type="text/csv", responses=documented(400, 401))
async def export_evaluations_csv(
    deps: EvaluationsArg,
    principal: PrincipalArg,
    interval: Interval = None,
    feature_set: Text = None,
    owner: Annotated[str | None, Parameter(max_length=128, description="admins only")] = None,
    trainer_ref: Text = None,
    side: Side = None,
    sort: Sort = "finished_at",
    order: Order = "desc",
) -> Response[str]:
    rows = await _export_rows(deps, principal, owner=owner, feature_set=feature_set, prediction_interval=interval,
                              trainer_ref=trainer_ref, side=side, sort=sort, descending=order == "desc")
    return Response(to_csv(rows), media_type="text/csv", headers=_attachment("evaluations.csv"))


@get(f"{PREFIX}/evaluations/export.json", summary="Every matching evaluation as one JSON file",
     tags=["evaluations"], responses=documented(400, 401))
async def export_evaluations_json(
    deps: EvaluationsArg,
    principal: PrincipalArg,
    interval: Interval = None,
    feature_set: Text = None,
    owner: Annotated[str | None, Parameter(max_length=128, description="admins only")] = None,
    trainer_ref: Text = None,
    side: Side = None,
    sort: Sort = "finished_at",
    order: Order = "desc",
) -> Response[EvaluationPage]:
    rows = await _export_rows(deps, principal, owner=owner, feature_set=feature_set, prediction_interval=interval,
                              trainer_ref=trainer_ref, side=side, sort=sort, descending=order == "desc")
    return Response(EvaluationPage(items=rows), headers=_attachment("evaluations.json"))


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
    deps: EvaluationsArg,
    principal: PrincipalArg,
    interval: Interval = None,
    metric: Annotated[
        str, Parameter(max_length=64, pattern=SORT_NAME.pattern, description="the metric to rank by")
    ] = "roc_auc",
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


ROUTES = [list_evaluations, export_evaluations_csv, export_evaluations_json, leaderboard]
