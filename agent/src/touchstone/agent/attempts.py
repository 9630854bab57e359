"""The attempts on this host and their phases: provision, prepare, run, collect, terminate.

Each attempt has a folder of the agent's own, ``{data_dir}/agent/{container}/`` (its state, its
console), and in it the task's work directory ``work/``; what is kept on disk, so that a
restarted agent picks up what still runs, is described in ``state.py``. The work directory is
hostile ground: it is read only through ``touchstone.shared.workdir``.

Every attempt has a run deadline (``touchstone.shared.attempt.run_deadline``): past it the trainer is stopped and the
attempt fails with failure class ``timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import sys
import time
from collections.abc import Awaitable, Callable

from touchstone.agent import collect as collecting
from touchstone.agent import prepare
from touchstone.agent import publish as publishing
from touchstone.agent.config import AgentSettings
from touchstone.agent.grants import Grants
from touchstone.agent.runtime import ContainerRuntime, ContainerSpec
from touchstone.agent.sources import Sources
from touchstone.agent.state import (
    Attempt,
    bad_ids,
    forget_ended,
    gpu_slot,
    load_attempt,
    load_ended,
    save_ended,
)
from touchstone.shared import staging, workdir
from touchstone.shared.agents import AttemptOutcome, AttemptReport, CommandReply, stage_index
from touchstone.shared.attempt import run_deadline
from touchstone.shared.commands import CONTAINER_PREFIX, LaunchTask, TerminateTask, container_name
from touchstone.shared.console import split_console
from touchstone.shared.errors import PermanentError, TouchstoneError
from touchstone.shared.logs import task_context
from touchstone.shared.subjects import task_aggregate_id

log = logging.getLogger(__name__)

LOG_CHUNK_BYTES = 256_000
LOG_CHUNKS_PER_LOOK = 64
"""Chunks streamed per look while the trainer runs: a trainer that prints without end still
meets its deadline."""
LINES_PER_MESSAGE = 200
PREPARE_GRACE_S = 10.0
"""How long a stopping agent lets attempts in prepare start their trainers (a deploy's SIGTERM
is followed by SIGKILL after a while: 15 s in the chaos harness, 30 s in Kubernetes)."""

LogSink = Callable[[str, list[str]], Awaitable[None]]


class Attempts:
    """Every attempt this agent runs or recently ended, and the phases that move them."""

    def __init__(
        self, settings: AgentSettings, runtime: ContainerRuntime, *, on_change: Callable[[], None], logs: LogSink
    ) -> None:
        self.settings = settings
        self.host = settings.host
        self.runtime = runtime
        self.on_change = on_change
        self.logs = logs
        self.root = settings.work_root
        self.live: dict[str, Attempt] = {}
        self.ended: dict[str, Attempt] = {}
        self.slots_total = settings.num_slots
        self.has_gpus = False
        self.sources = Sources(settings, runtime)
        self.grants = Grants(settings.data_dir / "grants")

    # --- queries ---------------------------------------------------------------------

    def running(self) -> tuple[str, ...]:
        return tuple(sorted(self.live))

    def busy_slots(self) -> set[int]:
        return {i for a in self.live.values() if (i := gpu_slot(a.slot)) is not None}

    def reports(self) -> list[AttemptReport]:
        cutoff = time.time() - self.settings.report_retention_s
        for name, a in list(self.ended.items()):
            if (a.ended_at or 0) < cutoff:
                del self.ended[name]
                forget_ended(self.root, name)
        return [a.report(self.host) for a in (*self.live.values(), *self.ended.values())]

    # --- commands --------------------------------------------------------------------

    async def launch(self, command: LaunchTask) -> CommandReply:
        if bad := bad_ids(command.submission_id, command.task_id):
            return CommandReply(ok=False, error=bad)
        host, _, slot = command.placement.partition("/")
        if host != self.host:
            return CommandReply(ok=False, error=f"placement {command.placement} is not on host {self.host}")
        name = command.container_name
        known = self.live.get(name) or self.ended.get(name)
        if known is not None:
            return CommandReply(ok=True, report=known.report(self.host))
        gpu = gpu_slot(slot)
        if gpu is None and not (slot.startswith("cpu") and slot[3:].isdigit()):
            return CommandReply(ok=False, error=f"no slot {slot!r} on host {self.host}")
        if gpu is not None:
            if gpu >= self.slots_total:
                return CommandReply(ok=False, error=f"host {self.host} has {self.slots_total} slots, not slot {gpu}")
            holder = next((a.name for a in self.live.values() if a.slot == slot), None)
            if holder is not None:
                return CommandReply(ok=False, error=f"slot {slot} on {self.host} is held by {holder}", held_by=holder)
        attempt = Attempt(self.grants.take(command), self.root / name)  # its grant is not for the task's eyes
        self.live[name] = attempt
        try:
            attempt.home.mkdir(parents=True, exist_ok=False)
            attempt.work_dir.mkdir()
            attempt.save()
            labels = {"touchstone.submission": command.submission_id, "touchstone.task": command.task_id,
                      "touchstone.attempt": str(command.attempt)}
            await self.runtime.provision(
                ContainerSpec(name, attempt.work_dir, labels, gpu if self.has_gpus else None)
            )
            attempt.stage = "ready"
            attempt.save()
        except Exception as e:
            log.exception("provision of %s failed", name)
            await self._fail(attempt, "provision", f"{type(e).__name__}: {e}")
            return CommandReply(ok=True, report=attempt.report(self.host))
        self._start(attempt)
        self.on_change()
        return CommandReply(ok=True, report=attempt.report(self.host))

    async def terminate(self, command: TerminateTask) -> CommandReply:
        if bad := bad_ids(command.submission_id, command.task_id):
            return CommandReply(ok=False, error=bad)
        name = container_name(command.submission_id, command.task_id, command.attempt)
        attempt = self.live.get(name)
        if attempt is not None:
            await _cancel(attempt.driver)
            outcome = attempt.outcome or AttemptOutcome(
                result="terminated", error=command.reason or "terminated on request", commit=attempt.commit
            )
            await self._end(attempt, outcome, collect_log=True)
            return CommandReply(ok=True, report=attempt.report(self.host))
        if name in self.ended:
            return CommandReply(ok=True, report=self.ended[name].report(self.host))
        # not ours to know, but maybe left behind: remove it all the same
        await self.runtime.terminate(name)
        await asyncio.to_thread(shutil.rmtree, self.root / name, True)
        return CommandReply(ok=True)

    # --- restart ---------------------------------------------------------------------

    async def adopt(self) -> None:
        """Pick up the attempts a previous run of the agent left: running ones are watched
        again, ones interrupted during prepare fail, ones whose process vanished are lost."""
        for ended in load_ended(self.root):
            self.ended[ended.name] = ended
        if not self.root.is_dir():
            return
        for path in sorted(self.root.iterdir()):
            if not (path.is_dir() and path.name.startswith(CONTAINER_PREFIX)) or path.name in self.ended:
                continue
            try:
                attempt = load_attempt(path)
            except (OSError, ValueError, KeyError):
                log.warning("removing %s: no readable attempt state", path)
                await self.runtime.terminate(path.name)
                await asyncio.to_thread(shutil.rmtree, path, True)
                continue
            self.live[attempt.name] = attempt
            state = await self.runtime.status(attempt.name)
            if state.status in ("running", "exited") and stage_index(attempt.stage) < stage_index("started"):
                attempt.stage = "started"  # it started just before the agent went down
            if state.status == "gone":
                await self._fail(attempt, "run", "the container vanished while the agent was down", result="lost")
            elif stage_index(attempt.stage) < stage_index("started"):
                await self._fail(attempt, "prepare", "the agent restarted during prepare")
            else:
                log.info("re-adopted %s (%s)", attempt.name, state.status)
                self._start(attempt)
        self.on_change()

    async def stop_all(self, reason: str) -> None:
        """Stop and remove every live attempt (it is reported lost)."""
        for attempt in list(self.live.values()):
            await _cancel(attempt.driver)
            outcome = attempt.outcome or AttemptOutcome(result="lost", error=reason, failed_phase="run",
                                                        commit=attempt.commit)
            await self._end(attempt, outcome, collect_log=True)

    async def stop(self, prepare_grace_s: float = PREPARE_GRACE_S) -> None:
        """Stop watching; the attempts' processes keep running for the next agent to adopt.
        Attempts still preparing get ``prepare_grace_s`` to start their trainer first: an
        attempt interrupted in prepare cannot be adopted and fails, so a deploy's SIGTERM
        would otherwise burn it (a SIGKILL still does)."""
        deadline = time.monotonic() + prepare_grace_s
        while time.monotonic() < deadline and any(
            stage_index(a.stage) < stage_index("started") and a.driver is not None and not a.driver.done()
            for a in self.live.values()
        ):
            await asyncio.sleep(0.05)
        drivers = [a.driver for a in self.live.values() if a.driver is not None]
        for d in drivers:
            d.cancel()
        for d in drivers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await d

    # --- phases ----------------------------------------------------------------------

    def _start(self, attempt: Attempt) -> None:
        with task_context(attempt.command):  # every line of the attempt carries its ids
            attempt.driver = asyncio.create_task(self._drive(attempt), name=f"attempt {attempt.name}")

    async def _drive(self, attempt: Attempt) -> None:
        try:
            if stage_index(attempt.stage) < stage_index("started"):
                try:
                    await self._prepare_and_run(attempt)
                except prepare.PrepareError as e:
                    await self._fail(attempt, "prepare", str(e), permanent=e.permanent,
                                     failure_class=getattr(e, "failure_class", None))
                    return
                except Exception as e:
                    log.exception("prepare of %s failed", attempt.name)
                    await self._fail(attempt, "prepare", f"{type(e).__name__}: {e}")
                    return
            await self._watch(attempt)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.exception("attempt %s failed in the agent", attempt.name)
            await self._fail(attempt, "run", f"{type(e).__name__}: {e}")

    async def _prepare_and_run(self, attempt: Attempt) -> None:
        s = self.settings
        work = attempt.work_dir
        prepared = await asyncio.to_thread(
            prepare.fetch_feature_set, attempt.command, work,
            policy=s.fetch_policy(), git_timeout_s=s.git_timeout_s,
        )
        attempt.commit = prepared.commit
        tree = await self.sources.trainer_at(attempt.command.spec.trainer_ref)
        self._note(attempt, f"trainer {tree.ref} ({tree.commit[:12] if tree.commit else tree.path})")
        trainer_src = await asyncio.to_thread(prepare.place_trainer, tree.path, work)
        started = time.monotonic()
        site = await self.sources.requirements_of(prepared.feature_set, work / staging.FEATURE_SET_DIR)
        if site is not None:
            self._note(attempt, f"requirements {site.name[:12]} ready in {time.monotonic() - started:.2f}s")
        output = work / staging.OUTPUT_DIR
        output.mkdir(exist_ok=True)
        (work / ".cache").mkdir(exist_ok=True)
        python = s.python or getattr(self.runtime, "python", "") or sys.executable  # Docker: the image's
        argv = prepare.trainer_argv(
            python, s.trainer_module, attempt.command, prepared.feature_set, output
        )
        env = prepare.trainer_env(s.env_passthrough, work, trainer_src, site)
        await self.runtime.run(attempt.name, argv, env, attempt.home / prepare.CONSOLE_LOG, (site,) if site else ())
        attempt.run_since = time.time()
        attempt.stage = "started"
        attempt.save()
        self.on_change()

    @staticmethod
    def _note(attempt: Attempt, line: str) -> None:
        """A line of the agent's own in the attempt's console."""
        collecting._note(attempt.home, [f"[agent] {line}"])

    async def _watch(self, attempt: Attempt) -> None:
        c = attempt.command
        deadline = run_deadline(c.kind, c.spec.run_timeout_s, self.settings.validation_timeout_s,
                                self.settings.training_timeout_s)
        if attempt.run_since is None:  # started by an agent that did not record it
            attempt.run_since = time.time()
        while True:
            state = await self.runtime.status(attempt.name)
            await self._stream_logs(attempt, final=state.status != "running")
            if state.status != "running":
                break
            if time.time() - attempt.run_since > deadline.seconds:
                await self._fail(attempt, "run", deadline.error(), failure_class="timeout")
                return
            await asyncio.sleep(self.settings.poll_interval_s)
        if state.status == "gone":
            await self._fail(attempt, "run", "the container disappeared", result="lost")
            return
        c = attempt.command
        got = await asyncio.to_thread(
            collecting.collect, attempt.home, attempt.work_dir, self.settings.artifacts_root, c.submission_id,
            c.task_id, c.attempt, self.settings.collect_limits(),
        )
        try:  # the outputs leave the host (publish.py); the report names them by key
            got, log_key = await asyncio.to_thread(publishing.publish_collected, self.grants.give(c), got,
                                                   self.settings.artifacts_root)
        except TouchstoneError as e:
            await self._fail(attempt, "collect", f"could not store the outputs: {e}",
                             permanent=isinstance(e, PermanentError))
            return
        if state.exit_code is None:
            outcome = AttemptOutcome(result="lost", error="the trainer ended without an exit status",
                                     failed_phase="run", log_key=log_key, log_tail=got.log_tail,
                                     commit=attempt.commit)
        else:
            outcome = AttemptOutcome(result="exited", exit_code=state.exit_code, report=got.report,
                                     report_problem=got.report_problem,
                                     metrics=got.metrics, artifacts=got.artifacts, log_key=log_key,
                                     log_tail=got.log_tail, commit=attempt.commit)
        await self._end(attempt, outcome)

    async def _stream_logs(self, attempt: Attempt, *, final: bool) -> None:
        """Publish the console lines written since the last call (a trailing partial line
        waits for its newline, unless the process has ended). Memory stays bounded whatever
        the task prints: one chunk is read at a time, and a line longer than a chunk is sent
        once, cut, and the rest of it skipped up to its newline."""
        aggregate = task_aggregate_id(attempt.command.submission_id, attempt.command.task_id)
        for _ in range(LOG_CHUNKS_PER_LOOK if not final else sys.maxsize):  # the watch loop's deadline stays near
            try:
                chunk = await asyncio.to_thread(
                    workdir.read_bounded, attempt.home, prepare.CONSOLE_LOG, LOG_CHUNK_BYTES, attempt.log_offset
                )
            except workdir.Refused:
                return
            consumed, lines = split_console(chunk, final=final, cutting=attempt.cutting_line, limit=LOG_CHUNK_BYTES)
            if not consumed:
                return
            if lines.cutting is not None:
                attempt.cutting_line = lines.cutting
            for i in range(0, len(lines.lines), LINES_PER_MESSAGE):
                await self.logs(aggregate, lines.lines[i : i + LINES_PER_MESSAGE])
            attempt.log_offset += consumed
            with contextlib.suppress(OSError):
                attempt.save()

    async def _fail(
        self, attempt: Attempt, phase: str, error: str, *, result: str = "failed", permanent: bool = False,
        failure_class: str | None = None,
    ) -> None:
        self._note(attempt, f"{phase} failed: {error}")
        outcome = AttemptOutcome.model_validate(
            {"result": result, "error": error, "failed_phase": phase, "commit": attempt.commit,
             "permanent": permanent, "failure_class": failure_class}
        )
        await self._end(attempt, outcome, collect_log=True)

    async def _end(self, attempt: Attempt, outcome: AttemptOutcome, *, collect_log: bool = False) -> None:
        """Terminate: stop the container, remove the work directory, keep the last report."""
        async with attempt.lock:
            if attempt.removed:
                return
            await self.runtime.terminate(attempt.name)
            if collect_log:
                with contextlib.suppress(Exception):
                    await self._stream_logs(attempt, final=True)
                c = attempt.command
                _, log_file = collecting.attempt_paths(
                    self.settings.artifacts_root, c.submission_id, c.task_id, c.attempt
                )
                _, tail = await asyncio.to_thread(
                    collecting.collect_log, attempt.home, log_file, self.settings.max_log_bytes
                )
                log_key = await asyncio.to_thread(publishing.publish_log, self.grants.give(c), log_file)
                outcome = outcome.model_copy(update={"log_key": outcome.log_key or log_key,
                                                     "log_tail": outcome.log_tail or tail})
            attempt.stage, attempt.outcome = "ended", outcome
            with contextlib.suppress(OSError):
                attempt.save()
            await asyncio.to_thread(shutil.rmtree, attempt.home, True)
            attempt.removed, attempt.ended_at = True, time.time()
            save_ended(self.root, attempt, self.host)
            self.grants.forget(attempt.name)
            self.live.pop(attempt.name, None)
            self.ended[attempt.name] = attempt
        log.info("attempt %s ended: %s", attempt.name, outcome.result,
                 extra={"exit_code": outcome.exit_code, "error": outcome.error})
        self.on_change()


async def _cancel(driver: asyncio.Task[None] | None) -> None:
    """Cancel an attempt's driver and wait until it has stopped."""
    if driver is not None and not driver.done():
        driver.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await driver
