"""OIDC JWT sign-in against a JWKS served over HTTP, and forged tokens (each → 401)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from touchstone.submission.auth import JwtVerifier
from touchstone.submission.config import SubmissionSettings

ISSUER = "https://issuer.test/pool"  # as the issuer fixture has them
AUDIENCE = "touchstone-tests"
KID = "test-key-1"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unsigned(header: dict, claims: dict, signature: bytes = b"") -> str:
    head = b64(json.dumps(header).encode())
    body = b64(json.dumps(claims).encode())
    return f"{head}.{body}.{b64(signature)}"


def claims(**overrides: object) -> dict:
    now = int(time.time())
    body = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "exp": now + 300,
        "iat": now,
        "cognito:username": "mallory",
        "cognito:groups": ["touchstone_admin"],
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


async def who(api, token: str) -> int:
    return (await api.client(token).get("/api/v1/tokens")).status_code


async def test_a_valid_jwt_signs_in_with_its_groups_role(api) -> None:
    assert (api.issuer.iss, api.issuer.aud, api.issuer.kid) == (ISSUER, AUDIENCE, KID)
    user = api.client(api.issuer.token())
    r = await user.post("/api/v1/submissions", json={"git_url": "https://github.com/org/fs.git"})
    assert r.status_code == 201 and r.json()["owner"] == "sso:jwt-user"
    assert (await user.get("/api/v1/tokens")).status_code == 403
    admin = api.client(api.issuer.token({"cognito:groups": ["touchstone_admin"], "cognito:username": "ops"}))
    assert (await admin.get("/api/v1/tokens")).status_code == 200
    nobody = api.client(api.issuer.token({"cognito:groups": ["someone_else"]}))
    assert (await nobody.get("/api/v1/submissions")).status_code == 403
    # Cognito access tokens carry client_id instead of aud
    access = api.client(api.issuer.token(aud=None, client_id=AUDIENCE, username="svc"))
    assert (await access.get("/api/v1/submissions")).status_code == 200


async def test_forged_and_invalid_tokens_are_refused(api, rsa_key) -> None:
    pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    head = {"alg": "HS256", "typ": "JWT", "kid": KID}
    signing_input = f"{b64(json.dumps(head).encode())}.{b64(json.dumps(claims()).encode())}"
    hs256_with_public_key = f"{signing_input}.{b64(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())}"
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    valid = api.issuer.token(claims())
    head_b64, _, sig_b64 = valid.split(".")
    tampered_body = b64(json.dumps(claims(**{"cognito:username": "root"})).encode())
    forged = {
        "alg none": unsigned({"alg": "none", "typ": "JWT", "kid": KID}, claims()),
        "alg none, no kid": unsigned({"alg": "none"}, claims()),
        "HS256 signed with the public key": hs256_with_public_key,
        "wrong aud": api.issuer.token(claims(aud="someone-else")),
        "wrong iss": api.issuer.token(claims(iss="https://evil.test/pool")),
        "expired": api.issuer.token(claims(exp=int(time.time()) - 3600)),
        "missing exp": api.issuer.token(claims(), exp=None),
        "unknown kid": api.issuer.token(claims(), kid="not-in-jwks"),
        "no kid": jwt.encode(claims(), api.issuer.key, algorithm="RS256"),
        "signed by another key, same kid": jwt.encode(claims(), other_key, algorithm="RS256", headers={"kid": KID}),
        "ES256 under the RSA key's kid": jwt.encode(claims(), ec_key, algorithm="ES256", headers={"kid": KID}),
        "tampered claims": f"{head_b64}.{tampered_body}.{sig_b64}",
        "not before the future": api.issuer.token(claims(nbf=int(time.time()) + 3600)),
        "garbage": "a.b.c",
        "api token that does not exist": "tst_nope",
    }
    wrong = {name: code for name, token in forged.items() if (code := await who(api, token)) != 401}
    assert not wrong
    assert await who(api, valid) == 200
    for header in ("Basic YWRtaW46YWRtaW4=", "Bearer", "Token abc", valid):
        r = await api.anon.get("/api/v1/tokens", headers={"Authorization": header})
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Bearer")


def test_unsafe_algorithm_settings_are_refused_at_start(tmp_path) -> None:
    base = {"oidc_jwks_url": "http://127.0.0.1:1/jwks", "oidc_issuer": ISSUER, "oidc_audience": AUDIENCE}
    for algorithms in (["none"], ["HS256"], ["RS256", "hs512"]):
        with pytest.raises(ValueError, match="asymmetric"):
            JwtVerifier(SubmissionSettings(data_dir=tmp_path, oidc_algorithms=algorithms, **base))
    with pytest.raises(ValueError, match="oidc_audience"):
        JwtVerifier(SubmissionSettings(data_dir=tmp_path, oidc_jwks_url="http://x/jwks", oidc_issuer=ISSUER))
