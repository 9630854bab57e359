"""The projection store protocol.

Projections are read models rebuilt from the event stream, so a store may be dropped at any
time. Writes are upserts guarded by the last applied stream sequence: a document is only
replaced by a version with a higher ``seq``, which makes every replay and redelivery harmless.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Generic, Protocol, TypeVar

from touchstone.shared.evaluations import Evaluation, EvaluationQuery
from touchstone.shared.views import SubmissionView, TaskView

V = TypeVar("V")


@dataclass(frozen=True)
class Page(Generic[V]):
    items: list[V]
    next_cursor: str | None = None


@dataclass(frozen=True)
class Stored:
    """A view as the store keeps it, ready to serve: its owner (for the visibility check) and
    its JSON, serialised once when it was projected (the same bytes ``model_dump_json`` gives)."""

    owner: str
    status: str
    json: bytes


@dataclass
class Changes:
    """One batch of projection writes with the checkpoint they reach."""

    submissions: dict[str, SubmissionView] = field(default_factory=dict)
    tasks: dict[str, TaskView] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.submissions or self.tasks)


class ProjectionStore(Protocol):
    """Where read models live. Every method is safe to call concurrently from one event loop."""

    async def get_submission(self, submission_id: str) -> SubmissionView | None: ...

    async def list_submissions(
        self,
        *,
        owner: str | None = None,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[SubmissionView]:
        """Newest first (by creation time, then id)."""
        ...

    async def get_submission_json(self, submission_id: str) -> Stored | None:
        """The submission as stored, without parsing it."""
        ...

    async def list_submissions_json(
        self,
        *,
        owner: str | None = None,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[bytes]:
        """``list_submissions`` as stored JSON documents: one keyset range read of an index on
        (filter, created_at, id), no parsing and no sort."""
        ...

    async def get_task(self, submission_id: str, task_id: str) -> TaskView | None: ...

    async def list_tasks(
        self,
        *,
        submission_id: str | None = None,
        status: str | Collection[str] | None = None,
        platform: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[TaskView]:
        """Oldest queued first (by queue time, then key); ``status`` is one status or any of
        several."""
        ...

    async def list_evaluations(self, query: EvaluationQuery) -> Page[Evaluation]:
        """Evaluations matching the query's filters, ordered by its sort (a fixed column or any
        metric; a missing value sorts as the smallest), ties by key; pages by offset."""
        ...

    async def put_evaluations(self, rows: list[Evaluation]) -> None:
        """Insert or replace each row by its key (a redelivered attempt writes the same rows).
        Evaluations are written by the results service, not folded from events by the
        projector, so ``drop`` keeps them."""
        ...

    async def apply(self, changes: Changes, *, checkpoint: str, seq: int) -> None:
        """Write ``changes`` (each only if newer than what is stored) and move the named
        checkpoint to ``seq``."""
        ...

    async def checkpoint(self, name: str) -> int:
        """The last stream sequence applied under ``name`` (0 when none)."""
        ...

    async def drop(self) -> None:
        """Forget every projection and checkpoint."""
        ...

    async def ping(self) -> None:
        """Raise when the store is unreachable."""
        ...

    async def close(self) -> None: ...


def sortable(at: datetime) -> str:
    """Fixed-width UTC text for a timestamp, so text order is time order in every backend."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


CURSOR_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z~[A-Za-z0-9_.-]{1,200}$"
"""A keyset cursor: the last item's sortable time and key. Any text of this form is a valid
position (a page starts after it), so the API's schema can state exactly what it accepts."""
_CURSOR = re.compile(CURSOR_PATTERN)


def encode_cursor(at: datetime | str, key: str) -> str:
    """The keyset cursor after an item, from its time (or its ``sortable`` text) and key."""
    return f"{at if isinstance(at, str) else sortable(at)}~{key}"


def decode_cursor(cursor: str) -> tuple[str, str]:
    """Returns (sortable time, key); raises ValueError on text not of ``CURSOR_PATTERN``'s form."""
    if not _CURSOR.match(cursor):
        raise ValueError("invalid cursor")
    at, key = cursor.split("~", 1)
    return at, key


def as_bytes(doc: str | bytes) -> bytes:
    """A stored document as bytes (older rows hold text)."""
    return doc if isinstance(doc, bytes) else doc.encode()


def view_json(view: SubmissionView | TaskView) -> bytes:
    """The JSON a view is stored and served as (serialised once, at projection time)."""
    return view.__pydantic_serializer__.to_json(view)

