"""Store-level micro-bench of the API's reads (issue 17): one submission by id and a user's
first page of 50, as stored JSON, timed in-process against SQLite and, where
``TOUCHSTONE_TEST_MONGODB_URL`` names a server, MongoDB (a throw-away database)."""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from pathlib import Path
from typing import Any

from touchstone.shared.store.protocol import Changes, ProjectionStore
from touchstone.shared.store.sqlite import SqliteStore

from touchstone.bench.harness import percentile

MONGODB_URL_ENV = "TOUCHSTONE_TEST_MONGODB_URL"


async def _time(calls: int, call: Any) -> dict[str, float]:
    samples = []
    for _ in range(calls):
        began = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - began)
    return {
        "calls": calls,
        "p50_us": round(percentile(samples, 0.50) * 1e6, 1),
        "p99_us": round(percentile(samples, 0.99) * 1e6, 1),
    }


async def _measure(store: ProjectionStore, ids: list[str], users: int) -> dict[str, dict[str, float]]:
    return {
        "get_submission_json": await _time(2000, lambda: store.get_submission_json(random.choice(ids))),
        "list_submissions_json (owner, 50)": await _time(
            500, lambda: store.list_submissions_json(owner=f"user-{random.randrange(users)}", limit=50)
        ),
        "list_submissions_json (all, 50)": await _time(500, lambda: store.list_submissions_json(limit=50)),
    }


def run(sqlite_path: Path, batches: list[Changes], ids: list[str], users: int) -> dict[str, Any]:
    """SQLite over the bench's seeded file; MongoDB seeded with the same ``batches``."""

    async def main() -> dict[str, Any]:
        found: dict[str, Any] = {}
        sqlite = SqliteStore(sqlite_path)
        found["sqlite"] = await _measure(sqlite, ids, users)
        await sqlite.close()
        url = os.environ.get(MONGODB_URL_ENV)
        if not url:
            found["mongodb"] = f"skipped: set {MONGODB_URL_ENV}"
            return found
        from touchstone.shared.store.mongo import MongoStore

        mongo = MongoStore(url, database=f"touchstone_bench_{uuid.uuid4().hex[:8]}")
        await mongo.init()
        try:
            for i, changes in enumerate(batches):
                await mongo.apply(changes, checkpoint="bench-seed", seq=i + 1)
            found["mongodb"] = await _measure(mongo, ids, users)
        finally:
            await mongo.client.drop_database(mongo.db.name)
            await mongo.close()
        return found

    return asyncio.run(main())
