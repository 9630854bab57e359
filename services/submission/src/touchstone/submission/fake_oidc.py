"""A small but faithful OIDC provider, for tests and demos of "Sign in with SSO" (never for
production): discovery, a JWKS, an authorize endpoint whose user has already signed in (it
approves at once and redirects back with a code), and a token endpoint that checks the client
(HTTP Basic), the code (once), the redirect URI and the PKCE verifier before it issues an RS256
ID token with the nonce it was given. ``nonce``, ``signing_key`` and ``lifetime_s`` make the
next ID tokens wrong in the ways a client must notice."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from litestar import Litestar, Request, Response, get, post
from litestar.response import Redirect

CLIENT_ID = "touchstone-ui"
CLIENT_SECRET = "ui-client-secret"
KID = "idp-key-1"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@dataclass
class FakeOidcProvider:
    """An OIDC provider whose user has already signed in there: /authorize approves at once.
    ``url`` is where it is served (its issuer); set it before the first request."""

    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    url: str = ""
    user: dict[str, Any] = field(
        default_factory=lambda: {"sub": "u-123", "cognito:username": "dana", "cognito:groups": ["touchstone_user"]}
    )
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    exchanged: int = 0
    # what the next ID token gets wrong (the refusal tests set one)
    nonce: str | None = None
    signing_key: rsa.RSAPrivateKey | None = None
    lifetime_s: int = 300

    def id_token(self, nonce: str) -> str:
        now = int(time.time())
        claims = {
            **self.user,
            "iss": self.url,
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + self.lifetime_s,
            "nonce": self.nonce or nonce,
        }
        return jwt.encode(claims, self.signing_key or self.key, algorithm="RS256", headers={"kid": KID})

    def app(self) -> Litestar:
        @get("/.well-known/openid-configuration")
        async def discovery() -> dict[str, Any]:
            return {
                "issuer": self.url,
                "authorization_endpoint": f"{self.url}/authorize",
                "token_endpoint": f"{self.url}/token",
                "jwks_uri": f"{self.url}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            }

        @get("/jwks")
        async def jwks() -> dict[str, Any]:
            public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
            return {"keys": [{**public, "kid": KID, "alg": "RS256", "use": "sig"}]}

        @get("/authorize")
        async def authorize(request: Request[Any, Any, Any]) -> Response[str] | Redirect:
            q = request.query_params
            wrong = [
                name
                for name, ok in (
                    ("response_type", q.get("response_type") == "code"),
                    ("client_id", q.get("client_id") == CLIENT_ID),
                    ("redirect_uri", str(q.get("redirect_uri", "")).endswith("/ui/oidc/callback")),
                    ("scope", "openid" in str(q.get("scope", "")).split()),
                    ("code_challenge_method", q.get("code_challenge_method") == "S256"),
                    ("code_challenge", len(str(q.get("code_challenge", ""))) == 43),
                    ("state", bool(q.get("state"))),
                    ("nonce", bool(q.get("nonce"))),
                )
                if not ok
            ]
            if wrong:
                return Response(f"invalid request: {', '.join(wrong)}", status_code=400, media_type="text/plain")
            code = secrets.token_urlsafe(16)
            self.codes[code] = {
                "redirect_uri": q["redirect_uri"],
                "challenge": q["code_challenge"],
                "nonce": q["nonce"],
            }
            back = urlencode({"code": code, "state": q["state"]})
            return Redirect(f"{q['redirect_uri']}?{back}", status_code=302)

        @post("/token", status_code=200)
        async def token(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
            form = await request.form()
            basic = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
            if request.headers.get("authorization") != basic or form.get("client_id") not in (None, CLIENT_ID):
                return Response({"error": "invalid_client"}, status_code=401)

            def bad(why: str) -> Response[dict[str, Any]]:
                return Response({"error": "invalid_grant", "error_description": why}, status_code=400)

            grant = self.codes.pop(str(form.get("code", "")), None)  # a code works once
            if form.get("grant_type") != "authorization_code" or grant is None:
                return bad("unknown or used code")
            if form.get("redirect_uri") != grant["redirect_uri"]:
                return bad("redirect_uri differs")
            verifier = str(form.get("code_verifier", ""))
            if b64(hashlib.sha256(verifier.encode()).digest()) != grant["challenge"]:
                return bad("PKCE verification failed")
            self.exchanged += 1
            return Response(
                {
                    "access_token": secrets.token_urlsafe(24),
                    "token_type": "Bearer",
                    "expires_in": self.lifetime_s,
                    "id_token": self.id_token(grant["nonce"]),
                }
            )

        return Litestar([discovery, jwks, authorize, token], logging_config=None)
