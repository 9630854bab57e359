"""Per-user quotas on new submissions (each starts a validation: a slot or a rented pod).

Two limits, kept for every API replica at once in one NATS KV bucket (``{ns}_quotas``), one
key per user, changed with compare-and-set so two replicas cannot both take the last place:

* ``max_submissions_per_hour``: submissions created in the last hour;
* ``max_concurrent_validations``: of those, the ones still validating (as the read model has
  them; one the projector has not seen yet counts as validating).

``decide`` is pure; ``Quotas.reserve`` loads, decides and writes. A refusal is
``QuotaExceeded`` (HTTP 429) with the seconds after which a try may succeed. Admins are not
limited.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import nats
from nats.js import JetStreamContext, api
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from touchstone.shared.errors import QuotaExceeded, UnavailableError
from touchstone.shared.jetstream import open_bucket
from touchstone.shared.store import ProjectionStore
from touchstone.shared.subjects import Bucket, Subjects

HOUR_S = 3600.0
VALIDATING_RETRY_S = 30


@dataclass(frozen=True)
class QuotaLimits:
    max_submissions_per_hour: int = 20
    max_concurrent_validations: int = 3


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_s: int = 0
    reason: str = ""


def decide(recent: list[tuple[str, float]], validating: int, now: float, limits: QuotaLimits) -> Decision:
    """May one more submission start, given this user's ``recent`` (id, created at) of the
    last hour and how many of them still validate?"""
    if len(recent) >= limits.max_submissions_per_hour:
        oldest = min(at for _, at in recent)
        wait = min(int(HOUR_S), max(1, math.ceil(oldest + HOUR_S - now)))
        return Decision(False, wait, f"at most {limits.max_submissions_per_hour} submissions per hour")
    if validating >= limits.max_concurrent_validations:
        return Decision(False, VALIDATING_RETRY_S,
                        f"at most {limits.max_concurrent_validations} validations at a time")
    return Decision(True)


async def open_quotas_bucket(js: JetStreamContext, subjects: Subjects) -> KeyValue:
    return await open_bucket(js, subjects, api.KeyValueConfig(
        bucket=subjects.bucket(Bucket.QUOTAS), description="Touchstone per-user quotas: recent submissions",
        history=1, storage=api.StorageType.FILE, ttl=2 * HOUR_S,
    ))


def _key(user: str) -> str:
    return "u_" + user.encode().hex()[:200]  # any user name as a valid, bounded key


class Quotas:
    def __init__(self, kv: KeyValue, store: ProjectionStore, limits: QuotaLimits) -> None:
        self.kv = kv
        self.store = store
        self.limits = limits

    async def reserve(self, user: str, submission_id: str, now: float, tries: int = 5) -> None:
        """Count ``submission_id`` against ``user``'s quota, or raise ``QuotaExceeded``."""
        for _ in range(tries):
            revision, recent = await self._load(user, now)
            validating = 0
            for sid, _at in recent:
                view = await self.store.get_submission(sid)
                validating += view is None or view.status == "VALIDATING"
            verdict = decide(recent, validating, now, self.limits)
            if not verdict.allowed:
                raise QuotaExceeded(f"quota: {verdict.reason}; try again in {verdict.retry_after_s}s",
                                    retry_after=verdict.retry_after_s)
            body = json.dumps([[sid, at] for sid, at in [*recent, (submission_id, now)]]).encode()
            try:
                if revision is None:
                    await self.kv.create(_key(user), body)
                else:
                    await self.kv.update(_key(user), body, last=revision)
                return
            except KeyWrongLastSequenceError:
                continue  # another replica counted a submission of this user first: count again
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as e:
                raise UnavailableError(f"quota store: {e!r}") from e
            except nats.js.errors.APIError as e:
                if "wrong last sequence" in str(e):
                    continue
                raise
        raise UnavailableError("quota store: too many concurrent submissions; try again")

    async def _load(self, user: str, now: float) -> tuple[int | None, list[tuple[str, float]]]:
        try:
            entry = await self.kv.get(_key(user))
        except KeyNotFoundError:
            return None, []
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as e:
            raise UnavailableError(f"quota store: {e!r}") from e
        try:
            items = [(str(sid), float(at)) for sid, at in json.loads(entry.value or b"[]")]
        except (ValueError, TypeError):
            items = []
        return entry.revision, [(sid, at) for sid, at in items if now - at < HOUR_S]
