"""``touchstone debug run``: one task's attempt, run on this machine with the recorded spec."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from touchstone.shared.jetstream import connect_with
from touchstone.shared.publisher import EventPublisher, Recorded
from touchstone.shared.settings import Settings
from touchstone.shared.subjects import Subjects

from touchstone.cli.api import safe_text
from touchstone.cli.ops import _embedded, _settings

console = Console()


async def _history(settings: Settings, submission: str, task: str) -> list[Recorded]:
    nc = await connect_with(settings, "touchstone-debug-run", reconnect=False)
    try:
        return await EventPublisher(nc.jetstream(), Subjects(settings.namespace)).load_task(submission, task)
    finally:
        await nc.close()


def debug_run(
    submission: Annotated[str, typer.Argument(help="The submission id.")],
    task: Annotated[str, typer.Argument(help="The task id: validation, pi-60, ...")],
    data_dir: Annotated[Path | None, typer.Option(help="Data directory of `touchstone up`.")] = None,
    work_dir: Annotated[Path | None, typer.Option(
        help="Where the attempt runs and its outputs stay (default: DATA_DIR/debug).")] = None,
) -> None:
    """Run one task's latest attempt on this machine, with the spec the record holds.

    Every phase runs, in the runtime an agent would choose here (TOUCHSTONE_RUNTIME, ...). Nothing is recorded:
    the console is printed and the outputs stay in WORK_DIR. Exit 0 when the trainer exits 0."""
    from touchstone.agent.config import AgentSettings
    from touchstone.agent.debugrun import NoSuchTask, debug_host, launch_of, run_attempt
    from touchstone.agent.gpus import query_gpus

    settings = _embedded(_settings(data_dir))
    try:
        history = asyncio.run(_history(settings, submission, task))
    except ValueError as e:  # an id that is no subject token
        console.print(f"[red]{e}[/red]")
        raise typer.Exit(2) from None
    agent = AgentSettings(host=debug_host(), namespace=settings.namespace,
                          data_dir=work_dir or settings.data_dir / "debug")
    gpu = bool(asyncio.run(query_gpus(agent.nvidia_smi)))
    try:
        command = launch_of(history, agent.host, gpu=gpu)
    except NoSuchTask as e:
        console.print(f"[red]{submission}/{task}: {e}[/red]")
        raise typer.Exit(1) from None
    spec = command.spec
    console.print(f"running {command.container_name} here ({command.kind}, {command.placement}): "
                  f"{safe_text(spec.git_url)} at {safe_text(spec.git_ref)}, trainer {safe_text(spec.trainer_ref)}",
                  markup=False, highlight=False)

    def echo(line: str) -> None:
        sys.stdout.write(safe_text(line) + "\n")
        sys.stdout.flush()

    try:
        done = asyncio.run(run_attempt(command, agent, echo=echo))
    except RuntimeError as e:
        console.print(f"[red]not run[/red]: {e}")
        raise typer.Exit(1) from None
    outcome = done.outcome
    summary = f"{outcome.result}" + (f", exit code {outcome.exit_code}" if outcome.exit_code is not None else "")
    if outcome.error:
        summary += f" ({outcome.failed_phase}: {safe_text(outcome.error)})"
    console.print(f"attempt ended: {summary}", markup=False, highlight=False)
    if outcome.metrics:
        console.print(f"metrics: {', '.join(sorted(outcome.metrics))}", markup=False, highlight=False)
    console.print(f"outputs: {done.outputs}", markup=False, highlight=False)
    raise typer.Exit(0 if outcome.result == "exited" and outcome.exit_code == 0 else 1)
