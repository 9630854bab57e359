"""``touchstone debug run <submission> <task>``: one attempt of a task, run here, with the spec
the record holds (the seed's ``_DEBUG_TASK_CONTAINER``, for the question "what does this task
do when I run it myself?").

The launch is rebuilt from the task's ``TaskQueued`` (the same ``TaskSpec`` the scheduler puts
in every ``LaunchTask``) and run through the agent's own phases (``Attempts``: provision,
prepare, run, collect, terminate) with the runtime the agent would choose here, so the
isolation is the same as in production. It runs as host ``debug-{hostname}`` in its own data
directory, so a real agent on this machine neither sees nor reaps it. Nothing is recorded: no
event is appended and no console line is published; the console is printed, and the outputs
stay in the debug data directory for reading.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from touchstone.agent.attempts import Attempts
from touchstone.agent.collect import attempt_paths
from touchstone.agent.config import AgentSettings, default_host
from touchstone.agent.gpus import query_gpus
from touchstone.agent.runtime import ContainerRuntime
from touchstone.agent.service import choose_runtime
from touchstone.shared import events as ev
from touchstone.shared.agents import AttemptOutcome
from touchstone.shared.commands import LaunchTask
from touchstone.shared.publisher import Recorded


class NoSuchTask(LookupError):
    """The record has no such task (or it was never queued)."""


@dataclass(frozen=True)
class DebugRun:
    command: LaunchTask
    outcome: AttemptOutcome
    outputs: Path
    """Where the collected outputs are (models, metrics.json, the console log)."""


def debug_host() -> str:
    return f"debug-{default_host()}"[:128]


def launch_of(history: list[Recorded], host: str, *, gpu: bool) -> LaunchTask:
    """The launch of this task's latest attempt (attempt 1 if it never ran), as the scheduler
    would send it, placed on ``host``'s first GPU (``gpu``) or CPU slot."""
    queued = next((r.event for r in history if isinstance(r.event, ev.TaskQueued)), None)
    if queued is None:
        raise NoSuchTask("the record holds no TaskQueued for this task")
    assigned = [r.event for r in history if isinstance(r.event, ev.TaskAssigned)]
    attempt = max((a.attempt for a in assigned), default=1)
    return LaunchTask(
        submission_id=queued.submission_id, task_id=queued.task_id, attempt=attempt, kind=queued.kind,
        spec=queued.spec, prediction_interval=queued.prediction_interval,
        placement=f"{host}/{'0' if gpu else 'cpu0'}", gpu_type=queued.gpu_type,
    )


async def run_attempt(
    command: LaunchTask, settings: AgentSettings, *, runtime: ContainerRuntime | None = None,
    echo: Callable[[str], None] = print, deadline_s: float = 24 * 3600,
) -> DebugRun:
    """Run ``command`` here through every phase and return how it ended."""
    choice = choose_runtime(settings) if runtime is None else None
    if choice is not None and choice.refusing:
        raise RuntimeError(f"cannot run here: {choice.refusing}")
    chosen = runtime if runtime is not None else choice.runtime  # type: ignore[union-attr]
    changed = asyncio.Event()

    async def show(_aggregate: str, lines: list[str]) -> None:
        for line in lines:
            echo(line)

    attempts = Attempts(settings, chosen, on_change=changed.set, logs=show)
    gpus = await query_gpus(settings.nvidia_smi)
    attempts.has_gpus = bool(gpus)
    attempts.slots_total = len(gpus) if gpus else settings.num_slots
    reply = await attempts.launch(command)
    if not reply.ok:
        raise RuntimeError(reply.error or "the launch was refused")
    name = command.container_name
    ends = time.monotonic() + deadline_s
    try:
        while name not in attempts.ended:
            if time.monotonic() > ends:
                raise TimeoutError(f"{name} ran past {deadline_s:.0f}s")
            changed.clear()
            try:
                await asyncio.wait_for(changed.wait(), timeout=1.0)
            except TimeoutError:
                continue
    except BaseException:
        await attempts.stop_all("debug run interrupted")
        raise
    outcome = attempts.ended[name].outcome
    assert outcome is not None
    outputs, _ = attempt_paths(settings.artifacts_root, command.submission_id, command.task_id, command.attempt)
    return DebugRun(command, outcome, outputs)
