"""The production projection store: MongoDB through PyMongo's async client.

Each document is the view's JSON form (serialised once when projected and served as is) plus
``_id``, ``seq`` and the sortable key columns. Lists are keyset range reads of a compound index
whose leading fields are the filter and whose tail is the sort order, so no page sorts in
memory or skips documents.
Guarded upserts (``seq`` must grow) make replays and redeliveries harmless; a write whose
guard fails on an existing document raises a duplicate-key error, which means "already newer"
and is ignored.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReplaceOne, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError
from touchstone.shared.evaluations import FIXED_SORTS, Evaluation, EvaluationQuery, next_cursor
from touchstone.shared.store.protocol import (
    Changes,
    Page,
    Stored,
    as_bytes,
    decode_cursor,
    encode_cursor,
    sortable,
    view_json,
)
from touchstone.shared.views import SubmissionView, TaskView

DUPLICATE_KEY = 11000


class MongoStore:
    """``ProjectionStore`` on MongoDB."""

    def __init__(self, url: str, *, database: str | None = None) -> None:
        self.client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            url, serverSelectionTimeoutMS=5000, tz_aware=True
        )
        self.db = self.client.get_database(database) if database else self.client.get_default_database(
            default="touchstone"
        )
        self.submissions = self.db["submissions"]
        self.tasks = self.db["tasks"]
        self.checkpoints = self.db["checkpoints"]
        self.evaluations = self.db["evaluations"]

    async def init(self) -> None:
        # covering: the two lists served most read the document from the index alone
        await self.submissions.create_index([("created_key", DESCENDING), ("_id", DESCENDING), ("doc", ASCENDING)])
        await self.submissions.create_index(
            [("owner", ASCENDING), ("created_key", DESCENDING), ("_id", DESCENDING), ("doc", ASCENDING)]
        )
        await self.submissions.create_index(
            [("status", ASCENDING), ("created_key", DESCENDING), ("_id", DESCENDING)]
        )
        await self.submissions.create_index(
            [("owner", ASCENDING), ("status", ASCENDING), ("created_key", DESCENDING), ("_id", DESCENDING)]
        )
        await self.tasks.create_index([("submission_id", ASCENDING), ("queued_key", ASCENDING), ("_id", ASCENDING)])
        await self.tasks.create_index([("status", ASCENDING), ("queued_key", ASCENDING), ("_id", ASCENDING)])
        await self.tasks.create_index([("queued_key", ASCENDING), ("_id", ASCENDING)])
        await self.evaluations.create_index([("finished_at", DESCENDING), ("_id", ASCENDING)])
        for field in ("prediction_interval", "owner"):
            await self.evaluations.create_index([(field, ASCENDING), ("finished_at", DESCENDING), ("_id", ASCENDING)])

    # --- reads ---------------------------------------------------------------------------

    async def get_submission(self, submission_id: str) -> SubmissionView | None:
        found = await self.get_submission_json(submission_id)
        return SubmissionView.model_validate_json(found.json) if found else None

    async def get_submission_json(self, submission_id: str) -> Stored | None:
        doc = await self.submissions.find_one({"_id": submission_id}, {"owner": 1, "status": 1, "doc": 1})
        return Stored(doc["owner"], doc["status"], as_bytes(doc["doc"])) if doc else None

    async def list_submissions(
        self,
        *,
        owner: str | None = None,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[SubmissionView]:
        page = await self.list_submissions_json(owner=owner, status=status, limit=limit, cursor=cursor)
        return Page([SubmissionView.model_validate_json(doc) for doc in page.items], page.next_cursor)

    async def list_submissions_json(
        self,
        *,
        owner: str | None = None,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[bytes]:
        query: dict[str, Any] = {}
        if owner is not None:
            query["owner"] = owner
        if status is not None:
            query["status"] = status
        if cursor:
            at, key = decode_cursor(cursor)
            query["$or"] = [{"created_key": {"$lt": at}}, {"created_key": at, "_id": {"$lt": key}}]
        found = self.submissions.find(query, {"doc": 1, "created_key": 1}).sort(
            [("created_key", DESCENDING), ("_id", DESCENDING)]
        ).limit(limit + 1)
        docs = [d async for d in found]
        more = len(docs) > limit
        docs = docs[:limit]
        last = docs[-1] if more and docs else None
        cursor_out = encode_cursor(last["created_key"], last["_id"]) if last else None
        return Page([as_bytes(d["doc"]) for d in docs], cursor_out)

    async def get_task(self, submission_id: str, task_id: str) -> TaskView | None:
        doc = await self.tasks.find_one({"submission_id": submission_id, "task_id": task_id})
        return TaskView.model_validate_json(doc["doc"]) if doc else None

    async def list_tasks(
        self,
        *,
        submission_id: str | None = None,
        status: str | Collection[str] | None = None,
        platform: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[TaskView]:
        query: dict[str, Any] = {}
        if status is not None and not isinstance(status, str):
            query["status"] = {"$in": sorted(status)}
            status = None
        for field, value in (("submission_id", submission_id), ("status", status), ("platform", platform)):
            if value is not None:
                query[field] = value
        if cursor:
            at, key = decode_cursor(cursor)
            query["$or"] = [{"queued_key": {"$gt": at}}, {"queued_key": at, "_id": {"$gt": key}}]
        found = self.tasks.find(query, {"doc": 1}).sort([("queued_key", ASCENDING), ("_id", ASCENDING)]).limit(
            limit + 1
        )
        docs = [d async for d in found]
        items = [TaskView.model_validate_json(d["doc"]) for d in docs[:limit]]
        more = len(docs) > limit
        return Page(items, encode_cursor(items[-1].queued_at, items[-1].key) if more and items else None)

    async def list_evaluations(self, query: EvaluationQuery) -> Page[Evaluation]:
        found: dict[str, Any] = {}
        for field in ("owner", "feature_set", "prediction_interval", "trainer_ref", "side", "submission_id"):
            value = getattr(query, field)
            if value is not None:
                found[field] = value
        sort_field = query.sort if query.sort in FIXED_SORTS else f"v.{query.sort}"
        direction = DESCENDING if query.descending else ASCENDING
        cursor = (
            self.evaluations.find(found, {"doc": 1})
            .sort([(sort_field, direction), ("_id", ASCENDING)])
            .skip(query.offset)
            .limit(query.limit + 1)
        )
        docs = [d async for d in cursor]
        items = [Evaluation.model_validate_json(d["doc"]) for d in docs[: query.limit]]
        return Page(items, next_cursor(query, len(docs)))

    async def put_evaluations(self, rows: list[Evaluation]) -> None:
        if not rows:
            return
        ops = [
            ReplaceOne(
                {"_id": r.key},
                {"submission_id": r.submission_id, "owner": r.owner, "feature_set": r.feature_set,
                 "prediction_interval": r.prediction_interval, "trainer_ref": r.trainer_ref, "side": r.side,
                 "finished_at": sortable(r.finished_at), "v": r.sort_values(), "doc": r.model_dump_json()},
                upsert=True,
            )
            for r in rows
        ]
        await self.evaluations.bulk_write(ops, ordered=False)

    # --- writes --------------------------------------------------------------------------

    async def apply(self, changes: Changes, *, checkpoint: str, seq: int) -> None:
        await self._guarded(
            self.submissions,
            [
                (v.id, v.seq, {"owner": v.owner, "status": v.status.value,
                               "created_key": sortable(v.created_at), "doc": view_json(v)})
                for v in changes.submissions.values()
            ],
        )
        await self._guarded(
            self.tasks,
            [
                (v.key, v.seq, {"submission_id": v.submission_id, "task_id": v.task_id,
                                "status": v.status.value, "platform": v.platform,
                                "queued_key": sortable(v.queued_at), "doc": view_json(v)})
                for v in changes.tasks.values()
            ],
        )
        try:
            await self.checkpoints.update_one(
                {"_id": checkpoint, "seq": {"$lt": seq}}, {"$set": {"seq": seq}}, upsert=True
            )
        except DuplicateKeyError:
            pass  # already further along

    async def _guarded(self, collection: Any, rows: list[tuple[str, int, dict[str, Any]]]) -> None:
        if not rows:
            return
        ops = [
            UpdateOne({"_id": key, "seq": {"$lt": seq}}, {"$set": {**fields, "seq": seq}}, upsert=True)
            for key, seq, fields in rows
        ]
        try:
            await collection.bulk_write(ops, ordered=False)
        except BulkWriteError as e:
            others = [w for w in e.details.get("writeErrors", []) if w.get("code") != DUPLICATE_KEY]
            if others:
                raise

    async def checkpoint(self, name: str) -> int:
        doc = await self.checkpoints.find_one({"_id": name})
        return int(doc["seq"]) if doc else 0

    async def drop(self) -> None:
        for collection in (self.submissions, self.tasks, self.checkpoints):
            await collection.delete_many({})

    async def ping(self) -> None:
        await self.client.admin.command("ping")

    async def close(self) -> None:
        await self.client.close()
