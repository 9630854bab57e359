"""One contract for every projection store backend: SQLite always, MongoDB where
TOUCHSTONE_TEST_MONGODB_URL names a server (skipped with that reason otherwise)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from touchstone.shared.evaluations import Comparison, Evaluation, EvaluationQuery
from touchstone.shared.lifecycle import SubmissionStatus, TaskStatus
from touchstone.shared.store.mongo import MongoStore
from touchstone.shared.store.protocol import Changes, ProjectionStore
from touchstone.shared.store.sqlite import SqliteStore
from touchstone.shared.testing import MONGODB_URL_ENV, mongodb_url
from touchstone.shared.views import SubmissionView, TaskView

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "mongodb"])
async def store(request, tmp_path) -> AsyncIterator[ProjectionStore]:
    if request.param == "sqlite":
        s: ProjectionStore = SqliteStore(tmp_path / "p.db")
    else:
        url = mongodb_url()
        if not url:
            pytest.skip(f"MongoDB contract half skipped: set {MONGODB_URL_ENV} to a MongoDB URL to run it")
        s = MongoStore(url, database=f"touchstone_test_{uuid.uuid4().hex[:8]}")
        await s.init()
    yield s
    if isinstance(s, MongoStore):
        await s.client.drop_database(s.db.name)
    await s.close()


def sub(i: int, owner: str = "alice", status: SubmissionStatus = SubmissionStatus.VALIDATING,
        seq: int = 1) -> SubmissionView:
    at = T0 + timedelta(seconds=i)
    return SubmissionView(id=f"s-{i:04d}", owner=owner, name=f"n{i}", git_url="https://x/y.git",
                          status=status, created_at=at, updated_at=at, seq=seq)


def task(sid: str, tid: str, i: int, status: TaskStatus = TaskStatus.QUEUED, seq: int = 1,
         platform: str = "any") -> TaskView:
    at = T0 + timedelta(seconds=i)
    return TaskView(submission_id=sid, task_id=tid, status=status, queued_at=at, phase_since=at,
                    updated_at=at, seq=seq, platform=platform)


async def put(store: ProjectionStore, *views, seq: int = 1) -> None:
    changes = Changes()
    for v in views:
        if isinstance(v, SubmissionView):
            changes.submissions[v.id] = v
        else:
            changes.tasks[v.key] = v
    await store.apply(changes, checkpoint="test", seq=seq)


async def test_round_trip_and_missing(store: ProjectionStore) -> None:
    await put(store, sub(1), task("s-0001", "validation", 1))
    assert (await store.get_submission("s-0001")) == sub(1)
    assert (await store.get_task("s-0001", "validation")) == task("s-0001", "validation", 1)
    assert await store.get_submission("s-nope") is None
    assert await store.get_task("s-0001", "nope") is None


async def test_a_write_only_lands_when_its_sequence_is_newer(store: ProjectionStore) -> None:
    await put(store, sub(1, status=SubmissionStatus.ACCEPTED, seq=5))
    await put(store, sub(1, status=SubmissionStatus.VALIDATING, seq=3))  # a replayed older event
    assert (await store.get_submission("s-0001")).status == SubmissionStatus.ACCEPTED
    await put(store, sub(1, status=SubmissionStatus.SCHEDULED, seq=9))
    assert (await store.get_submission("s-0001")).status == SubmissionStatus.SCHEDULED


async def test_newest_first_with_cursor_pages(store: ProjectionStore) -> None:
    await put(store, *[sub(i, owner="alice" if i % 2 else "bob") for i in range(25)])
    seen: list[str] = []
    cursor = None
    while True:
        page = await store.list_submissions(limit=10, cursor=cursor)
        seen += [s.id for s in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [f"s-{i:04d}" for i in reversed(range(25))]


async def test_filters_by_owner_and_status(store: ProjectionStore) -> None:
    await put(store, sub(1, "alice"), sub(2, "bob"), sub(3, "alice", SubmissionStatus.ACCEPTED))
    mine = await store.list_submissions(owner="alice")
    assert [s.id for s in mine.items] == ["s-0003", "s-0001"]
    accepted = await store.list_submissions(status="ACCEPTED")
    assert [s.id for s in accepted.items] == ["s-0003"]
    assert (await store.list_submissions(owner="carol")).items == []


async def test_tasks_oldest_first_with_filters_and_pages(store: ProjectionStore) -> None:
    views = [task("s-0001", f"pi-{i}", i, platform="onprem" if i < 3 else "runpod") for i in range(7)]
    views.append(task("s-0002", "validation", 10, TaskStatus.RUNNING))
    await put(store, *views)
    first = await store.list_tasks(submission_id="s-0001", limit=4)
    rest = await store.list_tasks(submission_id="s-0001", limit=4, cursor=first.next_cursor)
    assert [t.task_id for t in first.items + rest.items] == [f"pi-{i}" for i in range(7)]
    assert rest.next_cursor is None
    assert [t.task_id for t in (await store.list_tasks(status="RUNNING")).items] == ["validation"]
    assert len((await store.list_tasks(platform="onprem")).items) == 3


async def test_tasks_of_any_of_several_statuses_page_in_queue_order(store: ProjectionStore) -> None:
    statuses = [TaskStatus.QUEUED, TaskStatus.RUNNING, TaskStatus.SUCCEEDED, TaskStatus.ASSIGNED]
    await put(store, *[task("s-0001", f"pi-{i}", i, statuses[i % 4]) for i in range(12)])
    wanted = {"QUEUED", "RUNNING", "ASSIGNED"}
    seen, cursor = [], None
    while True:
        page = await store.list_tasks(status=wanted, limit=4, cursor=cursor)
        seen += [t.task_id for t in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [f"pi-{i}" for i in range(12) if i % 4 != 2]
    assert (await store.list_tasks(status=set())).items == []


async def test_checkpoint_moves_forward_only(store: ProjectionStore) -> None:
    assert await store.checkpoint("test") == 0
    await put(store, sub(1), seq=10)
    await put(store, sub(2), seq=4)
    assert await store.checkpoint("test") == 10


async def test_drop_forgets_everything(store: ProjectionStore) -> None:
    await put(store, sub(1), task("s-0001", "validation", 1), seq=3)
    await store.drop()
    assert await store.get_submission("s-0001") is None
    assert (await store.list_tasks()).items == []
    assert await store.checkpoint("test") == 0


async def test_a_cursor_we_did_not_make_is_refused(store: ProjectionStore) -> None:
    with pytest.raises(ValueError, match="invalid cursor"):
        await store.list_submissions(cursor="not-a-cursor")


# --- evaluations ----------------------------------------------------------------------------


def evaluation(i: int, side: str = "long", *, owner: str = "alice", interval: int = 15, ref: str = "main",
               auc: float | None = 0.5, fs: str = "momentum") -> Evaluation:
    diff = None if auc is None else auc - 0.5
    return Evaluation(
        submission_id=f"s-{i:04d}", task_id=f"pi-{interval}", attempt=1, side=side, owner=owner,
        feature_set=fs, prediction_interval=interval, trainer_ref=ref,
        metrics={"roc_auc": auc, "sharpe": float(i)},
        vs_baseline={"roc_auc": Comparison(model=auc, baseline=0.5, difference=diff,
                                           low=None if diff is None else diff - 0.01,
                                           high=None if diff is None else diff + 0.01)},
        finished_at=T0 + timedelta(seconds=i),
    )


async def all_pages(store: ProjectionStore, **kw) -> list[Evaluation]:
    seen: list[Evaluation] = []
    cursor = None
    while True:
        page = await store.list_evaluations(EvaluationQuery(cursor=cursor, **kw))
        seen += page.items
        cursor = page.next_cursor
        if cursor is None:
            return seen


async def test_evaluations_round_trip_and_replace_by_key(store: ProjectionStore) -> None:
    row = evaluation(1)
    await store.put_evaluations([row, evaluation(1, "short")])
    await store.put_evaluations([row])  # a redelivered attempt writes the same rows again
    listed = (await store.list_evaluations(EvaluationQuery())).items
    assert sorted(r.key for r in listed) == ["s-0001/pi-15/1/long", "s-0001/pi-15/1/short"]
    assert next(r for r in listed if r.side == "long") == row
    await store.put_evaluations([evaluation(1, auc=0.9)])
    again = await store.list_evaluations(EvaluationQuery(side="long"))
    assert [r.metrics["roc_auc"] for r in again.items] == [0.9]


async def test_evaluations_filter_by_interval_feature_set_owner_and_trainer_ref(store: ProjectionStore) -> None:
    await store.put_evaluations([
        evaluation(1, owner="alice", interval=15, ref="main", fs="momentum"),
        evaluation(2, owner="bob", interval=60, ref="main", fs="momentum"),
        evaluation(3, owner="alice", interval=60, ref="v2", fs="volume"),
    ])

    async def ids(**kw) -> list[str]:
        return [r.submission_id for r in (await store.list_evaluations(EvaluationQuery(**kw))).items]

    assert await ids() == ["s-0003", "s-0002", "s-0001"]  # newest first by default
    assert await ids(prediction_interval=60) == ["s-0003", "s-0002"]
    assert await ids(owner="alice") == ["s-0003", "s-0001"]
    assert await ids(trainer_ref="v2") == ["s-0003"]
    assert await ids(feature_set="momentum", prediction_interval=60) == ["s-0002"]
    assert await ids(owner="carol") == []


async def test_evaluations_sort_by_any_metric_and_difference_and_page(store: ProjectionStore) -> None:
    aucs = [0.61, 0.52, 0.70, None, 0.55, 0.66, 0.48]
    await store.put_evaluations([evaluation(i, auc=a) for i, a in enumerate(aucs)])
    by_auc = await all_pages(store, sort="roc_auc", descending=True, limit=2)
    known = sorted((a for a in aucs if a is not None), reverse=True)
    assert [r.metrics["roc_auc"] for r in by_auc] == [*known, None]  # a missing value is the smallest
    ascending = await all_pages(store, sort="roc_auc_vs_baseline", descending=False, limit=3)
    assert [r.metrics["roc_auc"] for r in ascending] == [None, *sorted(known)]
    by_sharpe = await all_pages(store, sort="sharpe", limit=4)
    assert [r.metrics["sharpe"] for r in by_sharpe] == [6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0]
    by_interval = await store.list_evaluations(EvaluationQuery(sort="prediction_interval", limit=100))
    assert len(by_interval.items) == 7 and by_interval.next_cursor is None


async def test_evaluations_refuse_an_unsafe_sort_and_a_foreign_cursor(store: ProjectionStore) -> None:
    with pytest.raises(ValueError, match="cannot sort"):
        EvaluationQuery(sort="roc_auc'); DROP TABLE evaluations; --")
    with pytest.raises(ValueError, match="cannot sort"):
        EvaluationQuery(sort="$where")
    with pytest.raises(ValueError, match="invalid cursor"):
        await store.list_evaluations(EvaluationQuery(cursor="not-a-cursor"))


async def test_drop_keeps_evaluations(store: ProjectionStore) -> None:
    await store.put_evaluations([evaluation(1)])
    await store.drop()
    assert len((await store.list_evaluations(EvaluationQuery())).items) == 1


async def test_views_are_served_as_stored_json(store: ProjectionStore) -> None:
    await put(store, sub(1, "alice"), sub(2, "bob"))
    found = await store.get_submission_json("s-0001")
    assert found is not None and found.owner == "alice" and found.status == "VALIDATING"
    assert found.json == sub(1, "alice").model_dump_json().encode()
    assert await store.get_submission_json("s-nope") is None


async def test_stored_json_pages_match_the_parsed_pages(store: ProjectionStore) -> None:
    statuses = [SubmissionStatus.ACCEPTED, SubmissionStatus.REJECTED]
    await put(store, *[sub(i, owner="alice" if i % 3 else "bob", status=statuses[i % 2]) for i in range(30)])
    for filters in ({}, {"owner": "alice"}, {"owner": "alice", "status": "ACCEPTED"}, {"status": "REJECTED"}):
        raw, parsed, cursor = [], [], None
        while True:
            page = await store.list_submissions_json(limit=4, cursor=cursor, **filters)
            twin = await store.list_submissions(limit=4, cursor=cursor, **filters)
            assert page.next_cursor == twin.next_cursor
            raw += page.items
            parsed += twin.items
            cursor = page.next_cursor
            if cursor is None:
                break
        assert raw == [v.model_dump_json().encode() for v in parsed]
        expected = [
            s.id for i in reversed(range(30))
            if (s := sub(i, owner="alice" if i % 3 else "bob", status=statuses[i % 2]))
            and all(getattr(s, k) == v for k, v in filters.items())
        ]
        assert [v.id for v in parsed] == expected
