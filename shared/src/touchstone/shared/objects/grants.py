"""Upload grants: write access to one attempt's prefix, capped in size and time.

The control plane issues a grant with each launch (the on-prem provider to its agent, the
RunPod provider to itself); the producer can then write under that prefix and nowhere else,
each object at most ``max_bytes``, until ``expires_at``. It holds no credentials.

* ``s3-post``: an S3 POST policy (``generate_presigned_post``) whose conditions are the
  prefix (``starts-with $key``) and the size (``content-length-range``); S3 enforces both
  and the expiry.
* ``embedded``: a token for the embedded store's ``PUT /objects/{key}`` (``objects.server``):
  the claims (prefix, size cap, expiry) signed with HMAC-SHA256 by a key that only the
  control plane holds; the server checks every claim on every upload.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from touchstone.shared.errors import AuthError
from touchstone.shared.objects.keys import check_key, check_under


class UploadGrant(BaseModel):
    """What a producer needs to put an attempt's outputs into the store (no credentials)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: Literal["s3-post", "embedded"]
    url: str = Field(description="where uploads go: the bucket's POST URL or the embedded store's base URL")
    prefix: str = Field(description="the attempt's prefix; every key must start with it")
    max_bytes: int = Field(ge=0, description="largest object that may be uploaded")
    expires_at: datetime
    key_prefix: str = Field("", description="prepended to a key in the store (the bucket's own prefix)")
    fields: dict[str, str] = Field(default_factory=dict, description="the POST policy's form fields (s3-post)")
    token: str = Field("", description="the signed claims (embedded)")

    def target(self, key: str) -> str:
        """The stored name of ``key``: checked to lie under the grant's prefix."""
        return self.key_prefix + check_under(key, self.prefix)


class GrantClaims(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    prefix: str
    max_bytes: int = Field(ge=0)
    exp: int = Field(description="expiry, Unix seconds")


class GrantRefused(AuthError):
    """An upload the grant does not allow (wrong prefix, too large, expired, forged)."""


class GrantSigner:
    """Signs and checks embedded grants with one secret key."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the upload grant key must be at least 16 bytes")
        self._secret = secret

    def _mac(self, body: bytes) -> str:
        return _b64(hmac.new(self._secret, body, hashlib.sha256).digest())

    def issue(self, url: str, prefix: str, max_bytes: int, ttl_s: float, now: datetime) -> UploadGrant:
        check_key(prefix.rstrip("/"))
        expires = now + timedelta(seconds=ttl_s)
        claims = GrantClaims(prefix=prefix, max_bytes=max_bytes, exp=int(expires.timestamp()))
        body = _b64(claims.model_dump_json().encode())
        return UploadGrant(kind="embedded", url=url, prefix=prefix, max_bytes=max_bytes,
                           expires_at=expires, token=f"{body}.{self._mac(body.encode())}")

    def check(self, token: str, key: str, now: datetime) -> GrantClaims:
        """The token's claims when they allow writing ``key`` at ``now``; ``GrantRefused`` otherwise."""
        body, _, mac = token.partition(".")
        if not body or not mac or not hmac.compare_digest(self._mac(body.encode()), mac):
            raise GrantRefused("the upload grant's signature does not match")
        try:
            claims = GrantClaims.model_validate_json(_unb64(body))
        except (ValueError, ValidationError) as e:
            raise GrantRefused("the upload grant is malformed") from e
        if claims.exp <= now.timestamp():
            raise GrantRefused("the upload grant has expired")
        try:
            check_under(key, claims.prefix)
        except ValueError as e:
            raise GrantRefused(f"the upload grant does not cover {key[:200]!r}") from e
        return claims


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def s3_post_grant(client: object, bucket: str, key_prefix: str, prefix: str, max_bytes: int, ttl_s: float,
                  now: datetime) -> UploadGrant:
    """An S3 POST policy for ``key_prefix + prefix``: S3 refuses any other key, any object over
    ``max_bytes`` and any upload after the expiry."""
    full = key_prefix + prefix
    post = client.generate_presigned_post(  # type: ignore[attr-defined]
        bucket, full + "${filename}",
        Conditions=[["starts-with", "$key", full], ["content-length-range", 0, max_bytes]],
        ExpiresIn=int(ttl_s),
    )
    fields = {k: str(v) for k, v in post["fields"].items() if k != "key"}
    return UploadGrant(kind="s3-post", url=str(post["url"]), prefix=prefix, max_bytes=max_bytes,
                       expires_at=now + timedelta(seconds=int(ttl_s)), key_prefix=key_prefix, fields=fields)


def policy_of(grant: UploadGrant) -> dict[str, object]:
    """The decoded POST policy of an ``s3-post`` grant (what S3 will enforce)."""
    return json.loads(base64.b64decode(grant.fields["policy"]))  # type: ignore[no-any-return]


def utcnow() -> datetime:
    return datetime.now(UTC)
