"""Sign in with SSO against a small but faithful OIDC provider (``touchstone.submission.fake_oidc``)
served over real HTTP: discovery, JWKS, an authorize endpoint that redirects back with a code,
and a token endpoint that checks the client, the code (once), the redirect URI and the PKCE
verifier. Then what can go wrong:
a forged state, another sign-in's nonce, a token signed by another key, an expired token, a
wrong verifier, a user in no Touchstone group; each is refused with a message that says so.

The browser's hops are made by hand (httpx keeps no ``Secure`` cookies over http://), so each
redirect and cookie is checked on the way."""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from touchstone.submission.fake_oidc import CLIENT_ID, CLIENT_SECRET, FakeOidcProvider, b64

API_AUDIENCE = "touchstone-api"
CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


@pytest.fixture
async def idp(serving) -> AsyncIterator[FakeOidcProvider]:
    fake = FakeOidcProvider()
    async with serving(fake.app()) as url:
        fake.url = url
        yield fake


@pytest.fixture
async def sso(make_api, idp):
    return await make_api(
        oidc_issuer=idp.url,
        oidc_jwks_url=f"{idp.url}/jwks",
        oidc_audience=API_AUDIENCE,
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=CLIENT_SECRET,
    )


def cookie_attrs(header: str) -> set[str]:
    return {a.strip().lower() for a in header.split(";")}


async def start(api, next: str = "/ui/submissions") -> tuple[str, str]:
    """Press "Sign in with SSO": the issuer's authorize URL and the flow cookie to send back."""
    page = await api.anon.get("/ui/sign-in")
    assert 'id="sso"' in page.text and "Sign in with SSO" in page.text
    r = await api.anon.get("/ui/oidc/start", params={"next": next})
    assert r.status_code == 303, r.text
    cookie = r.headers["set-cookie"]
    assert {"httponly", "secure", "samesite=lax", "path=/ui/oidc"} <= cookie_attrs(cookie), cookie
    return r.headers["location"], cookie.split(";")[0]


async def authorize(url: str) -> str:
    """The issuer's answer: a redirect back to our callback with a code and the state."""
    async with httpx.AsyncClient(timeout=10) as browser:
        r = await browser.get(url)
    assert r.status_code == 302, r.text
    return str(r.headers["location"])


async def sign_in(api, idp, **callback_changes: str) -> httpx.Response:
    url, flow = await start(api)
    back = urlsplit(await authorize(url))
    params = {k: v[0] for k, v in parse_qs(back.query).items()} | callback_changes
    return await api.anon.get(back.path, params=params, headers={"Cookie": flow})


def session_of(r: httpx.Response) -> dict[str, str]:
    found = [c for c in r.headers.get_list("set-cookie") if c.startswith("touchstone_session=")]
    assert len(found) == 1, r.headers
    assert {"httponly", "secure", "samesite=strict", "path=/ui"} <= cookie_attrs(found[0])
    return {"Cookie": found[0].split(";")[0]}


def refused(r: httpx.Response, status: int, message: str) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    assert not any(c.startswith("touchstone_session=") for c in r.headers.get_list("set-cookie"))
    error = re.search(r'<p class="error-box" id="sso-error" role="alert">(.*?)</p>', r.text, re.S)
    assert error and message in error.group(1), r.text


async def test_sso_sign_in_ends_in_the_session_cookie_and_shows_the_users_submissions(sso, idp) -> None:
    url, _ = await start(sso, next="/ui/submissions?status=VALIDATING")
    sent = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert url.startswith(f"{idp.url}/authorize?")
    assert sent["client_id"] == CLIENT_ID and sent["redirect_uri"] == f"{sso.url}/ui/oidc/callback"
    assert sent["code_challenge_method"] == "S256" and sent["scope"] == "openid email profile"

    theirs = await sso.submit(sso.alice)
    r = await sign_in(sso, idp)
    assert r.status_code == 200 and idp.exchanged == 1
    assert '<strong id="signed-in-as">sso:dana</strong>' in r.text
    assert 'http-equiv="refresh" content="0;url=/ui/submissions"' in r.text
    assert any(c.startswith('touchstone_oidc=""') for c in r.headers.get_list("set-cookie"))  # flow cookie gone
    dana = session_of(r)

    page = await sso.anon.get("/ui/submissions", headers=dana)
    assert page.status_code == 200 and "dana" in page.text and "No submissions yet" in page.text
    assert "/ui/tasks" not in page.text  # a user: no admin pages
    csrf = CSRF.search(page.text)
    assert csrf
    form = {"git_url": "https://github.com/org/dana.git", "name": "danas-features", "csrf": csrf.group(1)}
    assert (await sso.anon.post("/ui/submissions/new", data=form, headers=dana)).status_code == 303
    page = await sso.anon.get("/ui/submissions", headers=dana)
    assert "danas-features" in page.text and theirs not in page.text
    mine = (await sso.admin.get("/api/v1/submissions", params={"owner": "sso:dana"})).json()["items"]
    assert [s["name"] for s in mine] == ["danas-features"]
    assert (await sso.anon.get("/ui/tasks", headers=dana)).status_code == 403
    # the ID token is for the UI client: the API (another audience) does not take it
    id_token = dana["Cookie"].split("=", 1)[1]
    assert (await sso.client(id_token).get("/api/v1/submissions")).status_code == 401

    # an admin by group
    idp.user = {"sub": "u-9", "cognito:username": "ops", "email": "ops@example.com",
                "cognito:groups": ["touchstone_admin"]}
    r = await sign_in(sso, idp)
    page = await sso.anon.get("/ui/tasks", headers=session_of(r))
    assert page.status_code == 200 and "sso:ops" in page.text
    # a name only in claims the user may edit (email, preferred_username) names nobody
    idp.user = {"sub": "u-10", "email": "alice", "preferred_username": "alice", "cognito:groups": ["touchstone_user"]}
    r = await sign_in(sso, idp)
    assert not [c for c in r.headers.get_list("set-cookie") if c.startswith("touchstone_session=")]


async def test_sso_refuses_what_does_not_belong_to_this_sign_in(sso, idp) -> None:
    refused(await sign_in(sso, idp, state="forged-state"), 400, "state mismatch")

    idp.nonce = "the-nonce-of-another-sign-in"
    refused(await sign_in(sso, idp), 401, "nonce mismatch")
    idp.nonce = None

    idp.signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    refused(await sign_in(sso, idp), 401, "Signature verification failed")
    idp.signing_key = None

    idp.lifetime_s = -3600
    refused(await sign_in(sso, idp), 401, "Signature has expired")
    idp.lifetime_s = 300

    # the code is bound to this browser's PKCE verifier, and works once
    url, flow = await start(sso)
    back = urlsplit(await authorize(url))
    raw = json.loads(base64.urlsafe_b64decode(flow.split("=", 1)[1] + "=="))
    other = b64(json.dumps({**raw, "verifier": secrets.token_urlsafe(48)}).encode())
    r = await sso.anon.get(f"{back.path}?{back.query}", headers={"Cookie": f"touchstone_oidc={other}"})
    refused(r, 401, "PKCE verification failed")
    r = await sso.anon.get(f"{back.path}?{back.query}", headers={"Cookie": flow})
    refused(r, 401, "unknown or used code")

    # no flow cookie (expired, another browser), the provider's own refusal, no Touchstone group
    url, _ = await start(sso)
    back = urlsplit(await authorize(url))
    refused(await sso.anon.get(f"{back.path}?{back.query}"), 400, "expired or was started in another browser")
    r = await sso.anon.get("/ui/oidc/callback", params={"error": "access_denied", "error_description": "MFA failed"})
    refused(r, 401, "did not sign you in: MFA failed")
    idp.user = {"sub": "u-5", "cognito:username": "eve", "cognito:groups": ["marketing"]}
    refused(await sign_in(sso, idp), 403, "may not use Touchstone")
    assert idp.exchanged == 4  # nonce, key, expiry, no group: a forged state or a wrong verifier got no token


async def test_without_sso_settings_there_is_no_sso(api) -> None:
    page = await api.anon.get("/ui/sign-in")
    assert page.status_code == 200 and "Sign in with SSO" not in page.text
    assert (await api.anon.get("/ui/oidc/start")).status_code == 404
    assert (await api.anon.get("/ui/oidc/callback", params={"code": "x", "state": "y"})).status_code == 404
