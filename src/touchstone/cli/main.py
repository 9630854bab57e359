"""The ``touchstone`` command."""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer

from touchstone.cli import agentaccess, api, configdoc, debugging, login, ops, profiles, records, results

EPILOG = "Exit codes: " + "; ".join(f"{code} {what}" for code, what in api.EXIT_CODES.items()) + "."
app = typer.Typer(help="Touchstone: automated GPU training of prediction models.", no_args_is_help=True,
                  epilog=EPILOG)


def _version(value: bool) -> None:
    if value:
        try:
            found = version("touchstone")
        except PackageNotFoundError:
            found = "unknown"
        typer.echo(f"touchstone {found}")
        raise typer.Exit()


@app.callback()
def _root(
    profile: Annotated[str | None, typer.Option("--profile", envvar=profiles.PROFILE_ENV,
                                                help="Config profile to use (touchstone login writes them).")] = None,
    show_version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                               help="Print the version and exit.")] = False,
) -> None:
    """Commands print their own results; library warnings stay quiet."""
    logging.basicConfig(level=logging.ERROR)
    profiles.select(profile)


app.command()(ops.up)
app.command()(ops.status)
app.add_typer(ops.nats_app, name="nats")
ops.debug_app.command("run")(debugging.debug_run)
app.add_typer(ops.debug_app, name="debug")
app.command()(records.backup)
app.command()(records.restore)
app.add_typer(records.projections_app, name="projections")
api.register(app)  # the API client verbs: submit, list, show, schedule, cancel, ...
results.register(app)  # leaderboard, evaluations
app.command("login")(login.login)
app.add_typer(configdoc.config_app, name="config")
app.add_typer(agentaccess.agent_app, name="agent")
