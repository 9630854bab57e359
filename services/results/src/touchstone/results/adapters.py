"""Adapters of the results service: the artifact store (a local directory or S3), the ledger
of what was published (a NATS key-value bucket) and the event history it reads params from.

Vendor errors stop here: S3's are mapped to Touchstone's error tree in ``S3ArtifactStore._call``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from nats.js import JetStreamContext, api
from nats.js.errors import KeyNotFoundError
from touchstone.shared import events as ev
from touchstone.shared.errors import (
    AuthError,
    InvalidInputError,
    PermanentError,
    RateLimitedError,
    UnavailableError,
)
from touchstone.shared.jetstream import open_bucket
from touchstone.shared.publisher import EventPublisher
from touchstone.shared.subjects import Subjects

T = TypeVar("T")


# --- artifact stores ------------------------------------------------------------------------


class ArtifactStore(Protocol):
    """Where published models and logs live, by '/'-separated key.

    ``put`` is atomic: an object that exists is complete, so ``exists`` is how a redelivered
    event learns that there is nothing left to upload.
    """

    def uri(self, key: str) -> str:
        """The URI an object of ``key`` has (whether or not it exists)."""
        ...

    async def exists(self, key: str, size: int) -> bool:
        """True when an object of ``key`` and ``size`` bytes is stored."""
        ...

    async def put(self, key: str, source: Path) -> str:
        """Store the file ``source`` under ``key`` (replacing it) and return its URI."""
        ...

    async def read(self, key: str) -> bytes:
        """The object's bytes (raises ``FileNotFoundError`` when there is none)."""
        ...


def check_key(key: str) -> str:
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise InvalidInputError(f"unsafe object key {key!r}")
    return key


class LocalArtifactStore:
    """A directory: ``{root}/{key}``, written through a temporary file and a rename."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()

    async def exists(self, key: str, size: int) -> bool:
        path = self._path(key)
        return await asyncio.to_thread(lambda: path.is_file() and path.stat().st_size == size)

    async def put(self, key: str, source: Path) -> str:
        await asyncio.to_thread(self._copy, source, self._path(key))
        return self.uri(key)

    async def read(self, key: str) -> bytes:
        return await asyncio.to_thread(self._path(key).read_bytes)

    @staticmethod
    def _copy(source: Path, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, source.open("rb") as src:
                shutil.copyfileobj(src, out)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class S3ArtifactStore:
    """A bucket (AWS or any S3-compatible store): ``s3://{bucket}/{prefix}{key}``."""

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        timeout_s: float = 30.0,
        max_attempts: int = 3,
        credentials: dict[str, str] | None = None,
    ) -> None:
        import boto3  # type: ignore[import-untyped]
        from botocore.config import Config  # type: ignore[import-untyped]

        self.bucket = bucket
        self.prefix = prefix
        config = Config(
            connect_timeout=timeout_s,
            read_timeout=timeout_s,
            retries={"max_attempts": max_attempts, "mode": "standard"},
            s3={"addressing_style": "path"} if endpoint_url else {},
        )
        self.client = boto3.client(
            "s3", endpoint_url=endpoint_url or None, region_name=region, config=config, **(credentials or {})
        )

    def _key(self, key: str) -> str:
        return f"{self.prefix}{check_key(key)}"

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    async def exists(self, key: str, size: int) -> bool:
        try:
            head = await self._call(lambda: self.client.head_object(Bucket=self.bucket, Key=self._key(key)))
        except FileNotFoundError:
            return False
        return int(head.get("ContentLength", -1)) == size

    async def put(self, key: str, source: Path) -> str:
        await self._call(lambda: self.client.upload_file(str(source), self.bucket, self._key(key)))
        return self.uri(key)

    async def read(self, key: str) -> bytes:
        body = await self._call(lambda: self.client.get_object(Bucket=self.bucket, Key=self._key(key)))
        return await asyncio.to_thread(body["Body"].read)

    async def _call(self, fn: Callable[[], T]) -> T:
        """Run one boto3 call off the loop and map its errors to ours."""
        from boto3.exceptions import S3UploadFailedError  # type: ignore[import-untyped]
        from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

        try:
            return await asyncio.to_thread(fn)
        except ClientError as e:
            raise _s3_error(e) from e
        except S3UploadFailedError as e:
            cause = e.__cause__ or e.__context__
            if isinstance(cause, ClientError):
                raise _s3_error(cause) from e
            raise UnavailableError(f"S3 upload failed: {e}") from e
        except BotoCoreError as e:  # endpoint unreachable, timeouts, credentials not found
            if type(e).__name__ == "NoCredentialsError":
                raise AuthError(f"S3: {e}") from e
            raise UnavailableError(f"S3: {e}") from e


def _s3_error(e: Any) -> Exception:
    error = e.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    message = f"S3 {code or status}: {error.get('Message', '')}"
    if code in ("404", "NoSuchKey", "NotFound"):
        return FileNotFoundError(message)
    if code in ("SlowDown", "Throttling", "RequestLimitExceeded") or status in (429, 503):
        return RateLimitedError(message, retry_after=None)
    if status >= 500 or status == 0:
        return UnavailableError(message)
    if status in (401, 403):
        return AuthError(message)
    return PermanentError(message)


# --- the ledger: what was published ---------------------------------------------------------


class KvLedger:
    """JSON records in the ``{ns}_results`` key-value bucket, shared by every replica."""

    def __init__(self, kv: Any) -> None:
        self.kv = kv

    @staticmethod
    def bucket_name(subjects: Subjects) -> str:
        return subjects.bucket("results")

    @classmethod
    async def open(cls, js: JetStreamContext, subjects: Subjects) -> KvLedger:
        kv = await open_bucket(js, subjects, api.KeyValueConfig(
            bucket=cls.bucket_name(subjects), description="Touchstone results: what was published", history=1,
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
