"""The web UI: server-rendered pages under ``/ui`` over the same commands and store as the API.

``routes(deps)`` gives the handlers to mount: the ``/ui`` router (cookie sessions, HTML errors,
not in the OpenAPI document), its static files, and ``/`` redirecting to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Router, get
from litestar.di import Provide
from litestar.response import Redirect
from litestar.static_files import create_static_files_router
from touchstone.submission.deps import Deps
from touchstone.submission.ui import admin_pages, pages, results_pages, sso
from touchstone.submission.ui.session import PATH, banner_hook, make_providers, ui_error


@get("/", include_in_schema=False, sync_to_thread=False)
def root() -> Redirect:
    return Redirect(f"{PATH}/submissions", status_code=303)


def routes(deps: Deps) -> list[Any]:
    providers = {name: Provide(fn) for name, fn in make_providers(deps).items()}
    router = Router(
        path=PATH,
        route_handlers=[*pages.ROUTES, *results_pages.ROUTES, *sso.ROUTES, *admin_pages.ROUTES],
        dependencies=providers,
        exception_handlers={Exception: ui_error},
        before_request=banner_hook(deps),
        include_in_schema=False,
    )
    static = create_static_files_router(
        path=f"{PATH}/static", directories=[Path(__file__).parent / "static"], include_in_schema=False
    )
    return [router, static, root]
