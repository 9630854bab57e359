"""Single sign-on for the web UI: the OIDC authorization-code flow with PKCE, state and nonce.

``OidcClient`` reads the issuer's discovery document, builds the authorization URL and trades
the returned code (with the PKCE verifier) for tokens. The ID token is then checked by the
API's own ``JwtVerifier`` (signature against the issuer's JWKS, issuer, audience = our client
id, expiry) and against this sign-in's nonce; its groups give the role exactly as they do for
API callers. What a sign-in in progress needs (state, nonce, verifier) is a ``Flow``, kept
in the browser's short-lived flow cookie until the callback.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from touchstone.shared.errors import AuthError, UnavailableError
from touchstone.submission.config import SubmissionSettings

FLOW_TTL_S = 600


class SignInFailed(AuthError):
    """The identity provider's answer does not sign this browser in (HTTP 401)."""

    status_code = 401


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge of a PKCE verifier (RFC 7636)."""
    return _b64(hashlib.sha256(verifier.encode()).digest())


@dataclass(frozen=True)
class Flow:
    """One sign-in in progress: what the callback must find again."""

    state: str
    nonce: str
    verifier: str
    next: str
    redirect_uri: str
    expires: float

    @classmethod
    def new(cls, next: str, redirect_uri: str, *, ttl_s: float = FLOW_TTL_S) -> Flow:
        return cls(
            state=secrets.token_urlsafe(24),
            nonce=secrets.token_urlsafe(24),
            verifier=secrets.token_urlsafe(48),
            next=next,
            redirect_uri=redirect_uri,
            expires=time.time() + ttl_s,
        )

    def encode(self) -> str:
        return _b64(json.dumps(asdict(self), separators=(",", ":")).encode())

    @classmethod
    def decode(cls, raw: str | None) -> Flow | None:
        """The flow in a cookie; None when absent, unreadable or expired."""
        if not raw:
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
            flow = cls(**{k: data[k] for k in cls.__dataclass_fields__})
        except (ValueError, TypeError, KeyError):
            return None
        if not all(isinstance(v, str) for v in (flow.state, flow.nonce, flow.verifier, flow.next, flow.redirect_uri)):
            return None
        return flow if isinstance(flow.expires, int | float) and flow.expires > time.time() else None


class OidcClient:
    """The UI's client at the OIDC issuer (discovery, authorization URL, token endpoint)."""

    def __init__(self, settings: SubmissionSettings, http: httpx.AsyncClient | None = None) -> None:
        if not settings.sso_enabled:
            raise ValueError("SSO needs oidc_client_id, oidc_issuer and oidc_jwks_url")
        self.settings = settings
        self.http = http or httpx.AsyncClient(timeout=5.0)
        self._meta: dict[str, Any] | None = None
        self._lock = asyncio.Lock()

    async def metadata(self) -> dict[str, Any]:
        """The issuer's discovery document (fetched once, when it is first needed)."""
        async with self._lock:
            if self._meta is None:
                self._meta = await self._discover()
        return self._meta

    async def _discover(self) -> dict[str, Any]:
        s = self.settings
        url = s.oidc_discovery_url or s.oidc_issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            response = await self.http.get(url)
            response.raise_for_status()
            meta = response.json()
        except (httpx.HTTPError, ValueError) as e:
            raise UnavailableError(f"the identity provider's discovery document: {e!r}") from e
        if not isinstance(meta, dict) or meta.get("issuer") != s.oidc_issuer:
            raise UnavailableError(f"the discovery document at {url} is not for the issuer {s.oidc_issuer}")
        for endpoint in ("authorization_endpoint", "token_endpoint"):
            if not isinstance(meta.get(endpoint), str) or not meta[endpoint].startswith(("https://", "http://")):
                raise UnavailableError(f"the discovery document at {url} has no {endpoint}")
        if "S256" not in meta.get("code_challenge_methods_supported", ["S256"]):
            raise UnavailableError("the identity provider does not support PKCE with S256")
        return meta

    async def authorization_url(self, flow: Flow) -> str:
        meta = await self.metadata()
        params = {
            "response_type": "code",
            "client_id": self.settings.oidc_client_id,
            "redirect_uri": flow.redirect_uri,
            "scope": " ".join(self.settings.oidc_scopes),
            "state": flow.state,
            "nonce": flow.nonce,
            "code_challenge": pkce_challenge(flow.verifier),
            "code_challenge_method": "S256",
        }
        endpoint: str = meta["authorization_endpoint"]
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{urlencode(params)}"

    async def exchange(self, code: str, flow: Flow) -> str:
        """Trade the code for tokens; returns the (not yet verified) ID token."""
        meta = await self.metadata()
        s = self.settings
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": flow.redirect_uri,
            "code_verifier": flow.verifier,
            "client_id": s.oidc_client_id,
        }
        auth: httpx.Auth | None = None
        if s.oidc_client_secret is not None:
            methods = meta.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
            if "client_secret_basic" in methods:
                auth = httpx.BasicAuth(s.oidc_client_id, s.oidc_client_secret.get_secret_value())
            else:
                data["client_secret"] = s.oidc_client_secret.get_secret_value()
        try:
            response = await self.http.post(
                meta["token_endpoint"],
                data=data,
                auth=auth or httpx.USE_CLIENT_DEFAULT,
                headers={"Accept": "application/json"},
            )
        except httpx.HTTPError as e:
            raise UnavailableError(f"the identity provider's token endpoint: {e!r}") from e
        try:
            body = response.json()
        except ValueError:
            body = None
        body = body if isinstance(body, dict) else {}
        if response.status_code != 200:
            why = body.get("error_description") or body.get("error") or f"HTTP {response.status_code}"
            raise SignInFailed(f"the identity provider did not accept the sign-in code: {why}")
        id_token = body.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise SignInFailed("the identity provider sent no ID token")
        return id_token

    async def close(self) -> None:
        await self.http.aclose()
