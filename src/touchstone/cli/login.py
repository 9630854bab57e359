"""``touchstone login``: check a server and token, then keep them in a profile.

Example::

    touchstone login --url https://touchstone.example              # asks for the token
    touchstone login --profile staging --url https://staging.example --token tst_...
    touchstone --profile staging list
"""

from __future__ import annotations

from typing import Annotated

import httpx
import typer

from touchstone.cli import profiles
from touchstone.cli.api import EXIT_AUTH, EXIT_UNREACHABLE, AsJson, _fail, _print_json, out


def login(
    url: Annotated[str, typer.Option("--url", envvar="TOUCHSTONE_URL", prompt="Touchstone URL",
                                     help="API address, e.g. https://touchstone.example.")],
    token: Annotated[str, typer.Option("--token", envvar="TOUCHSTONE_TOKEN", prompt=True, hide_input=True,
                                       help="API token (asked for, hidden, when not given).")],
    profile: Annotated[str | None, typer.Option("--profile", envvar=profiles.PROFILE_ENV,
                                                help="The profile to write (default: default).")] = None,
    as_json: AsJson = False,
) -> None:
    """Sign in: check the URL and token against the API, then save them in a profile of the
    config file (mode 0600).

    Example: touchstone login --profile staging --url https://staging.example
    """
    name = profile or profiles.DEFAULT
    if not profiles.NAME.match(name):
        _fail(f"profile name {name!r}: letters, digits, - and _ only", 2)
    base = url.rstrip("/")
    try:
        r = httpx.get(f"{base}/api/v1/submissions", params={"limit": 1},
                      headers={"Authorization": f"Bearer {token.strip()}"}, timeout=15.0)
    except httpx.HTTPError as e:
        _fail(f"cannot reach {base}: {e}", EXIT_UNREACHABLE)
    if r.status_code in (401, 403):
        _fail(f"{base} refused the token ({r.status_code}); nothing saved", EXIT_AUTH)
    if r.status_code >= 400:
        _fail(f"{base} answered {r.status_code}; nothing saved")
    path = profiles.save(name, base, token.strip())
    if as_json:
        _print_json({"profile": name, "url": base, "config": str(path)})
    else:
        out.print(f"signed in to {base}; saved as profile {name!r} in {path}", markup=False, highlight=False)
