"""``touchstone backup``, ``touchstone restore`` and ``touchstone projections rebuild``: the
instance's record to a file, back into an empty broker, and the read models from the record."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from nats.aio.client import Client as NATS
from rich.console import Console
from touchstone.shared.jetstream import LogLimits, connect_with
from touchstone.shared.settings import Settings
from touchstone.shared.subjects import Subjects

from touchstone.cli.ops import _embedded, _settings

console = Console()
projections_app = typer.Typer(help="The read models (submissions, tasks, evaluations).", no_args_is_help=True)

DataDir = Annotated[Path | None, typer.Option(help="Data directory of `touchstone up`.")]


def backup(
    file: Annotated[Path, typer.Argument(help="The backup file to create (must not exist).")],
    data_dir: DataDir = None,
) -> None:
    """Write the events, dead letters and settings/token/result buckets of this namespace to
    FILE (JSON lines, mode 0600). Services may keep running: the streams are copied up to
    where they were when the backup began."""
    from touchstone.shared.backup import backup as write

    settings = _embedded(_settings(data_dir))
    if file.exists() or file.is_symlink():
        console.print(f"[red]{file} exists[/red]: a backup never overwrites a file")
        raise typer.Exit(1)

    async def run() -> list[str]:
        nc = await connect_with(settings, "touchstone-backup", reconnect=False)
        try:
            return (await write(nc.jetstream(), Subjects(settings.namespace), file)).lines()
        finally:
            await nc.close()

    for line in asyncio.run(run()):
        console.print(line)
    console.print(f"backup of {settings.namespace} written to {file}")


def restore(
    file: Annotated[Path, typer.Argument(help="A file written by `touchstone backup`.")],
    replicas: Annotated[int, typer.Option(help="Stream and bucket replicas (3 in a cluster).")] = 1,
    rebuild: Annotated[bool, typer.Option(help="Also rebuild the projections in the store.")] = True,
    data_dir: DataDir = None,
) -> None:
    """Check FILE whole, then write it into the namespace it names on an empty broker (the
    namespace must hold no events) and rebuild the projections. Start the services afterwards."""
    from touchstone.shared.backup import BackupError, read_backup
    from touchstone.shared.backup import restore as write

    settings = _embedded(_settings(data_dir))
    try:
        contents = read_backup(file)  # the whole file is checked before a broker is touched
    except (BackupError, OSError) as e:
        console.print(f"[red]not restored[/red]: {e}")
        raise typer.Exit(1) from None

    async def run() -> list[str]:
        nc = await connect_with(settings, "touchstone-restore", reconnect=False)
        try:
            summary = await write(nc.jetstream(), file, replicas=replicas, logs=LogLimits.of(settings),
                                  contents=contents)
            lines = [*summary.lines(), f"restored namespace {summary.namespace} from {file}"]
            if rebuild:
                lines.append(await _rebuild(nc, settings.model_copy(update={"namespace": summary.namespace})))
            return lines
        finally:
            await nc.close()

    try:
        lines = asyncio.run(run())
    except (BackupError, OSError) as e:
        console.print(f"[red]not restored[/red]: {e}")
        raise typer.Exit(1) from None
    for line in lines:
        console.print(line)


async def _rebuild(nc: NATS, settings: Settings) -> str:
    from touchstone.shared.rebuild import rebuild_projections
    from touchstone.shared.store import open_store

    store = await open_store(settings.resolved_store_url)
    try:
        done = await rebuild_projections(nc.jetstream(), Subjects(settings.namespace), store)
    finally:
        await store.close()
    return f"projections rebuilt from {done.events} events ({done.evaluations} evaluation rows)"


@projections_app.command("rebuild")
def projections_rebuild(data_dir: DataDir = None) -> None:
    """Drop the submission and task read models and replay every event into them; put every
    evaluation the events imply. Stop the API (its projector) first, then start it again."""
    settings = _embedded(_settings(data_dir))

    async def run() -> str:
        nc = await connect_with(settings, "touchstone-rebuild", reconnect=False)
        try:
            return await _rebuild(nc, settings)
        finally:
            await nc.close()

    console.print(asyncio.run(run()))
