"""The web UI's session: an API token pasted once on the sign-in page, or the ID token of a
single sign-on (``ui.sso``), kept in a cookie and verified on every request.

The cookie is HTTP-only, ``SameSite=Strict``, ``Secure`` and scoped to ``/ui``: it signs a
browser in to the pages only; the API still takes ``Authorization: Bearer`` and nothing else.
Every form that changes something carries a CSRF token bound to the session (an HMAC of the
session under one key shared by every API replica: ``ui_csrf_key``, else one kept in the KV
bucket ``{ns}_ui``), checked on POST. Errors on UI routes become HTML pages, or a
redirect to sign-in when the session is missing or no longer valid.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from litestar import Request, Response
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.response import Redirect
from touchstone.shared.errors import InvalidInputError
from touchstone.submission.auth import Forbidden, Unauthenticated
from touchstone.submission.deps import Deps
from touchstone.submission.domain import Principal
from touchstone.submission.problems import _classify

COOKIE = "touchstone_session"
PATH = "/ui"
SESSION_MAX_S = 8 * 3600  # a session cookie lasts at most a working day
TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
BANNER: ContextVar[str | None] = ContextVar("touchstone_ui_banner", default=None)
"""The instance banner of the request being rendered (a dev or paused instance), set per
request from its app's ``Deps`` so apps of several namespaces in one process stay apart."""
TEMPLATES.globals["instance_banner"] = BANNER.get


def banner_hook(deps: Deps) -> Callable[[Request[Any, Any, Any]], Awaitable[None]]:
    """A ``before_request`` hook that gives this request's pages the instance banner."""

    async def hook(request: Request[Any, Any, Any]) -> None:
        BANNER.set(deps.instance.banner if deps.instance is not None else None)

    return hook

NOTICES = {
    "submitted": "Submitted {}.",
    "scheduled": "Scheduled {}: its tasks are queued.",
    "cancelling": "Cancelling {}.",
    "deleted": "Deleted {}.",
    "saved": "Saved. Every service applies it at once.",
    "revoked": "Revoked the token of {}.",
}
_NOTICE_SUBJECT = re.compile(r"^[A-Za-z0-9_.@+-]{0,64}$")
_TARGET = re.compile(r"^/ui/(?!/)[A-Za-z0-9/_.?=&%+-]*$")


def safe_target(target: str) -> str:
    """Where to go after signing in: a page of this UI, else Submissions."""
    return target if _TARGET.match(target) else f"{PATH}/submissions"


def ui_audiences(deps: Deps) -> tuple[str, ...]:
    """The JWT audiences a UI session may carry: the API's, and the UI client's ID tokens."""
    return tuple(a for a in (deps.settings.oidc_audience, deps.settings.oidc_client_id) if a)


def notice_text(notice: str | None) -> str | None:
    """The message a redirect's ``?notice=<kind>:<id>`` stands for (never text from the URL)."""
    kind, _, subject = (notice or "").partition(":")
    template = NOTICES.get(kind)
    if template is None or not _NOTICE_SUBJECT.match(subject):
        return None
    return template.format(subject)


KEY_METRICS = ("roc_auc", "pr_auc", "sharpe", "accuracy", "f1", "precision", "recall")


def key_metrics(metrics: Any, most: int = 4) -> list[tuple[str, float]]:
    """A model's headline numbers: the well-known ones first (also one level down), then others."""
    flat: dict[str, float] = {}
    if isinstance(metrics, dict):
        for k, v in metrics.items():
            if isinstance(v, int | float) and not isinstance(v, bool):
                flat.setdefault(str(k), float(v))
            elif isinstance(v, dict):
                for k2, v2 in v.items():
                    if isinstance(v2, int | float) and not isinstance(v2, bool):
                        flat.setdefault(str(k2) if k2 in KEY_METRICS else f"{k}.{k2}", float(v2))
    ranked = sorted(flat, key=lambda k: (KEY_METRICS.index(k) if k in KEY_METRICS else len(KEY_METRICS), k))
    return [(k, flat[k]) for k in ranked[:most]]


TEMPLATES.filters["key_metrics"] = key_metrics


class CsrfMismatch(Forbidden):
    """A form without the session's CSRF token (HTTP 403)."""


def csrf_token(key: bytes, session: str) -> str:
    return hmac.new(key, session.encode(), hashlib.sha256).hexdigest()[:40]


def session_cookie(value: str, *, max_age: int = SESSION_MAX_S) -> Cookie:
    return Cookie(
        key=COOKIE,
        value=value,
        path=PATH,
        max_age=max_age,
        httponly=True,
        secure=True,
        samesite="strict",
    )


class Viewer:
    """The signed-in browser: who it is and the CSRF token its forms carry."""

    def __init__(self, principal: Principal, session: str, key: bytes) -> None:
        self.principal = principal
        self.csrf = csrf_token(key, session)

    @property
    def name(self) -> str:
        return self.principal.name

    @property
    def is_admin(self) -> bool:
        return self.principal.is_admin

    async def form(self, request: Request[Any, Any, Any]) -> Any:
        """The posted form, once its CSRF token is checked."""
        form = await request.form()
        if not hmac.compare_digest(str(form.get("csrf", "")), self.csrf):
            raise CsrfMismatch("the form has expired or did not come from this site; reload the page and try again")
        return form


ViewerArg = NamedDependency[Viewer]


def make_providers(deps: Deps) -> dict[str, Any]:
    async def provide_viewer(request: Request[Any, Any, Any]) -> Viewer:
        session = request.cookies.get(COOKIE)
        if not session:
            raise Unauthenticated("sign in")
        principal = await deps.auth.authenticate(f"Bearer {session}", audiences=ui_audiences(deps))
        return Viewer(principal, session, deps.csrf_key)

    async def provide_admin_viewer(viewer: ViewerArg) -> Viewer:
        if not viewer.is_admin:
            raise Forbidden("this page is for admins")
        return viewer

    return {"viewer": provide_viewer, "admin_viewer": provide_admin_viewer}


def render(template: str, *, status_code: int = 200, **context: Any) -> Response[str]:
    html = TEMPLATES.get_template(template).render(**context)
    return Response(html, status_code=status_code, media_type="text/html; charset=utf-8")


def field_errors(exc: Exception) -> dict[str, str]:
    """Per-field messages from a rule (``"field: why"``) or a schema error."""
    errors: dict[str, str] = {}
    if isinstance(exc, InvalidInputError):
        field, sep, why = str(exc).partition(": ")
        errors[field if sep else "_"] = why if sep else str(exc)
    elif hasattr(exc, "errors"):
        for err in exc.errors():
            loc = err.get("loc") or ("_",)
            errors.setdefault(str(loc[0]), str(err.get("msg", "invalid")))
    else:
        errors["_"] = str(exc)
    return errors


def ui_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """UI routes' exception handler: sign-in redirect, or an HTML error page."""
    if isinstance(exc, Unauthenticated):
        response: Response[Any] = Redirect(f"{PATH}/sign-in?next={quote(request.url.path)}", status_code=303)
        if request.cookies.get(COOKIE):
            response.delete_cookie(COOKIE, path=PATH)
        return response
    status, detail, _ = _classify(exc)
    titles = {403: "Not allowed", 404: "Not found", 409: "Not possible now", 503: "Try again shortly"}
    return render(
        "error.html", status_code=status, title=titles.get(status, "Something went wrong"), detail=detail, me=None
    )
