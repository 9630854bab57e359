"""``/api/v1/evaluations`` and ``/api/v1/leaderboard`` over real HTTP on a real SQLite store:
filters, sort by any metric, pages, CSV and JSON export, users see their own rows only; and
``touchstone leaderboard`` / ``touchstone evaluations`` against that API."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
import typer
from touchstone.shared.evaluations import Comparison, Evaluation
from typer.testing import CliRunner

from touchstone.cli.api import out as console
from touchstone.cli.results import register

ADMIN_SECRET = "tst_bootstrap-admin-for-tests"

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def row(i: int, owner: str, *, side: str = "long", interval: int = 15, auc: float = 0.55,
        diff: float | None = 0.05, half_width: float = 0.02, fs: str = "momentum", ref: str = "main",
        attempt: int = 1) -> Evaluation:
    compared = {} if diff is None else {"roc_auc": Comparison(
        model=auc, baseline=auc - diff, difference=diff, low=diff - half_width, high=diff + half_width,
        beats=diff - half_width > 0, worse=diff + half_width < 0)}
    return Evaluation(
        submission_id=f"s-{i:03d}", task_id=f"pi-{interval}", attempt=attempt, side=side, owner=owner,
        feature_set=fs, prediction_interval=interval, trainer_ref=ref,
        metrics={"roc_auc": auc, "sharpe": i / 10}, vs_baseline=compared, baseline_name="returns",
        beats_baseline=bool(compared and compared["roc_auc"].beats),
        finished_at=T0 + timedelta(minutes=i),
    )


async def seed(api) -> None:
    await api.deps.store.put_evaluations([
        row(1, "alice", auc=0.60, diff=0.10, fs="momentum"),
        row(1, "alice", side="short", auc=0.52, diff=0.01, half_width=0.03, fs="momentum"),
        row(2, "bob", auc=0.57, diff=0.07, fs="volume", ref="v2"),
        row(3, "alice", auc=0.51, diff=-0.04, fs="noise"),
        row(4, "bob", interval=60, auc=0.66, diff=0.2, fs="volume"),
        row(5, "alice", auc=0.70, diff=None, fs="nobaseline"),
    ])


async def test_admin_lists_filters_sorts_and_pages(api) -> None:
    await seed(api)
    r = await api.admin.get("/api/v1/evaluations", params={"interval": 15, "sort": "roc_auc", "order": "desc"})
    assert r.status_code == 200, r.text
    assert [(x["submission_id"], x["side"]) for x in r.json()["items"]] == [
        ("s-005", "long"), ("s-001", "long"), ("s-002", "long"), ("s-001", "short"), ("s-003", "long")]
    r = await api.admin.get("/api/v1/evaluations", params={"trainer_ref": "v2"})
    assert [x["owner"] for x in r.json()["items"]] == ["bob"]
    r = await api.admin.get("/api/v1/evaluations", params={"feature_set": "volume", "sort": "prediction_interval"})
    assert [x["prediction_interval"] for x in r.json()["items"]] == [60, 15]
    r = await api.admin.get("/api/v1/evaluations", params={"owner": "bob"})
    assert {x["owner"] for x in r.json()["items"]} == {"bob"}

    seen, cursor = [], None
    while True:
        params = {"sort": "roc_auc_vs_baseline", "order": "asc", "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await api.admin.get("/api/v1/evaluations", params=params)).json()
        seen += [x["vs_baseline"].get("roc_auc", {}).get("difference") for x in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [None, -0.04, 0.01, 0.07, 0.10, 0.2]


async def test_a_user_sees_only_their_own_rows_whatever_owner_they_ask_for(api) -> None:
    await seed(api)
    for params in ({}, {"owner": "bob"}):
        r = await api.alice.get("/api/v1/evaluations", params=params)
        assert r.status_code == 200
        assert {x["owner"] for x in r.json()["items"]} == {"alice"}
    r = await api.bob.get("/api/v1/evaluations/export.json")
    assert {x["owner"] for x in r.json()["items"]} == {"bob"}
    assert (await api.anon.get("/api/v1/evaluations")).status_code == 401


async def test_bad_sort_and_cursor_are_400(api) -> None:
    for params in ({"sort": "roc_auc;drop"}, {"sort": "$where"}, {"cursor": "bogus"}, {"order": "sideways"}):
        r = await api.admin.get("/api/v1/evaluations", params=params)
        assert r.status_code == 400, (params, r.text)


async def test_csv_export_has_every_metric_and_interval_and_defuses_formulas(api) -> None:
    await seed(api)
    await api.deps.store.put_evaluations([row(9, "alice", fs="=HYPERLINK(\"http://x\")")])
    r = await api.admin.get("/api/v1/evaluations/export.csv", params={"interval": 15})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert 'filename="evaluations.csv"' in r.headers["content-disposition"]
    records = list(csv.DictReader(io.StringIO(r.text)))
    assert len(records) == 6
    first = next(x for x in records if x["submission_id"] == "s-001" and x["side"] == "long")
    assert float(first["roc_auc"]) == 0.60 and float(first["roc_auc_vs_baseline"]) == 0.10
    assert float(first["roc_auc_vs_baseline_low"]) == pytest.approx(0.08)
    assert float(first["roc_auc_vs_baseline_high"]) == pytest.approx(0.12)
    assert first["trainer_ref"] == "main" and first["prediction_interval"] == "15"
    evil = next(x for x in records if x["submission_id"] == "s-009")
    assert evil["feature_set"].startswith("'=")


async def test_leaderboard_ranks_by_difference_with_its_interval(api) -> None:
    await seed(api)
    # a retried attempt replaces the first attempt of the same task and side
    await api.deps.store.put_evaluations([row(2, "bob", auc=0.50, diff=-0.01, fs="volume", ref="v2", attempt=2)])
    r = await api.admin.get("/api/v1/leaderboard", params={"interval": 15, "metric": "roc_auc"})
    assert r.status_code == 200, r.text
    board = r.json()
    assert board["metric"] == "roc_auc" and board["prediction_interval"] == 15
    got = [(e["rank"], e["feature_set"], e["side"], e["difference"], e["beats_baseline"]) for e in board["entries"]]
    assert got == [
        (1, "momentum", "long", 0.10, True),
        (2, "momentum", "short", 0.01, False),   # its interval holds zero
        (3, "volume", "long", -0.01, False),      # attempt 2 counts, not attempt 1
        (4, "noise", "long", -0.04, False),
        (5, "nobaseline", "long", None, False),   # no comparison: ranked last
    ]
    top = board["entries"][0]
    assert (top["low"], top["high"]) == (pytest.approx(0.08), pytest.approx(0.12))
    assert (top["trainer_ref"], top["attempt"]) == ("main", 1)
    assert top["finished_at"].startswith("2026-03-01")
    mine = (await api.bob.get("/api/v1/leaderboard", params={"interval": 60})).json()
    assert [e["feature_set"] for e in mine["entries"]] == ["volume"]
    assert (await api.admin.get("/api/v1/leaderboard", params={"metric": "Bad Metric"})).status_code == 400


# --- the CLI ------------------------------------------------------------------------------


@pytest.fixture
def cli(api, tmp_path, monkeypatch):
    app = typer.Typer()
    register(app)
    monkeypatch.setenv("TOUCHSTONE_URL", api.url)
    monkeypatch.setenv("TOUCHSTONE_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(console, "width", 250)  # tables unwrapped, as on a wide terminal
    runner = CliRunner()

    async def run(*args: str, code: int = 0):
        result = await asyncio.to_thread(runner.invoke, app, [*args], env={"TOUCHSTONE_TOKEN": ADMIN_SECRET})
        assert result.exit_code == code, (args, result.exit_code, result.output, result.exception)
        return result

    return run


async def test_leaderboard_from_the_cli(api, cli) -> None:
    await seed(api)
    board = json.loads((await cli("leaderboard", "-i", "15", "--json")).stdout)
    assert [e["feature_set"] for e in board["entries"]][:3] == ["momentum", "volume", "momentum"]
    text = (await cli("leaderboard", "-i", "15", "--metric", "roc_auc")).stdout
    assert "momentum" in text and "[+0.0800, +0.1200]" in text and "yes" in text
    only_short = json.loads((await cli("leaderboard", "-i", "15", "--side", "short", "--json")).stdout)
    assert {e["side"] for e in only_short["entries"]} == {"short"}
    await cli("leaderboard", "--side", "sideways", code=2)  # a usage error


async def test_evaluations_list_and_export_from_the_cli(api, cli, tmp_path) -> None:
    await seed(api)
    page = json.loads((await cli("evaluations", "--sort", "roc_auc", "--asc", "--json")).stdout)
    aucs = [r["metrics"]["roc_auc"] for r in page["items"]]
    assert aucs == sorted(aucs)
    assert "momentum" in (await cli("evaluations", "-i", "15")).stdout
    await cli("evaluations", "--export", "csv", "-o", str(tmp_path / "e.csv"))
    rows = list(csv.DictReader(io.StringIO((tmp_path / "e.csv").read_text())))
    assert len(rows) == 6 and "roc_auc_vs_baseline_low" in rows[0]
    exported = json.loads((await cli("evaluations", "--export", "json", "--trainer-ref", "v2")).stdout)
    assert [r["owner"] for r in exported["items"]] == ["bob"]


# --- the UI pages ---------------------------------------------------------------------------


def secret_of(client) -> str:
    return client.headers["Authorization"].removeprefix("Bearer ")


async def sign_in(api, secret: str) -> tuple[dict[str, str], None]:
    """The Cookie header of a browser signed in with ``secret``."""
    r = await api.anon.post("/ui/sign-in", data={"token": secret, "next": "/ui/submissions"})
    assert r.status_code == 303, r.text
    return {"Cookie": r.headers["set-cookie"].split(";")[0]}, None


async def test_leaderboard_and_evaluations_pages(api) -> None:
    await seed(api)
    alice_sid = await api.submit(api.alice)
    await api.deps.store.put_evaluations([
        row(0, "alice", interval=15, auc=0.58, diff=0.06).model_copy(update={"submission_id": alice_sid}),
        row(0, "alice", interval=60, auc=0.62, diff=0.09, side="short").model_copy(
            update={"submission_id": alice_sid, "task_id": "pi-60"}),
    ])
    admin, _ = await sign_in(api, secret_of(api.admin))
    page = await api.anon.get("/ui/leaderboard", params={"interval": "15", "metric": "roc_auc"}, headers=admin)
    assert page.status_code == 200
    ranks = re.findall(r'<tr data-rank="(\d+)">\s*<td>\d+</td>\s*<td><a href="[^"]+">([^<]+)</a>', page.text)
    assert [name for _, name in ranks][:2] == ["momentum", "volume"]
    assert 'data-chart="leaderboard-chart"' in page.text and "[+0.0800, +0.1200]" in page.text
    spec = json.loads(re.search(r'<script type="application/json" id="leaderboard-chart">(.*?)</script>',
                                page.text, re.S).group(1))
    assert spec["data"]["datasets"][0]["data"][0] == [pytest.approx(0.08), pytest.approx(0.12)]

    alice, _ = await sign_in(api, secret_of(api.alice))
    mine = await api.anon.get("/ui/leaderboard", params={"owner": "bob"}, headers=alice)
    assert "volume" not in mine.text and "momentum" in mine.text  # a user sees their own rows only
    evals = await api.anon.get(f"/ui/submissions/{alice_sid}/evaluations", headers=alice)
    assert evals.status_code == 200
    spec = json.loads(re.search(r'id="chart-roc_auc">(.*?)</script>', evals.text, re.S).group(1))
    assert spec["data"]["labels"] == ["15 min", "60 min"]
    by_label = {d["label"]: d["data"] for d in spec["data"]["datasets"]}
    assert by_label["long"] == [0.58, None] and by_label["short"] == [None, 0.62]
    assert by_label["long baseline"][0] == pytest.approx(0.52)
    bob, _ = await sign_in(api, secret_of(api.bob))
    assert (await api.anon.get(f"/ui/submissions/{alice_sid}/evaluations", headers=bob)).status_code == 404
