"""The agent process: commands in, heartbeats, attempt reports and console lines out.

It connects outbound to NATS only and uses its own host's subjects only:

* commands: core-NATS request/reply on ``{ns}.agent.{host}.cmd`` (``subscribe`` + ``respond``).
  Request/reply rather than a JetStream consumer, because (1) the provider learns at once
  whether the agent took the command, and keeps the scheduler's command un-acked (so it is
  redelivered) while the agent does not answer; (2) the agent needs no JetStream API rights,
  which keeps its NATS user to its own subjects and the reply inboxes; (3) both commands are
  idempotent, so a retry after a lost reply is harmless. Each goes to its reaction in
  ``handlers.REACTIONS``; operator requests on the same subject to ``OperatorAccess``;
* reports: ``AgentHeartbeat`` and ``AttemptReport`` on ``{ns}.agent.{host}.evt``, every
  ``heartbeat_interval_s`` and at once on a change;
* console lines: ``{ns}.logs.{task aggregate}`` (kept by the logs stream).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from pydantic import BaseModel
from touchstone.agent.access import OperatorAccess
from touchstone.agent.attempts import Attempts
from touchstone.agent.config import AgentSettings
from touchstone.agent.docker import DockerLimits, DockerRuntime, docker_usable
from touchstone.agent.gpus import query_gpus
from touchstone.agent.handlers import REACTIONS, Deps, answer_command
from touchstone.agent.process import ProcessRuntime
from touchstone.agent.runtime import ContainerRuntime
from touchstone.agent.sandbox import Bubblewrap, UnavailableRuntime
from touchstone.agent.strays import StrayReaper
from touchstone.shared import console
from touchstone.shared.agentaccess import OPERATOR_TYPES
from touchstone.shared.agents import AgentHeartbeat, GpuStatus, encode, encode_report
from touchstone.shared.subjects import Subjects

log = logging.getLogger(__name__)

ROUND_TRIP_PATIENCE_S = 24 * 3600
"""How long one lease round trip may wait for its PONG (in effect: until it comes, or the client
reconnects, which drops what was pending)."""


def agent_version() -> str:
    try:
        return version("touchstone-agent")
    except PackageNotFoundError:
        return "0+unknown"


@dataclass(frozen=True)
class RuntimeChoice:
    runtime: ContainerRuntime
    isolation: str
    """``docker``, ``bubblewrap`` or ``none`` (what the heartbeat and the System page show)."""
    refusing: str | None = None
    """Why the agent takes no work: the configured isolation cannot run here."""


def choose_runtime(settings: AgentSettings) -> RuntimeChoice:
    """The runtime ``settings.runtime`` names, never a weaker one: ``docker`` that cannot run,
    or a process sandbox that cannot start, gives a refusing agent (``auto``: Docker, else the
    sandbox, else refuse)."""
    kind, why_not_docker = settings.runtime, None
    if kind in ("docker", "auto"):
        why_not_docker = docker_usable(settings.docker_image, settings.docker_url)
        if kind == "auto":
            kind = "process" if why_not_docker else "docker"
            log.info("runtime auto: %s (%s)", kind,
                     why_not_docker or f"the Docker engine answers and has {settings.docker_image}")
    if kind == "docker" and why_not_docker:
        return RuntimeChoice(UnavailableRuntime(why_not_docker), "docker", f"runtime=docker, but {why_not_docker}")
    if kind == "docker":
        limits = DockerLimits(user=settings.docker_user, pids=settings.docker_pids_limit,
                              memory=settings.docker_memory, cpus=settings.docker_cpus)
        runtime = DockerRuntime(settings.docker_image, owner=settings.host, limits=limits,
                                kill_grace_s=settings.kill_grace_s, base_url=settings.docker_url,
                                root=settings.work_root)
        return RuntimeChoice(runtime, "docker")
    if settings.process_sandbox == "none":
        log.warning("process runtime WITHOUT a sandbox (process_sandbox=none): tasks see this host")
        return RuntimeChoice(ProcessRuntime(settings.work_root, python=settings.python,
                                            kill_grace_s=settings.kill_grace_s), "none")
    sandbox = Bubblewrap.for_python(settings.python or sys.executable)
    runtime = ProcessRuntime(settings.work_root, python=settings.python, kill_grace_s=settings.kill_grace_s,
                             sandbox=sandbox)
    why_not = sandbox.probe()
    if why_not and why_not_docker:
        why_not = f"no Docker ({why_not_docker}) and no sandbox ({why_not})"
    return RuntimeChoice(runtime, "bubblewrap", why_not)


def isolation_of(runtime: ContainerRuntime) -> str:
    if isinstance(runtime, DockerRuntime):
        return "docker"
    if isinstance(runtime, ProcessRuntime):
        return "bubblewrap" if runtime.sandbox is not None else "none"
    return type(runtime).__name__


def build_runtime(settings: AgentSettings) -> ContainerRuntime:
    """The runtime ``settings.runtime`` names (``choose_runtime``)."""
    return choose_runtime(settings).runtime


class Agent:
    def __init__(
        self, settings: AgentSettings, nc: NATS, subjects: Subjects, runtime: ContainerRuntime | None = None
    ) -> None:
        self.settings = settings
        self.nc = nc
        self.subjects = subjects
        self.host = settings.host
        self._changed = asyncio.Event()
        self.choice = choose_runtime(settings) if runtime is None else RuntimeChoice(runtime, isolation_of(runtime))
        if self.choice.refusing:
            log.error("agent %s takes no work: %s", settings.host, self.choice.refusing)
        self.attempts = Attempts(
            settings, self.choice.runtime, on_change=self._changed.set, logs=self._publish_logs
        )
        self.reaper = StrayReaper(
            self.attempts.runtime, settings.work_root, settings.stray_grace_s, lambda: self.attempts.live
        )
        self.handlers = REACTIONS.bind(Deps(settings.host, self.attempts, lambda: self.choice.refusing))
        self.gpus: list[GpuStatus] = []
        self.operator = OperatorAccess(settings)
        self.version = agent_version()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started = time.monotonic()
        self._last_contact = time.monotonic()
        self._probe: asyncio.Future[None] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        await self._refresh_gpus()
        await self.attempts.adopt()
        await self._reap()
        sub = await self.nc.subscribe(self.subjects.agent_commands(self.host), cb=self._on_command)
        ping = None
        if self.settings.answer_status:
            ping = await self.nc.subscribe(self.subjects.status_ping, cb=self._on_ping)
        log.info("agent %s ready: %d slots, %d GPUs, %s (isolation: %s), trainer %s", self.host,
                 self.attempts.slots_total, len(self.gpus), type(self.attempts.runtime).__name__,
                 self.choice.isolation, self.attempts.sources.trainer.describe())
        try:
            while not stop.is_set():
                self._changed.clear()
                await self.publish_state()
                await self._keep_lease()
                waiters = [asyncio.ensure_future(self._changed.wait()), asyncio.ensure_future(stop.wait())]
                await asyncio.wait(waiters, timeout=self.settings.heartbeat_interval_s,
                                   return_when=asyncio.FIRST_COMPLETED)
                for w in waiters:
                    w.cancel()
                if not self._changed.is_set():
                    await self._refresh_gpus()
                    await self._reap()
                    await self._recheck_runtime()
        finally:
            for subscription in (sub, ping):
                with contextlib.suppress(Exception):
                    if subscription is not None:
                        await subscription.unsubscribe()
            for task in list(self._tasks):
                task.cancel()
            await self.attempts.stop()

    # --- reports -----------------------------------------------------------------------

    def heartbeat(self) -> AgentHeartbeat:
        busy = self.attempts.busy_slots()
        total = self.attempts.slots_total
        gpus = tuple(g.model_copy(update={"busy": g.index in busy}) for g in self.gpus)
        return AgentHeartbeat(
            host=self.host, namespace=self.subjects.ns, version=self.version, gpus=gpus,
            slots_total=total, slots_free=0 if self.choice.refusing else max(0, total - len(busy)),
            slots_busy=tuple(sorted(busy)),
            running=self.attempts.running(), isolation=self.choice.isolation, refusing=self.choice.refusing,
        )

    async def publish_state(self) -> None:
        subject = self.subjects.agent_reports(self.host)
        try:
            await self.nc.publish(subject, encode_report(self.heartbeat()))
            for report in self.attempts.reports():
                await self.nc.publish(subject, encode(report))
        except Exception as e:  # disconnected: the client buffers or the next tick retries
            log.warning("could not publish reports: %r", e)

    async def _keep_lease(self) -> None:
        """Renew the lease with a round trip to the server; past the lease, stop everything."""
        lease = self.settings.lease_s
        if lease <= 0:
            return
        if self.nc.is_connected:  # (a flush while reconnecting may answer without a server)
            if self._probe is None or self._probe.done():
                self._probe = asyncio.ensure_future(self._round_trip())
            with contextlib.suppress(TimeoutError):  # waited for, never given up on
                await asyncio.wait_for(asyncio.shield(self._probe), timeout=max(0.1, min(2.0, lease / 2)))
        silent = time.monotonic() - self._last_contact
        if silent > lease and self.attempts.live:
            log.error("cut off from NATS for %.0fs (lease %.0fs): stopping every attempt", silent, lease)
            await self.attempts.stop_all(f"the agent was cut off from NATS for {silent:.0f}s")

    async def _round_trip(self) -> None:
        """One PING/PONG with the server, its PONG awaited however late it comes. nats-py (2.16)
        cancels a flush's PONG on timeout but keeps it queued: the late PONG then raises in its
        read loop, which stops for good, and the agent hears nothing more while looking connected
        (chaos scenario 2: a GPU host cut off past a flush timeout never came back). So the
        lease's wait gives up on the round trip, never the round trip itself."""
        with contextlib.suppress(Exception):
            await self.nc.flush(timeout=ROUND_TRIP_PATIENCE_S)
            if self.nc.is_connected:
                self._last_contact = time.monotonic()

    async def _publish_logs(self, aggregate: str, lines: list[str]) -> None:
        with contextlib.suppress(Exception):
            for body in console.messages(lines):
                await self.nc.publish(self.subjects.logs(aggregate), body)

    async def _recheck_runtime(self) -> None:
        """A refusing agent looks again (Docker started, bubblewrap installed) and takes work
        once what it was told to use runs."""
        if not self.choice.refusing:
            return
        again = await asyncio.to_thread(choose_runtime, self.settings)
        if again.refusing is None and again.isolation == self.choice.isolation and not self.attempts.live:
            log.info("agent %s takes work again: %s runs here now", self.host, again.isolation)
            self.choice = again
            self.attempts.runtime = self.reaper.runtime = self.attempts.sources.runtime = again.runtime
            self._changed.set()

    async def _reap(self) -> None:
        try:
            await self.reaper.sweep()
        except Exception as e:  # the engine is busy or gone: the next tick tries again
            log.warning("could not look for stray containers: %r", e)

    async def _refresh_gpus(self) -> None:
        gpus = await query_gpus(self.settings.nvidia_smi)
        self.gpus = gpus or []
        self.attempts.has_gpus = bool(gpus)
        self.attempts.slots_total = len(gpus) if gpus else self.settings.num_slots

    async def _on_ping(self, msg: Msg) -> None:
        """Answer ``touchstone status`` like every service does."""
        body = {"service": "agent", "host": self.host, "pid": os.getpid(), "healthy": True, "detail": "ok",
                "uptime_s": round(time.monotonic() - self._started, 1), "running": len(self.attempts.live)}
        with contextlib.suppress(Exception):
            await msg.respond(json.dumps(body).encode())

    # --- commands ----------------------------------------------------------------------

    async def _on_command(self, msg: Msg) -> None:
        task = asyncio.create_task(self._answer(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, msg: Msg) -> None:
        reply = await self.handle(msg.data, msg.subject)
        if msg.reply:
            with contextlib.suppress(Exception):
                await msg.respond(encode(reply))

    async def handle(self, data: bytes, subject: str) -> BaseModel:
        """The answer to one message on the command subject: an operator request, or a command
        for its reaction (``handlers``)."""
        if _type_of(data) in OPERATOR_TYPES:
            return await self.operator.handle(data)
        return await answer_command(self.handlers, data, subject)


def _type_of(data: bytes) -> object:
    """The ``type`` of a command message, or None (a malformed one is answered by ``handle``)."""
    try:
        body = json.loads(data)
    except ValueError:
        return None
    return body.get("type") if isinstance(body, dict) else None
