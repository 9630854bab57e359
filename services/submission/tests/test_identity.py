"""Identity, tried as an attacker would: a key the issuer removed, a user name from an
editable claim, an SSO name equal to an API-token user's; and one UI session served by two
API replicas (one CSRF key for all)."""

from __future__ import annotations

import asyncio
import json
import re
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER = "https://issuer.test/pool"  # as conftest's issuer
AUDIENCE = "touchstone-tests"
CSRF = re.compile(r'name="csrf" value="([0-9a-f]{40})"')


class Jwks:
    """A JWKS endpoint whose keys the test changes (rotation, removal)."""

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.fetches = 0

    def add(self, kid: str) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def token(self, kid: str, key: rsa.RSAPrivateKey | None = None, **claims: object) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "exp": now + 300, "iat": now, "cognito:username": "carol",
                "cognito:groups": ["touchstone_user"], **claims}
        return jwt.encode(body, key or self.keys[kid], algorithm="RS256", headers={"kid": kid})

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        self.fetches += 1
        keys = []
        for kid, key in self.keys.items():
            public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
            keys.append({**public, "kid": kid, "alg": "RS256", "use": "sig"})
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": json.dumps({"keys": keys}).encode()})


async def test_a_key_removed_from_the_jwks_is_refused_once_the_jwks_is_fetched_again(make_api, serving) -> None:
    jwks = Jwks()
    jwks.add("k1")
    async with serving(jwks) as url:
        api = await make_api(oidc_jwks_url=f"{url}/jwks.json", jwks_max_age_s=0.5, jwks_refresh_s=0)
        old_key = jwks.keys["k1"]
        carol = api.client(jwks.token("k1"))
        assert (await carol.get("/api/v1/submissions")).status_code == 200
        # the issuer rotates: k2 is new (fetched on first sight), k1 is removed
        jwks.add("k2")
        jwks.keys.pop("k1")
        assert (await api.client(jwks.token("k2")).get("/api/v1/submissions")).status_code == 200
        await asyncio.sleep(0.6)
        stolen = api.client(jwks.token("k1", key=old_key))
        r = await stolen.get("/api/v1/submissions")
        assert r.status_code == 401 and "unknown key" in r.text


async def test_a_jwks_is_fetched_again_on_schedule_even_for_known_keys(make_api, serving) -> None:
    jwks = Jwks()
    jwks.add("k1")
    async with serving(jwks) as url:
        api = await make_api(oidc_jwks_url=f"{url}/jwks.json", jwks_max_age_s=0.3, jwks_refresh_s=60)
        client = api.client(jwks.token("k1"))
        assert (await client.get("/api/v1/submissions")).status_code == 200
        first = jwks.fetches
        await asyncio.sleep(0.4)
        assert (await client.get("/api/v1/submissions")).status_code == 200
        assert jwks.fetches == first + 1


async def test_an_sso_user_cannot_take_an_api_token_users_name(make_api, serving) -> None:
    jwks = Jwks()
    jwks.add("k1")
    async with serving(jwks) as url:
        api = await make_api(oidc_jwks_url=f"{url}/jwks.json")
        alices = await api.submit(api.alice)  # alice: an API-token user
        impostor = api.client(jwks.token("k1", **{"cognito:username": "alice"}))
        mine = (await impostor.get("/api/v1/submissions")).json()["items"]
        assert alices not in [s["id"] for s in mine]
        assert (await impostor.get(f"/api/v1/submissions/{alices}")).status_code == 404
        r = await impostor.post("/api/v1/submissions", json={"git_url": "https://github.com/org/x.git"})
        assert r.status_code == 201 and r.json()["owner"] == "sso:alice"
        # editable claims name nobody: only the configured claim counts
        nameless = api.client(jwks.token("k1", **{"cognito:username": None, "email": "alice",
                                                 "preferred_username": "alice"}))
        assert (await nameless.get("/api/v1/submissions")).status_code == 401
        # and no API token can be made for an SSO-shaped name
        r = await api.admin.post("/api/v1/tokens", json={"user": "sso:carol", "role": "user"})
        assert r.status_code == 422


async def test_two_api_replicas_serve_one_ui_session(make_api) -> None:
    one = await make_api()
    two = await make_api()
    secret = one.alice.headers["authorization"].removeprefix("Bearer ")
    r = await one.anon.post("/ui/sign-in", data={"token": secret, "next": "/ui/submissions"})
    cookie = {"Cookie": r.headers["set-cookie"].split(";")[0]}
    page = await one.anon.get("/ui/submissions", headers=cookie)
    csrf = CSRF.search(page.text)
    assert csrf
    # the form rendered by replica one is posted to replica two (a load balancer's choice)
    form = {"git_url": "https://github.com/org/fs.git", "name": "across-replicas", "csrf": csrf.group(1)}
    r = await two.anon.post("/ui/submissions/new", data=form, headers=cookie)
    assert r.status_code == 303, r.text
    # the key is the instance's (kept in NATS KV), not this process's: a replica configured
    # with another key refuses the same form
    assert one.deps.csrf_key == two.deps.csrf_key
    other = await make_api(ui_csrf_key="another key")
    r = await other.anon.post("/ui/submissions/new", data=form, headers=cookie)
    assert r.status_code == 403
