"""The object stores: a local directory (the embedded default, served to other hosts by
``objects.server``) or an S3(-compatible) bucket. Readers (the results service, the API) and
grant issuers (the providers) build the one their settings name (``objects.config``).

Vendor errors stop here: S3's are mapped to Touchstone's error tree in ``S3ObjectStore._call``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from touchstone.shared.errors import AuthError, PermanentError, RateLimitedError, UnavailableError
from touchstone.shared.objects.grants import GrantSigner, UploadGrant, s3_post_grant
from touchstone.shared.objects.keys import check_key

T = TypeVar("T")
CHUNK_BYTES = 256 * 1024


class ObjectStore(Protocol):
    """Objects by '/'-separated key. ``put`` is atomic: an object that exists is complete."""

    def uri(self, key: str) -> str:
        """The URI an object of ``key`` has, for people and MLflow (never followed by Touchstone)."""
        ...

    async def size(self, key: str) -> int | None:
        """The object's size in bytes; ``None`` when there is none."""
        ...

    async def exists(self, key: str, size: int) -> bool:
        """True when an object of ``key`` and ``size`` bytes is stored."""
        ...

    async def put(self, key: str, source: Path) -> str:
        """Store the file ``source`` under ``key`` (replacing it) and return its URI."""
        ...

    async def read(self, key: str) -> bytes:
        """The object's bytes (``FileNotFoundError`` when there is none)."""
        ...

    def chunks(self, key: str) -> AsyncIterator[bytes]:
        """The object's bytes in chunks, for streaming (``FileNotFoundError`` when there is none)."""
        ...

    def grant(self, prefix: str, max_bytes: int, ttl_s: float, now: datetime) -> UploadGrant:
        """Write access to ``prefix`` for a producer that holds no credentials."""
        ...


class LocalObjectStore:
    """A directory: ``{root}/{key}``, written through a temporary file and a rename. Other
    hosts upload through ``url`` (``objects.server``) with grants signed by ``signer``."""

    def __init__(self, root: Path, *, url: str = "", signer: GrantSigner | None = None) -> None:
        self.root = root.resolve()
        self.url = url
        self.signer = signer

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def uri(self, key: str) -> str:
        return self.path(key).as_uri()

    async def size(self, key: str) -> int | None:
        path = self.path(key)

        def stat() -> int | None:
            try:
                st = path.lstat()
            except OSError:
                return None
            return st.st_size if path.is_file() and not path.is_symlink() else None

        return await asyncio.to_thread(stat)

    async def exists(self, key: str, size: int) -> bool:
        return await self.size(key) == size

    async def put(self, key: str, source: Path) -> str:
        def copy() -> None:
            with source.open("rb") as src:
                self.write(key, src)

        await asyncio.to_thread(copy)
        return self.uri(key)

    def write(self, key: str, src: Any) -> None:
        """Store what the file-like ``src`` holds under ``key`` (blocking)."""
        dest = self.path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(src, out)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    async def read(self, key: str) -> bytes:
        return await asyncio.to_thread(self.path(key).read_bytes)

    async def chunks(self, key: str) -> AsyncIterator[bytes]:
        f = await asyncio.to_thread(self.path(key).open, "rb")
        try:
            while chunk := await asyncio.to_thread(f.read, CHUNK_BYTES):
                yield chunk
        finally:
            f.close()

    def grant(self, prefix: str, max_bytes: int, ttl_s: float, now: datetime) -> UploadGrant:
        if self.signer is None or not self.url:
            raise PermanentError("the local object store takes no uploads here (no url or grant key)")
        return self.signer.issue(self.url, prefix, max_bytes, ttl_s, now)


class S3ObjectStore:
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
            signature_version="s3v4",
            s3={"addressing_style": "path"} if endpoint_url else {},
        )
        self.client = boto3.client(
            "s3", endpoint_url=endpoint_url or None, region_name=region, config=config, **(credentials or {})
        )

    def _key(self, key: str) -> str:
        return f"{self.prefix}{check_key(key)}"

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    async def size(self, key: str) -> int | None:
        try:
            head = await self._call(lambda: self.client.head_object(Bucket=self.bucket, Key=self._key(key)))
        except FileNotFoundError:
            return None
        return int(head.get("ContentLength", -1))

    async def exists(self, key: str, size: int) -> bool:
        return await self.size(key) == size

    async def put(self, key: str, source: Path) -> str:
        await self._call(lambda: self.client.upload_file(str(source), self.bucket, self._key(key)))
        return self.uri(key)

    async def read(self, key: str) -> bytes:
        body = await self._call(lambda: self.client.get_object(Bucket=self.bucket, Key=self._key(key)))
        return await asyncio.to_thread(body["Body"].read)

    async def chunks(self, key: str) -> AsyncIterator[bytes]:
        got = await self._call(lambda: self.client.get_object(Bucket=self.bucket, Key=self._key(key)))
        body = got["Body"]
        try:
            while chunk := await self._call(lambda: body.read(CHUNK_BYTES)):
                yield chunk
        finally:
            body.close()

    def grant(self, prefix: str, max_bytes: int, ttl_s: float, now: datetime) -> UploadGrant:
        return s3_post_grant(self.client, self.bucket, self.prefix, prefix, max_bytes, ttl_s, now)

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
