"""Adapters of the results service: the artifact store (``touchstone.shared.objects``: a local
directory or S3), the ledger of what was published (a NATS key-value bucket) and the event
history it reads params from.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from nats.js import JetStreamContext, api
from nats.js.errors import KeyNotFoundError
from touchstone.shared import events as ev
from touchstone.shared.jetstream import open_bucket
from touchstone.shared.objects.stores import LocalObjectStore, ObjectStore, S3ObjectStore
from touchstone.shared.publisher import EventPublisher
from touchstone.shared.subjects import Bucket, Subjects

T = TypeVar("T")


# --- artifact stores: one implementation, in ``touchstone.shared.objects`` -----------------

ArtifactStore = ObjectStore
LocalArtifactStore = LocalObjectStore
S3ArtifactStore = S3ObjectStore


# --- the ledger: what was published ---------------------------------------------------------


class KvLedger:
    """JSON records in the ``{ns}_results`` key-value bucket, shared by every replica."""

    def __init__(self, kv: Any) -> None:
        self.kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext, subjects: Subjects) -> KvLedger:
        kv = await open_bucket(js, subjects, api.KeyValueConfig(
            bucket=subjects.bucket(Bucket.RESULTS), description="Touchstone results: what was published", history=1,
            storage=api.StorageType.FILE,
        ))
        return cls(kv)

    async def get(self, key: str) -> dict[str, Any] | None:
        try:
            entry = await self.kv.get(key)
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        body = json.loads(entry.value)
        return body if isinstance(body, dict) else None

    async def put(self, key: str, record: dict[str, Any]) -> None:
        await self.kv.put(key, json.dumps(record, default=str).encode())


# --- event history --------------------------------------------------------------------------


class EventHistory:
    """Reads what the events stream says about a task or a submission."""

    def __init__(self, publisher: EventPublisher) -> None:
        self.publisher = publisher

    async def task_queued(self, submission_id: str, task_id: str) -> ev.TaskQueued | None:
        """The latest ``TaskQueued`` of a task: its spec and prediction interval."""
        history = await self.publisher.load_task(submission_id, task_id)
        queued = [r.event for r in history if isinstance(r.event, ev.TaskQueued)]
        return queued[-1] if queued else None

    async def submission_created(self, submission_id: str) -> ev.SubmissionCreated | None:
        history = await self.publisher.load("submission", submission_id)
        created = [r.event for r in history if isinstance(r.event, ev.SubmissionCreated)]
        return created[0] if created else None
