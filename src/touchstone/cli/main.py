"""The ``touchstone`` command."""

from __future__ import annotations

import logging

import typer

from touchstone.cli import api, ops, results

app = typer.Typer(help="Touchstone: automated GPU training of prediction models.", no_args_is_help=True)


@app.callback()
def _quiet() -> None:
    """Commands print their own results; library warnings stay quiet."""
    logging.basicConfig(level=logging.ERROR)


app.command()(ops.up)
app.command()(ops.status)
app.add_typer(ops.nats_app, name="nats")
app.add_typer(ops.debug_app, name="debug")
api.register(app)  # the API client verbs: submit, list, show, schedule, cancel, ...
results.register(app)  # leaderboard, evaluations
