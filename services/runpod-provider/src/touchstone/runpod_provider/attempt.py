"""One attempt on one pod, through every phase (DESIGN §5):

1. provision: create the pod ``touchstone-{submission}-{task}-{attempt}``, or adopt the one
   that already has that name (a create that failed may still have made it) →
   ``ContainerLaunched``; then wait for ``ssh.direct`` and a working handshake →
   ``ContainerReady``;
2. prepare: the feature set (fetched here, never in the pod) and the trainer at the task's
   ``trainer_ref`` (resolved here before any pod is rented; an unknown ref is a permanent
   failure) over SFTP, then the feature set's ``requirements.txt`` installed in the pod;
3. run: the trainer's argv as one quoted command → ``TrainingStarted``; console lines to
   ``{ns}.logs.{task}`` and the log file;
4. collect: ``out/`` back over SFTP, then into the object store with a grant for the
   attempt's prefix (as an agent does), with the full console log; events name keys only;
5. terminate: ``DELETE`` and wait until the pod is gone → ``TrainingFinished`` or
   ``TaskFailed`` → ``ContainerTerminated``.

Every event is appended only if the task's lifecycle still takes it; when it does not (the task
was cancelled or failed by the scheduler) the attempt stops and its pod is terminated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import asyncssh
from nats.aio.client import Client as NATS
from touchstone.shared import events as ev
from touchstone.shared.attempt import run_deadline
from touchstone.shared.commands import LaunchTask
from touchstone.shared.errors import PermanentError, TouchstoneError
from touchstone.shared.objects import upload
from touchstone.shared.objects.grants import UploadGrant
from touchstone.shared.objects.keys import LOG_NAME, attempt_prefix
from touchstone.shared.reports import ValidationReport, read_report
from touchstone.shared.staging import REPORT_FILE, Rejected, artifact_name, artifact_paths
from touchstone.shared.subjects import Subjects, task_aggregate_id

from . import detached, domain, prepare, ssh
from .adapters import ConsoleLog, TaskRecorder
from .api import GpuType
from .config import RunpodProviderSettings
from .pods import InfraFailure, LaunchBlocked, PodControl
from .prepare import PermanentFailure, RejectedInput, TrainerFiles, TrainerTrees
from .sources import SourceError, UnknownRef, stage_feature_set

log = logging.getLogger(__name__)


def _staged(uri: str) -> Path:
    return Path(unquote(urlparse(uri).path))


class Aborted(Exception):
    """The task no longer takes this attempt's events; stop and clean up."""


class TimedOut(Exception):
    """The trainer ran past its run deadline (the message says which); its pod is terminated."""


@dataclass
class AttemptRecord:
    """An attempt this provider drives: what the reaper and the throttle count as ours."""

    command: LaunchTask
    pod_id: str | None = None
    cost_per_hour: float = 0.0
    created_at: float | None = None
    phase: str = "launching"
    launch_recorded: bool = False
    """``ContainerLaunched`` is stored: the launch command may be acked."""
    launch_by: float = 0.0
    """``time.monotonic`` past which a create without stock hands the launch back."""
    assigned_at: datetime | None = None
    """When the task was assigned (the hand-back's id names the assignment it answers)."""
    run_since: float | None = None
    """``time.monotonic`` of the trainer's start (the run deadline counts from it)."""
    resumed: bool = False
    """Adopted from the events by a provider that did not launch it."""
    stop_reason: str | None = None
    detaching: bool = False
    """The provider is going away: leave the pod and its trainer running, record nothing."""
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.command.container_name

    @property
    def ending(self) -> bool:
        """Terminating its pod or done: stopping it again changes nothing."""
        return self.phase in ("terminating", "done")

    def detach(self) -> None:
        """Stop driving the attempt but leave its pod and trainer as they are (the next provider
        adopts them); nothing when it is already ending."""
        if self.task is not None and not self.ending:
            self.detaching = True
            self.task.cancel()

    def stop(self, reason: str) -> None:
        """Cancel the attempt's task, which then terminates the pod and records ``reason``;
        nothing when it is already ending."""
        if self.task is not None and not self.ending:
            self.stop_reason = reason
            self.task.cancel()


@dataclass
class Result:
    exit_code: int
    outcome: domain.Outcome
    metrics: dict[str, Any] = field(default_factory=dict)
    report: ValidationReport | None = None
    artifacts: dict[str, str] = field(default_factory=dict)


class AttemptRunner:
    def __init__(
        self,
        settings: RunpodProviderSettings,
        pods: PodControl,
        recorder: TaskRecorder,
        nc: NATS,
        subjects: Subjects,
        catalog: list[GpuType],
    ) -> None:
        self.settings = settings
        self.pods = pods
        self.recorder = recorder
        self.nc = nc
        self.subjects = subjects
        self.catalog = catalog
        self.layout = domain.PodLayout()
        self.trainers = TrainerTrees(settings)
        self.store = settings.object_store()

    # --- the whole attempt ----------------------------------------------------------------

    async def run(self, rec: AttemptRecord) -> None:
        cmd = rec.command
        outputs, log_file = self.attempt_paths(cmd)
        console = ConsoleLog(self.nc, self.subjects.logs(task_aggregate_id(cmd.submission_id, cmd.task_id)), log_file)
        result: Result | None = None
        failure: tuple[str, ev.FailureClass] | None = None
        with console:
            try:
                result = await self._drive(rec, console, outputs)
            except Aborted as e:
                log.info("%s: stopping, %s", rec.name, e)
            except LaunchBlocked as e:
                if not rec.launch_recorded:  # still assigned: back to the queue
                    await asyncio.shield(self._defer(rec, str(e)))
                    return
                failure = (f"the pod is gone and no new one can be had: {e}", "infrastructure")
            except asyncio.CancelledError:
                if rec.detaching:
                    log.info("%s: detached; the pod goes on for the next provider", rec.name)
                    return
                reason = rec.stop_reason or "the provider is shutting down"
                failure = (f"attempt stopped: {reason}", "infrastructure")
            except InfraFailure as e:
                failure = (str(e), "infrastructure")
            except RejectedInput as e:
                failure = (str(e), "rejected")
            except PermanentFailure as e:
                failure = (str(e), "permanent")
            except TimedOut as e:
                failure = (str(e), "timeout")
            except Exception as e:
                log.exception("%s: unexpected error", rec.name)
                failure = (f"unexpected provider error: {e!r}", "infrastructure")
            if failure is not None:
                await console.write([f"[touchstone] {failure[0]}"])
            await asyncio.shield(self._finish(rec, result, failure, console))

    async def _drive(self, rec: AttemptRecord, console: ConsoleLog, outputs: Path) -> Result:
        cmd = rec.command
        trainer = await self.trainers.at(cmd.spec.trainer_ref)  # before any pod: an unknown ref costs none
        gpu = domain.pick_gpu_type(cmd, self.catalog, self.settings.default_gpu_type)
        if rec.created_at is None:
            rec.created_at = time.monotonic()
        pod = await self.pods.create_or_adopt(self.pods.spec(rec.name, gpu), rec.launch_by)
        rec.pod_id, rec.cost_per_hour = pod.id, pod.cost_per_hour
        await self._record(ev.ContainerLaunched, rec, container_name=rec.name, deployment_id=pod.id,
                           cost_per_hour=rec.cost_per_hour)
        rec.launch_recorded = True
        conn, pod = await self.pods.wait_ready(pod.id)
        rec.cost_per_hour = pod.cost_per_hour or rec.cost_per_hour
        try:
            await self._record(ev.ContainerReady, rec)
            async with conn.start_sftp_client() as sftp:
                started = await detached.started(sftp)
            argv: list[str] = []
            if not started:  # a provider that restarts mid-prepare prepares again
                rec.phase = "preparing"
                await console.write([f"[touchstone] trainer {trainer.label}"])
                deps = await self._prepare(rec, conn, trainer, console)
                argv = domain.trainer_argv(cmd, self.layout, self.settings.python, self.settings.trainer_module,
                                           deps=deps)
            await self._record(ev.TrainingStarted, rec)  # again on a resume: the same event
            rec.phase = "running"
            if rec.run_since is None:
                rec.run_since = time.monotonic()
            if not started:
                await console.write([f"[touchstone] running on pod {pod.id}: {domain.command_line(argv)}"])
                await detached.start(conn, argv, self.settings.ssh_connect_timeout_s * 3)
            else:
                await console.write([f"[touchstone] following the trainer on pod {pod.id} again"])
            conn, exit_status = await self._follow(rec, conn, console)
            if exit_status is None:
                raise InfraFailure(await self.pods.why_lost(pod.id))
            rec.phase = "collecting"
            return await self._collect(rec, conn, outputs, exit_status)
        except detached.NotStarted as e:
            raise InfraFailure(str(e)) from e
        finally:
            conn.close()

    async def _follow(self, rec: AttemptRecord, conn: asyncssh.SSHClientConnection,
                      console: ConsoleLog) -> tuple[asyncssh.SSHClientConnection, int | None]:
        """Follow the detached trainer to its end (``detached.follow_to_end``), connecting again
        while the pod runs; the connection in use and the exit status (None: gone without one)."""
        assert rec.run_since is not None and rec.pod_id is not None
        pod_id = rec.pod_id

        async def reconnect() -> asyncssh.SSHClientConnection | None:
            try:
                return (await self.pods.wait_ready(pod_id))[0]
            except InfraFailure:
                return None  # the pod went away: the caller says how

        offsets = self._offsets(rec)
        cmd = rec.command
        deadline = run_deadline(cmd.kind, cmd.spec.run_timeout_s, self.settings.validation_timeout_s,
                                self.settings.run_timeout_s)
        try:
            return await detached.follow_to_end(conn, reconnect, console.write, offsets, self.settings.poll_interval_s,
                                                rec.run_since + deadline.seconds)
        except detached.DeadlinePassed as e:
            raise TimedOut(deadline.error()) from e

    # --- prepare, run, collect --------------------------------------------------------------

    async def _prepare(self, rec: AttemptRecord, conn: asyncssh.SSHClientConnection, trainer: TrainerFiles,
                       console: ConsoleLog) -> bool:
        """Feature set, trainer and requirements into the pod; True when requirements were
        installed (``touchstone/deps`` goes on the path)."""
        cmd = rec.command
        staging = self.settings.staging_dir / rec.name
        try:
            try:
                staged = await stage_feature_set(cmd.spec, staging, policy=self.settings.fetch_policy(),
                                                 git_timeout_s=self.settings.git_timeout_s)
            except Rejected as e:
                raise prepare.RejectedInput(str(e)) from e
            except UnknownRef as e:
                raise prepare.PermanentFailure(f"could not fetch the feature set: {e}") from e
            except SourceError as e:
                raise InfraFailure(f"could not fetch the feature set: {e}") from e
            requirements = await asyncio.to_thread(prepare.read_requirements, staged.root, cmd.spec.feature_set_path)
            async with conn.start_sftp_client() as sftp:
                await ssh.put_tree(sftp, staged.root, self.layout.feature_set)
                await ssh.put_tree(sftp, trainer.src, self.layout.trainer_src)
                if trainer.configs is not None:
                    await ssh.put_tree(sftp, trainer.configs, f"{self.layout.trainer}/configs")
                await sftp.makedirs(self.layout.output, exist_ok=True)
                if requirements:
                    await prepare.put_requirements(sftp, requirements, self.settings, self.layout)
        except (OSError, asyncssh.Error) as e:
            raise InfraFailure(f"could not copy into pod {rec.pod_id}: {e}") from e
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, ignore_errors=True)
        if requirements:
            await prepare.install_requirements(conn, self.settings, self.layout, console.write)
        return bool(requirements)

    async def _collect(self, rec: AttemptRecord, conn: asyncssh.SSHClientConnection, outputs: Path,
                       exit_status: int) -> Result:
        cmd = rec.command
        budget = ssh.Budget(self.settings.max_collect_bytes)
        artifacts: dict[str, str] = {}
        try:
            async with conn.start_sftp_client() as sftp:
                for path in await ssh.fetch_tree(sftp, f"{self.layout.output}/models", outputs / "models", budget):
                    name = artifact_name(path.relative_to(outputs / "models").as_posix())
                    artifacts[name] = path.resolve().as_uri()
                metrics_path = await ssh.fetch_file(sftp, f"{self.layout.output}/metrics.json",
                                                    outputs / "metrics.json", budget)
                report_path = await ssh.fetch_file(sftp, self.layout.report, outputs / REPORT_FILE, budget)
                left = await ssh.left_behind(sftp, self.layout.report) if report_path is None else None
                curves_path = await ssh.fetch_file(sftp, f"{self.layout.output}/curves.json",
                                                   outputs / "curves.json", budget)
        except (OSError, asyncssh.Error) as e:
            raise InfraFailure(f"could not collect from pod {rec.pod_id}: {e}") from e
        for fetched in (metrics_path, report_path, curves_path):
            if fetched is not None:
                artifacts[fetched.name] = fetched.resolve().as_uri()
        report, problem = read_report(outputs, REPORT_FILE) if report_path else (None, None)
        if left:
            problem = f"report.json refused: {left}"
        return Result(
            exit_code=exit_status,
            outcome=domain.outcome(exit_status, cmd.kind, report, problem),
            metrics=ssh.read_json(metrics_path) or {},
            report=report,
            artifacts=artifacts,
        )

    # --- terminate and report ---------------------------------------------------------------

    def _offsets(self, rec: AttemptRecord) -> detached.OffsetFile:
        """How far this attempt's console was read (kept across provider restarts)."""
        return detached.OffsetFile(self.settings.data_dir / "runpod-provider" / "follow" / rec.name)

    async def _finish(self, rec: AttemptRecord, result: Result | None, failure: tuple[str, ev.FailureClass] | None,
                      console: ConsoleLog) -> None:
        rec.phase = "terminating"
        with contextlib.suppress(OSError):
            self._offsets(rec).remove()
        if rec.pod_id is None and rec.created_at is not None:
            # stopped while a create was in flight: the pod may exist without us knowing its id
            with contextlib.suppress(Exception):
                found = await self.pods.find(rec.name)
                rec.pod_id = found[0].id if found else None
        gone = await self.pods.terminate(rec.pod_id) if rec.pod_id else True
        run_s = time.monotonic() - rec.created_at if rec.created_at is not None else 0.0
        cost = domain.cost_usd(rec.cost_per_hour, run_s)
        if result is not None and result.outcome.succeeded:
            try:  # the outputs go to the object store; the events name them by key
                result.artifacts = await self._publish(rec, result.artifacts)
            except TouchstoneError as e:
                failure = (f"could not store the outputs: {e}",
                           "permanent" if isinstance(e, PermanentError) else "infrastructure")
                await console.write([f"[touchstone] {failure[0]}"])
                result = None
        log_key = await self._publish_log(rec, console)
        try:
            if result is not None and result.outcome.succeeded:
                await self._record(
                    ev.TrainingFinished, rec, exit_code=result.exit_code, metrics=result.metrics,
                    artifacts=result.artifacts, log_key=log_key, cost_usd=cost,
                    report=result.report if rec.command.kind == "validation" else None, strict=False,
                )
            else:
                if result is not None:
                    failure = (result.outcome.reason, result.outcome.failure_class)
                if failure is not None:
                    await self._record(ev.TaskFailed, rec, reason=failure[0], failure_class=failure[1],
                                       log_snippet=console.snippet(), log_key=log_key, strict=False)
            if rec.pod_id and gone:
                await self._record(ev.ContainerTerminated, rec, container_name=rec.name, strict=False)
        except Exception as e:
            log.error("%s: could not record how the attempt ended: %r", rec.name, e)
        rec.phase = "done"

    def _grant(self, cmd: LaunchTask) -> UploadGrant:
        """Write access to the attempt's prefix only: the provider puts outputs into the store
        the way an agent does, never with the store's own credentials."""
        prefix = attempt_prefix(cmd.submission_id, cmd.task_id, cmd.attempt)
        return self.store.grant(prefix, self.settings.upload_max_bytes, self.settings.upload_grant_ttl_s,
                                datetime.now(UTC))

    async def _publish(self, rec: AttemptRecord, artifacts: dict[str, str]) -> dict[str, str]:
        """The collected outputs into the object store; ``{name: key}``. The staged copies go."""
        cmd = rec.command
        outputs, _ = self.attempt_paths(cmd)
        files = [upload.Staged(name, _staged(uri).relative_to(outputs.resolve()).as_posix(), _staged(uri))
                 for name, uri in sorted(artifacts.items())]
        keys = await asyncio.to_thread(upload.publish, self._grant(cmd), cmd.submission_id, cmd.task_id,
                                       cmd.attempt, files)
        await asyncio.to_thread(shutil.rmtree, outputs, True)
        return keys

    async def _publish_log(self, rec: AttemptRecord, console: ConsoleLog) -> str | None:
        """The full console log into the object store; its key, or none when it could not be
        stored (the event keeps the snippet)."""
        if not console.path.exists():
            return None
        cmd = rec.command
        try:
            keys = await asyncio.to_thread(upload.publish, self._grant(cmd), cmd.submission_id, cmd.task_id,
                                           cmd.attempt, [upload.Staged("log", LOG_NAME, console.path)])
        except Exception as e:
            log.warning("%s: the console log could not be stored: %r", rec.name, e)
            return None
        return keys.get("log")

    async def _defer(self, rec: AttemptRecord, reason: str) -> None:
        """No pod could be had yet: hand the task back to the queue (same attempt)."""
        rec.phase = "terminating"
        with contextlib.suppress(Exception):  # a create that may have made the pod after all
            for pod in await self.pods.find(rec.name):
                await self.pods.terminate(pod.id)
        event = domain.launch_deferred(rec.command, reason, datetime.now(UTC), self.settings.launch_retry_s,
                                       rec.assigned_at)
        try:
            if await self.recorder.record(event):
                log.info("%s: launch handed back to the queue: %s", rec.name, reason)
        except Exception as e:
            log.error("%s: could not hand the launch back: %r", rec.name, e)
        rec.phase = "done"

    async def _record(self, cls: type[ev.TaskEvent], rec: AttemptRecord, *, strict: bool = True, **fields: Any) -> None:
        if not await self.recorder.record(domain.attempt_event(cls, rec.command, **fields)) and strict:
            raise Aborted(f"the task no longer takes {cls.__name__}")

    def attempt_paths(self, cmd: LaunchTask) -> tuple[Path, Path]:
        """(outputs folder, log file) of the attempt in the artifact store (the one layout)."""
        return artifact_paths(self.settings.artifacts_dir, cmd.submission_id, cmd.task_id, cmd.attempt)
