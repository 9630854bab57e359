"""Results verbs of the ``touchstone`` command line: ``leaderboard`` and ``evaluations``.

Examples::

    touchstone leaderboard -i 15                      # ROC AUC against the baseline, 15-minute models
    touchstone leaderboard -i 60 --metric sharpe --side long --json
    touchstone evaluations --sort roc_auc --owner alice
    touchstone evaluations -i 15 --export csv -o evaluations.csv
"""

from __future__ import annotations

import json
from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from touchstone.cli.api import AsJson, Client, Token, Url, _print_json, out

Interval = Annotated[int | None, typer.Option("--interval", "-i", min=1,
                                              help="Prediction interval in minutes, e.g. -i 15.")]
FeatureSet = Annotated[str | None, typer.Option("--feature-set", help="Only this feature set (submission name).")]
Owner = Annotated[str | None, typer.Option("--owner", help="Only this owner's submissions (admins).")]
TrainerRef = Annotated[str | None, typer.Option("--trainer-ref", help="Only this trainer ref, e.g. main.")]


class Side(StrEnum):
    long = "long"
    short = "short"


class ExportFormat(StrEnum):
    csv = "csv"
    json = "json"


SideOpt = Annotated[Side | None, typer.Option("--side", help="Only the long or the short model.")]


def _num(value: Any, digits: int = 4) -> str:
    return "-" if value is None else f"{value:+.{digits}f}" if isinstance(value, float) else str(value)


def _params(**kw: Any) -> dict[str, Any]:
    return {k: (v.value if isinstance(v, Enum) else v) for k, v in kw.items() if v is not None}


def leaderboard(
    interval: Interval = None,
    metric: Annotated[str, typer.Option("--metric", "-m", help="Metric to rank by: roc_auc, accuracy, sharpe, "
                                        "total_return.")] = "roc_auc",
    side: SideOpt = None,
    feature_set: FeatureSet = None,
    owner: Owner = None,
    trainer_ref: TrainerRef = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500, help="Rows to show.")] = 50,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Feature sets ranked by their difference from the baseline, with its interval.

    Example: touchstone leaderboard -i 15 --metric roc_auc
    """
    board = Client(url, token).call("GET", "/api/v1/leaderboard", params=_params(
        interval=interval, metric=metric, side=side, feature_set=feature_set, owner=owner,
        trainer_ref=trainer_ref, limit=limit))
    if as_json:
        _print_json(board)
        return
    table = Table("#", "feature set", "side", metric, "baseline", "difference", "interval", "beats",
                  "trainer ref", "date", "submission", title=f"{metric} against the baseline"
                  + (f", {interval} min" if interval else ""))
    for e in board["entries"]:
        interval_text = "-" if e["low"] is None else f"[{e['low']:+.4f}, {e['high']:+.4f}]"
        table.add_row(str(e["rank"]), escape(e["feature_set"]), e["side"], _num(e["value"]), _num(e["baseline"]),
                      _num(e["difference"]), interval_text, "yes" if e["beats_baseline"] else "no",
                      escape(e["trainer_ref"]), e["finished_at"][:10], e["submission_id"])
    out.print(table)


def evaluations(
    interval: Interval = None,
    side: SideOpt = None,
    feature_set: FeatureSet = None,
    owner: Owner = None,
    trainer_ref: TrainerRef = None,
    sort: Annotated[str, typer.Option("--sort", help="finished_at, prediction_interval, a metric (roc_auc) or "
                                      "a difference (roc_auc_vs_baseline).")] = "finished_at",
    ascending: Annotated[bool, typer.Option("--asc", help="Smallest first (default: largest first).")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500, help="Rows per page.")] = 50,
    export: Annotated[ExportFormat | None, typer.Option("--export", help="Every matching row as one file.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Where --export writes (default: stdout).")]
    = None,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Evaluations: one row per task attempt and side, with every metric.

    Example: touchstone evaluations -i 15 --sort roc_auc --export csv -o evals.csv
    """
    client = Client(url, token)
    common = _params(interval=interval, side=side, feature_set=feature_set, owner=owner, trainer_ref=trainer_ref,
                     sort=sort, order="asc" if ascending else "desc")
    if export is not None:
        body = client.call("GET", f"/api/v1/evaluations/export.{export.value}", params=common)
        text = body if isinstance(body, str) else json.dumps(body)
        if output:
            output.write_text(text)
            out.print(f"wrote {escape(str(output))}")
        else:
            print(text, end="")
        return
    page = client.call("GET", "/api/v1/evaluations", params={**common, "limit": limit})
    if as_json:
        _print_json(page)
        return
    table = Table("submission", "task", "try", "side", "feature set", "owner", "roc_auc", "sharpe",
                  "vs baseline (roc_auc)", "trainer ref", "date")
    for r in page["items"]:
        c = r["vs_baseline"].get("roc_auc") or {}
        table.add_row(r["submission_id"], r["task_id"], str(r["attempt"]), r["side"], escape(r["feature_set"]),
                      escape(r["owner"]), _num(r["metrics"].get("roc_auc")), _num(r["metrics"].get("sharpe"), 2),
                      _num(c.get("difference")), escape(r["trainer_ref"]), r["finished_at"][:10])
    out.print(table)
    if page.get("next_cursor"):
        out.print("[dim]more rows: raise --limit or use --export[/dim]")


def register(app: typer.Typer) -> None:
    app.command("leaderboard")(leaderboard)
    app.command("evaluations")(evaluations)
