"""Who is calling: API tokens (hashed in a NATS KV bucket) and OIDC JWTs (JWKS-verified).

``Authorization: Bearer <credential>``: a credential with two dots is a JWT, anything else an
API token. Failures are ``Unauthenticated`` (401) or ``Forbidden`` (403).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
import nats.errors
from nats.js import JetStreamContext, api
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from touchstone.shared.errors import AuthError, NotFoundError, UnavailableError
from touchstone.shared.events import new_id
from touchstone.shared.jetstream import open_bucket
from touchstone.shared.subjects import Bucket, Subjects
from touchstone.submission.config import SubmissionSettings
from touchstone.submission.domain import Principal
from touchstone.submission.schemas import Token, TokenCreate, TokenCreated

log = logging.getLogger(__name__)

TOKEN_PREFIX = "tst_"
_KEY_TYPE = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
BOOTSTRAP_ID = "bootstrap"


class Unauthenticated(AuthError):
    """No credential, or one we do not accept (HTTP 401)."""

    status_code = 401


class Forbidden(AuthError):
    """A valid credential that may not do this (HTTP 403)."""

    status_code = 403


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def open_tokens_bucket(js: JetStreamContext, subjects: Subjects, *, replicas: int = 1) -> KeyValue:
    return await open_bucket(js, subjects, api.KeyValueConfig(
        bucket=subjects.bucket(Bucket.TOKENS),
        description="Touchstone API tokens (sha256 of the secret -> owner, role)",
        history=1, storage=api.StorageType.FILE, replicas=replicas,
    ))


# --- API tokens ---------------------------------------------------------------------------


class TokenRegistry:
    """API tokens: the key is the secret's sha256, so every process can verify and none can
    recover a secret. A watcher mirrors the bucket into a local cache (used only while it runs),
    so a revocation anywhere takes effect everywhere within moments (at once in the process
    that revoked); a token the watcher has not delivered yet is looked up in the bucket."""

    def __init__(self, kv: KeyValue, *, bootstrap_secret: str | None = None) -> None:
        self.kv = kv
        self._bootstrap = digest(bootstrap_secret) if bootstrap_secret else None
        self._cache: dict[str, Token] = {}
        self._watching = False

    async def create(self, body: TokenCreate, by: Principal) -> TokenCreated:
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token = Token(
            id=new_id("tok-"),
            user=body.user,
            role=body.role,
            description=body.description,
            created_at=datetime.now(UTC),
            created_by=by.name,
        )
        try:
            await self.kv.create(digest(secret), token.model_dump_json().encode())
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as e:
            raise UnavailableError(f"token store: {e!r}") from e
        return TokenCreated(**token.model_dump(), secret=secret)

    async def verify(self, secret: str) -> Principal:
        key = digest(secret)
        if self._bootstrap is not None and hmac.compare_digest(key, self._bootstrap):
            return Principal("admin", "admin", via="bootstrap")
        token = self._cache.get(key) if self._watching else None
        if token is None:
            try:
                entry = await self.kv.get(key)
            except KeyNotFoundError:
                raise Unauthenticated("unknown or revoked API token") from None
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as e:
                raise UnavailableError(f"token store: {e!r}") from e
            # not cached here: only the watcher fills the cache, so a revocation it has already
            # seen can never be undone by a lookup that raced with it
            token = Token.model_validate_json(entry.value or b"{}")
        return Principal(token.user, token.role, via="token")

    async def all(self) -> list[Token]:
        return [token for _, token in await self._entries()]

    async def revoke(self, token_id: str) -> Token:
        for key, token in await self._entries():
            if token.id == token_id:
                await self.kv.purge(key)
                self._cache.pop(key, None)
                return token
        raise NotFoundError(f"no token {token_id}")

    async def _entries(self) -> list[tuple[str, Token]]:
        watcher = await self.kv.watchall(ignore_deletes=True)
        found: list[tuple[str, Token]] = []
        try:
            while True:
                entry = await watcher.updates(timeout=5.0)  # type: ignore[no-untyped-call]
                if entry is None:
                    break
                if entry.value:
                    found.append((entry.key, Token.model_validate_json(entry.value)))
                if not entry.delta:
                    break
        except nats.errors.TimeoutError as e:
            raise UnavailableError("token store did not answer") from e
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]
        return sorted(found, key=lambda kt: kt[1].created_at)

    async def watch(self, stop: asyncio.Event) -> None:
        """Keep the cache in step with the bucket until ``stop`` is set."""
        watcher = await self.kv.watchall()
        self._watching = True
        try:
            while not stop.is_set():
                try:
                    entry = await watcher.updates(timeout=0.5)  # type: ignore[no-untyped-call]
                except nats.errors.TimeoutError:
                    continue
                if entry is None:
                    continue
                if entry.operation in ("DEL", "PURGE") or not entry.value:
                    self._cache.pop(entry.key, None)
                else:
                    self._cache[entry.key] = Token.model_validate_json(entry.value)
        finally:
            self._watching = False
            self._cache.clear()
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]


def bootstrap_admin_token(settings: SubmissionSettings) -> tuple[str, bool]:
    """The bootstrap admin secret: ``TOUCHSTONE_ADMIN_TOKEN``, else the one kept in the data
    directory, else a new one written there (mode 0600). Returns (secret, newly generated)."""
    if settings.admin_token is not None and settings.admin_token.get_secret_value():
        return settings.admin_token.get_secret_value(), False
    path: Path = settings.admin_token_file
    if path.exists():
        kept = path.read_text().strip()
        if kept:
            return kept, False
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return secret, True


# --- OIDC JWTs ----------------------------------------------------------------------------


JWKS_RETRY_S = 10.0
"""After a failed JWKS fetch, keys already fetched are used this long before the next try."""


class JwtVerifier:
    """Verifies OIDC JWTs against the issuer's JWKS: signature (allow-listed asymmetric
    algorithms only), ``exp`` (required), ``iss``, ``aud`` (or Cognito's ``client_id``)."""

    def __init__(self, settings: SubmissionSettings, http: httpx.AsyncClient | None = None) -> None:
        if not (settings.oidc_issuer and settings.oidc_audience):
            raise ValueError("JWT sign-in needs oidc_issuer and oidc_audience as well as oidc_jwks_url")
        unsafe = [a for a in settings.oidc_algorithms if a.lower() == "none" or a.upper().startswith("HS")]
        if unsafe:
            raise ValueError(f"oidc_algorithms must be asymmetric; refusing {unsafe}")
        self.settings = settings
        self.http = http or httpx.AsyncClient(timeout=5.0)
        self._keys: dict[str, tuple[jwt.PyJWK, str | None]] = {}
        self._fetched_at = -1e9
        self._failed_at = -1e9
        self._lock = asyncio.Lock()

    async def verify(self, token: str, *, audiences: tuple[str, ...] = ()) -> Principal:
        """The caller a valid token names, with the role its groups give."""
        return self.principal(await self.claims(token, audiences=audiences))

    async def claims(self, token: str, *, audiences: tuple[str, ...] = ()) -> dict[str, Any]:
        """The claims of a valid token. ``audiences``: the ``aud`` values accepted (default:
        ``oidc_audience``; the UI's sign-in also accepts its own client id)."""
        s = self.settings
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise Unauthenticated(f"malformed token: {e}") from e
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in s.oidc_algorithms:
            raise Unauthenticated(f"token algorithm {alg!r} is not accepted")
        if not isinstance(kid, str) or not kid:
            raise Unauthenticated("token has no key id")
        found = await self._key(kid)
        if found is None:
            raise Unauthenticated("token signed with an unknown key")
        key, jwk_alg = found
        if (jwk_alg and jwk_alg != alg) or _KEY_TYPE.get(alg[:2]) not in (None, key.key_type):
            raise Unauthenticated("token algorithm does not match its key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                issuer=s.oidc_issuer,
                leeway=s.oidc_leeway_s,
                options={"require": ["exp", "iss"], "verify_aud": False},
            )
        except (jwt.PyJWTError, TypeError, ValueError) as e:
            raise Unauthenticated(f"token rejected: {e}") from e
        self._check_audience(claims, audiences or (s.oidc_audience,))
        return claims

    def principal(self, claims: dict[str, Any]) -> Principal:
        """The user and role verified claims name (``Forbidden`` when in no Touchstone group)."""
        return Principal(self._user(claims), self._role(claims), via="jwt")

    def _check_audience(self, claims: dict[str, Any], accepted: tuple[str, ...]) -> None:
        aud = claims.get("aud")
        auds = [aud] if isinstance(aud, str) else list(aud or [])
        if any(a in auds for a in accepted):
            return
        if aud is None and claims.get("client_id") in accepted:
            return
        raise Unauthenticated("token is for another audience")

    def _user(self, claims: dict[str, Any]) -> str:
        """The user the one configured claim names, in the SSO users' own namespace."""
        value = claims.get(self.settings.oidc_username_claim)
        if not isinstance(value, str) or not value or len(value) > 128 or not value.isprintable():
            raise Unauthenticated(f"token names no user ({self.settings.oidc_username_claim})")
        return self.settings.oidc_user_prefix + value

    def _role(self, claims: dict[str, Any]) -> str:
        groups = claims.get(self.settings.oidc_groups_claim) or []
        if isinstance(groups, str):
            groups = groups.replace(",", " ").split()
        if self.settings.oidc_admin_group in groups:
            return "admin"
        if self.settings.oidc_user_group in groups:
            return "user"
        raise Forbidden("you are in no Touchstone group")

    async def _key(self, kid: str) -> tuple[jwt.PyJWK, str | None] | None:
        """The key ``kid`` names in the issuer's current JWKS: fetched again when older than
        ``jwks_max_age_s`` (removed keys are dropped) and, at most every ``jwks_refresh_s``,
        when a token names a key id not seen yet (a rotation)."""
        if kid in self._keys and not self._stale():
            return self._keys[kid]
        async with self._lock:
            age = time.monotonic() - self._fetched_at
            if self._stale() or (kid not in self._keys and age >= self.settings.jwks_refresh_s):
                try:
                    await self._fetch()
                except UnavailableError:
                    self._failed_at = time.monotonic()  # no fetch per request while the issuer is down
                    if not self._keys or age >= 2 * self.settings.jwks_max_age_s:
                        raise
                    log.warning("JWKS fetch failed; using keys fetched %.0fs ago", age)
        return self._keys.get(kid)

    def _stale(self) -> bool:
        now = time.monotonic()
        return now - self._fetched_at >= self.settings.jwks_max_age_s and now - self._failed_at >= JWKS_RETRY_S

    async def _fetch(self) -> None:
        try:
            response = await self.http.get(self.settings.oidc_jwks_url)
            response.raise_for_status()
            data = response.json()
        except (httpx.HTTPError, json.JSONDecodeError) as e:
            raise UnavailableError(f"could not fetch the JWKS: {e!r}") from e
        self._fetched_at = time.monotonic()
        keys: dict[str, tuple[jwt.PyJWK, str | None]] = {}
        for raw in data.get("keys", []) if isinstance(data, dict) else []:
            if not isinstance(raw, dict) or raw.get("use", "sig") != "sig" or not raw.get("kid"):
                continue
            try:
                keys[raw["kid"]] = (jwt.PyJWK.from_dict(raw), raw.get("alg"))
            except jwt.PyJWTError as e:
                log.warning("skipping JWKS key %s: %s", raw.get("kid"), e)
        self._keys = keys

    async def close(self) -> None:
        await self.http.aclose()


class JwtCache:
    """Principals of JWTs verified in the last ``ttl_s`` seconds, keyed by the token's sha256
    (never past the token's ``exp``), so a busy client's signature is checked once per ``ttl_s``,
    not once per request. Bounded: full, it starts again empty. Only successes are kept."""

    def __init__(self, ttl_s: float, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[tuple[str, tuple[str, ...]], tuple[Principal, float]] = {}

    def get(self, key: tuple[str, tuple[str, ...]]) -> Principal | None:
        found = self._entries.get(key)
        if found is None:
            return None
        if time.monotonic() >= found[1]:
            del self._entries[key]
            return None
        return found[0]

    def put(self, key: tuple[str, tuple[str, ...]], principal: Principal, exp: Any) -> None:
        if self.ttl_s <= 0 or not isinstance(exp, int | float):
            return
        left = min(self.ttl_s, float(exp) - time.time())
        if left <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (principal, time.monotonic() + left)


class Authenticator:
    """Turns an ``Authorization`` header into a ``Principal``."""

    def __init__(self, tokens: TokenRegistry, jwts: JwtVerifier | None) -> None:
        self.tokens = tokens
        self.jwts = jwts
        # never longer than the JWKS is trusted: a withdrawn key stops being honoured on schedule
        ttl = min(jwts.settings.jwt_cache_s, jwts.settings.jwks_max_age_s) if jwts is not None else 0.0
        self.jwt_cache = JwtCache(ttl)

    async def authenticate(self, header: str | None, *, audiences: tuple[str, ...] = ()) -> Principal:
        """``audiences``: the JWT ``aud`` values accepted (default: the API's)."""
        if not header:
            raise Unauthenticated("sign in: send Authorization: Bearer <token>")
        scheme, _, credential = header.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise Unauthenticated("use Authorization: Bearer <token>")
        if credential.count(".") == 2:
            if self.jwts is None:
                raise Unauthenticated("JWT sign-in is not configured")
            key = (digest(credential), audiences)
            cached = self.jwt_cache.get(key)
            if cached is not None:
                return cached
            claims = await self.jwts.claims(credential, audiences=audiences)
            principal = self.jwts.principal(claims)
            self.jwt_cache.put(key, principal, claims.get("exp"))
            return principal
        return await self.tokens.verify(credential)
