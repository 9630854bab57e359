"""The producer's side: put an attempt's collected files into the store with the grant that
came with the launch. Blocking (run it in a thread); plain HTTP, no cloud SDK and no
credentials on the producer's host.

| the store answers                          | error                        |
|--------------------------------------------|------------------------------|
| 2xx                                        | none                         |
| 403 (S3 policy, or a grant refused)        | ``GrantRefused`` (permanent) |
| 413, or 400 (S3's EntityTooLarge)          | ``PermanentError``           |
| 5xx, 429, timeouts, connection errors      | ``UnavailableError`` (tried again, ``tries`` times) |
| (the grant expired before the upload)      | ``GrantExpired``, retryable by a new attempt |
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx
from touchstone.shared.errors import PermanentError, UnavailableError
from touchstone.shared.objects.grants import GrantRefused, UploadGrant, utcnow
from touchstone.shared.objects.keys import output_key, safe_relative

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Staged:
    """One collected file on the producer's host and where it goes in the attempt's folder."""

    name: str
    """Its name in the event (``long.json``, ``metrics.json``, ``log``)."""
    relative: str
    """Its place under the attempt's prefix (``models/long.json``, ``console.log``)."""
    path: Path


class GrantExpired(UnavailableError):
    """The grant ran out before the upload (an attempt that ran longer than its grant): this
    attempt cannot store its outputs, a new one (with a new grant) can."""


def upload_file(grant: UploadGrant, key: str, path: Path, *, timeout_s: float = 60.0) -> None:
    """Put the file at ``path`` under ``key`` (one try)."""
    target = grant.target(key)  # refuses a key outside the grant before anything is sent
    if grant.expires_at <= utcnow():
        raise GrantExpired(f"the upload grant expired at {grant.expires_at.isoformat()}")
    size = path.stat().st_size
    if size > grant.max_bytes:
        raise GrantRefused(f"{key} is {size} bytes, more than the grant's {grant.max_bytes}")
    try:
        with httpx.Client(timeout=timeout_s) as client, path.open("rb") as body:
            if grant.kind == "embedded":
                response = client.put(f"{grant.url.rstrip('/')}/{target}", content=body,
                                      headers={"Authorization": f"Bearer {grant.token}",
                                               "Content-Length": str(size)})
            else:
                response = client.post(grant.url, data={**grant.fields, "key": target},
                                       files={"file": (path.name, body, "application/octet-stream")})
    except httpx.HTTPError as e:
        raise UnavailableError(f"the object store is unreachable: {e!r}") from e
    status = response.status_code
    if status < 300:
        return
    detail = f"the object store refused {key}: {status} {response.text[:300]}"
    if status in (429,) or status >= 500:
        raise UnavailableError(detail)
    if status == 403:
        raise GrantRefused(detail)
    raise PermanentError(detail)


def publish(
    grant: UploadGrant,
    submission_id: str,
    task_id: str,
    attempt: int,
    files: Iterable[Staged],
    *,
    tries: int = 3,
    backoff_s: float = 1.0,
    timeout_s: float = 60.0,
) -> dict[str, str]:
    """Upload each file to its key under the attempt's prefix; ``{name: key}``. A store that
    is down is tried again ``tries`` times; a refusal is raised at once."""
    published: dict[str, str] = {}
    for staged in files:
        key = output_key(submission_id, task_id, attempt, safe_relative(staged.relative))
        for n in range(1, tries + 1):
            try:
                upload_file(grant, key, staged.path, timeout_s=timeout_s)
                break
            except GrantExpired:
                raise
            except UnavailableError as e:
                if n == tries:
                    raise
                log.warning("upload of %s failed (try %d of %d): %s", key, n, tries, e)
                time.sleep(backoff_s * n)
        published[staged.name] = key
    return published
