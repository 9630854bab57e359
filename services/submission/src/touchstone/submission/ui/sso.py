"""Sign in with SSO: ``/ui/oidc/start`` sends the browser to the OIDC issuer, and
``/ui/oidc/callback`` checks what comes back (state, then the code traded with the PKCE
verifier, then the ID token: the API's JWT checks plus this sign-in's nonce). It ends in the
same session cookie as the token sign-in, holding the ID token, which every request verifies
like an API caller's JWT until it expires.

The flow cookie (state, nonce, verifier) is ``SameSite=Lax`` and scoped to ``/ui/oidc``: the
issuer's redirect back is a cross-site navigation, which ``Strict`` cookies do not follow.
For the same reason the callback answers with a page that moves on by itself, so the first
page after signing in is a same-site navigation that carries the ``Strict`` session cookie.
"""

from __future__ import annotations

import hmac
import time
from typing import Annotated, Any

from litestar import Request, Response, get
from litestar.datastructures import Cookie
from litestar.params import Parameter, QueryParameter
from litestar.response import Redirect
from touchstone.shared.errors import AuthError, NotFoundError
from touchstone.submission.auth import Forbidden
from touchstone.submission.deps import Deps, DepsArg
from touchstone.submission.oidc import FLOW_TTL_S, Flow, SignInFailed
from touchstone.submission.ui.session import PATH, SESSION_MAX_S, render, safe_target, session_cookie

FLOW_COOKIE = "touchstone_oidc"
FLOW_PATH = f"{PATH}/oidc"
Text = Annotated[str, Parameter(max_length=2048)]


def _flow_cookie(value: str, max_age: int) -> Cookie:
    return Cookie(
        key=FLOW_COOKIE, value=value, path=FLOW_PATH, max_age=max_age, httponly=True, secure=True, samesite="lax"
    )


def _redirect_uri(request: Request[Any, Any, Any], deps: Deps) -> str:
    s = deps.settings
    if s.oidc_redirect_url:
        return s.oidc_redirect_url
    base = s.public_url.rstrip("/") if s.public_url else str(request.base_url).rstrip("/")
    return f"{base}{FLOW_PATH}/callback"


def _refused(message: str, status_code: int) -> Response[str]:
    response = render("signin.html", status_code=status_code, me=None, next="", error=None, sso=True, sso_error=message)
    response.delete_cookie(FLOW_COOKIE, path=FLOW_PATH)
    return response


@get("/oidc/start")
async def sso_start(request: Request[Any, Any, Any], deps: DepsArg, next: Text = "") -> Redirect:
    if deps.oidc is None:
        raise NotFoundError("single sign-on is not configured")
    flow = Flow.new(safe_target(next), _redirect_uri(request, deps))
    url = await deps.oidc.authorization_url(flow)
    return Redirect(url, status_code=303, cookies=[_flow_cookie(flow.encode(), FLOW_TTL_S)])


@get("/oidc/callback")
async def sso_callback(
    request: Request[Any, Any, Any],
    deps: DepsArg,
    code: Text = "",
    state_: Annotated[str, QueryParameter(name="state", max_length=2048)] = "",
    error: Text = "",
    error_description: Text = "",
) -> Response[str]:
    if deps.oidc is None or deps.auth.jwts is None:
        raise NotFoundError("single sign-on is not configured")
    if error:
        return _refused(f"The identity provider did not sign you in: {error_description or error}.", 401)
    flow = Flow.decode(request.cookies.get(FLOW_COOKIE))
    if flow is None:
        return _refused("This sign-in has expired or was started in another browser: start again.", 400)
    if not state_ or not hmac.compare_digest(state_.encode(), flow.state.encode()):
        return _refused("The answer does not belong to the sign-in this browser started (state mismatch).", 400)
    if not code:
        return _refused("The identity provider sent no sign-in code.", 400)
    try:
        id_token = await deps.oidc.exchange(code, flow)
        claims = await deps.auth.jwts.claims(id_token, audiences=(deps.settings.oidc_client_id,))
        nonce = claims.get("nonce")
        if not isinstance(nonce, str) or not hmac.compare_digest(nonce.encode(), flow.nonce.encode()):
            raise SignInFailed("the ID token was not issued for this sign-in (nonce mismatch)")
        principal = deps.auth.jwts.principal(claims)
    except Forbidden as e:
        return _refused(f"You are signed in at the identity provider but may not use Touchstone: {e}.", 403)
    except AuthError as e:
        return _refused(f"Single sign-on failed: {e}.", 401)
    max_age = int(min(SESSION_MAX_S, float(claims["exp"]) - time.time()))
    response = render("signed_in.html", me=None, name=principal.name, next=safe_target(flow.next))
    response.set_cookie(session_cookie(id_token, max_age=max(1, max_age)))
    response.delete_cookie(FLOW_COOKIE, path=FLOW_PATH)
    return response


ROUTES = [sso_start, sso_callback]
