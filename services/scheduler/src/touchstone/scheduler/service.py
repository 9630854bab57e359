"""The scheduler process: the view kept current from the stream, reactions, placement, the
sweep, and the lease that decides which replica acts.

Every replica follows the stream and the agents' heartbeats, so a standby is ready the moment
it takes the lease. Only the active one (lease held, view caught up) appends or sends.
Decisions come from the pure modules (``policy``, ``domain``, ``stuck``); this module does the
I/O: ``execute`` runs their plans with optimistic concurrency, and on a conflict reloads the
aggregate from the stream and decides again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import NamedTuple

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from touchstone.scheduler import handlers, policy, telemetry
from touchstone.scheduler.adapters import CommandBus, EventFeed, LeaderLease, listen_to_agents
from touchstone.scheduler.config import SchedulerSettings
from touchstone.scheduler.domain import (
    Assignment,
    Capacity,
    HostReport,
    LivePlacement,
    QueuedTask,
    capacity_of,
    decide,
    foreign,
    online,
    open_platforms,
)
from touchstone.scheduler.liveness import listen_to_providers, note_live
from touchstone.scheduler.pipeline import Pipeline, append_pipelined
from touchstone.scheduler.stuck import Deadlines
from touchstone.scheduler.sweep import live_of, queue_of, sweep_plans
from touchstone.scheduler.view import LIVE_SUBMISSION, SchedulerView
from touchstone.shared import events as ev
from touchstone.shared.agents import AgentHeartbeat
from touchstone.shared.consumer import Delivery
from touchstone.shared.errors import ConcurrencyConflict, UnavailableError
from touchstone.shared.jetstream import system_bucket
from touchstone.shared.lifecycle import TaskState
from touchstone.shared.logs import task_context
from touchstone.shared.providers import LiveAttempts
from touchstone.shared.publisher import EventPublisher
from touchstone.shared.subjects import Subjects
from touchstone.shared.system import SystemSettings, watch_system

log = logging.getLogger(__name__)


class Recheck(NamedTuple):  # an aggregate to reload from the stream and decide for again
    aggregate: str  # "task" | "submission"
    aggregate_id: str


class Scheduler:
    def __init__(
        self,
        cfg: SchedulerSettings,
        nc: NATS,
        js: JetStreamContext,
        subjects: Subjects,
        *,
        clock: Callable[[], datetime] = ev.utcnow,
    ) -> None:
        self.cfg = cfg
        self.nc, self.js, self.subjects = nc, js, subjects
        self.clock = clock
        self.instance_id = cfg.resolved_instance_id()
        self.view = SchedulerView(cfg.retry_policy())
        self.publisher = EventPublisher(js, subjects)
        self.pipeline = Pipeline(nc)
        self.commands = CommandBus(js, subjects, pipeline=self.pipeline)
        self.feed = EventFeed(js, subjects, self._on_stored, self._confirm_echo)
        self.lease = LeaderLease(js, subjects, self.instance_id, cfg.lease_ttl_s) if cfg.leader_election else None
        self.leading = self.lease is None
        self.system = SystemSettings()
        self.hosts: dict[str, HostReport] = {}
        self.last_seen: dict[str, datetime] = {}
        self.deadlines = Deadlines(
            cfg.launch_timeout_s, cfg.provisioning_timeout_s, cfg.preparing_timeout_s,
            cfg.running_heartbeat_timeout_s,
        )
        self.sent: dict[str, datetime] = {}
        """Command message ids this process sent, and when (kept for the resend window)."""
        self.sending: set[str] = set()
        """Launch message ids being sent by placement right now (the sweep leaves them alone)."""
        self.conflicts = 0
        self.watch_since = clock()
        self._inbox: asyncio.Queue[tuple[ev.Event, int] | Recheck | None] = asyncio.Queue()
        self._deps = handlers.Deps(self.reconcile_submission, self.reconcile_task, self.request_placement)
        self._placement_wanted = asyncio.Event()
        self._sweep_wanted = asyncio.Event()
        self._limit = asyncio.Semaphore(cfg.placement_concurrency)
        self._active_before = False
        self._wake: asyncio.TimerHandle | None = None
        self._queue_cache: dict[str, tuple[int, QueuedTask]] = {}
        self._in_flight: dict[str, ev.Event] = {}
        """Appends published and not yet acknowledged, by event id (see ``_confirm_echo``)."""

    @property
    def active(self) -> bool:
        leading = self.leading if self.lease is None else self.leading and self.lease.held
        return leading and self.feed.caught_up.is_set()

    # --- running ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self.watch_since = self.clock()
        telemetry.COLLECTOR.source = self
        agents = await listen_to_agents(self.nc, self.subjects, self.on_heartbeat)
        providers = await listen_to_providers(self.nc, self.subjects, self.on_live_attempts)
        kv = await system_bucket(self.js, self.subjects)
        loops = [
            self.feed.run(stop), self._react(stop), self._sweep_loop(stop), watch_system(kv, self.on_settings, stop),
        ]
        if self.cfg.auto_place:
            loops.append(self._place_loop(stop))
        if self.lease is not None:
            loops.append(self.lease.run(stop, self._on_leadership))
        tasks = [asyncio.create_task(c) for c in loops]
        stopped = asyncio.create_task(stop.wait())
        try:
            ended, _ = await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
            if stopped not in ended:  # a loop ended on its own: stop, so a supervisor restarts us
                stop.set()
                failed = next(iter(ended))
                raise RuntimeError(f"scheduler loop ended unexpectedly: {failed.exception()!r}")
        finally:
            self._inbox.put_nowait(None)
            self._placement_wanted.set()
            self._sweep_wanted.set()
            finished, pending = await asyncio.wait(tasks, timeout=5)
            for t in pending:
                t.cancel()
            for t in finished:
                if not t.cancelled() and t.exception() is not None:
                    log.error("scheduler loop failed: %r", t.exception())
            with contextlib.suppress(Exception):
                await agents.unsubscribe()
            with contextlib.suppress(Exception):
                await providers.unsubscribe()
            if telemetry.COLLECTOR.source is self:
                telemetry.COLLECTOR.source = None

    def _on_leadership(self, held: bool) -> None:
        self.leading = held
        self._sweep_wanted.set()

    def on_settings(self, settings: SystemSettings) -> None:
        self.system = settings
        self.request_placement()

    def on_heartbeat(self, heartbeat: AgentHeartbeat) -> None:
        now = self.clock()
        before = self.hosts.get(heartbeat.host)
        report = self.hosts[heartbeat.host] = HostReport(heartbeat, now)
        elsewhere = foreign(report, self.cfg.namespace)
        moved = before is not None and foreign(before, self.cfg.namespace) != elsewhere
        if elsewhere and (before is None or moved):
            log.warning("host %s says it serves namespace %s: nothing more is placed there",
                        heartbeat.host, heartbeat.namespace)
        for name in heartbeat.running:
            self.last_seen[name] = now
        if (
            before is None
            or moved
            or not online(before, now, self.cfg.heartbeat_timeout_s)
            or before.heartbeat.slots_free != heartbeat.slots_free
            or before.heartbeat.running != heartbeat.running
        ):
            self.request_placement()

    def on_live_attempts(self, report: LiveAttempts) -> None:
        """A provider's attempts (RunPod's pods): each name counts as heard of, as in a heartbeat."""
        note_live(self.last_seen, report, self.clock())

    def request_placement(self) -> None:
        self._placement_wanted.set()

    # --- the view --------------------------------------------------------------------------

    async def _on_stored(self, seq: int, event: ev.Event) -> None:
        self._fold(seq, event, local=False)

    def _confirm_echo(self, subject: str, seq: int, msg_id: str) -> bool:
        """An own append fed back by the stream: folded from the model it was published from
        (when its acknowledgement is still on the way) or confirmed, without parsing it."""
        event = self._in_flight.pop(msg_id, None)
        if event is not None:
            self._fold(seq, event, local=False)
            return True
        try:
            _, aggregate, aggregate_id, _ = subject.rsplit(".", 3)
        except ValueError:
            return False
        return self.view.confirm_own(aggregate, aggregate_id, seq, msg_id)

    def _fold(self, seq: int, event: ev.Event, *, local: bool) -> None:
        record = self.view.tasks.get(event.aggregate_id) if isinstance(event, ev.TaskEvent) else None
        before = record.state if record is not None else None
        outcome = self.view.apply(seq, event, self.clock(), local=local)
        if outcome == "applied" and before is not None and self.active:
            self._count(event, before)
        if outcome == "applied" or (outcome == "ignored" and isinstance(event, ev.TaskEvent)):
            self._inbox.put_nowait((event, seq))
        elif outcome == "reload":
            self._inbox.put_nowait(Recheck(event.aggregate, event.aggregate_id))

    def _count(self, event: ev.Event, before: TaskState) -> None:
        """Metrics of a live event (the active replica counts; see ``telemetry``)."""
        task = self.view.tasks.get(event.aggregate_id)
        platform = task.platforms.get(before.attempt) if task is not None else None
        telemetry.record(telemetry.observe(event, before, platform))

    async def reload(self, aggregate: str, aggregate_id: str) -> None:
        """Refold one aggregate from the stream, then decide for it again."""
        history = await self.publisher.load(aggregate, aggregate_id)
        now = self.clock()
        if aggregate == "task":
            events = [(r.seq, r.event) for r in history if isinstance(r.event, ev.TaskEvent)]
            self.view.replace_task(events, now)
            if events:
                await self.reconcile_task(aggregate_id)
                await self.reconcile_submission(events[0][1].submission_id)
            self.request_placement()
        else:
            subs = [(r.seq, r.event) for r in history if isinstance(r.event, ev.SubmissionEvent)]
            self.view.replace_submission(subs)
            await self.reconcile_submission(aggregate_id)

    async def _react(self, stop: asyncio.Event) -> None:
        while (item := await self._inbox.get()) is not None and not stop.is_set():
            try:
                if isinstance(item, Recheck):
                    await self.reload(*item)
                elif self.active and (reaction := handlers.REACTIONS.get(item[0].event_type)) is not None:
                    event, seq = item
                    subject = self.subjects.event(event.aggregate, event.aggregate_id, event.event_type)
                    with task_context(event):  # the ordered feed hands each event over once
                        await reaction(event, self._deps, Delivery(subject, seq, 1, 0))
            except Exception as e:  # the sweep retries whatever this left undone
                log.warning("reaction to %r failed: %r", item, e)

    # --- doing -----------------------------------------------------------------------------

    async def execute(self, plans: Iterable[policy.Plan]) -> list[bool]:
        """Run plans concurrently; ``False`` for each one stopped by a conflict."""
        plans = list(plans)
        if not plans:  # most reactions find nothing to do
            return []
        return list(await asyncio.gather(*(self._run_plan(p) for p in plans)))

    async def _run_plan(self, plan: policy.Plan) -> bool:
        head = plan[0] if plan else None
        with task_context(head.event if isinstance(head, policy.Append) else getattr(head, "command", None)):
            return await self._run_steps(plan)

    async def _run_steps(self, plan: policy.Plan) -> bool:
        async with self._limit:
            seq: int | None = None
            for step in plan:
                if not self.active:
                    return False
                if isinstance(step, policy.Send):
                    if step.msg_id not in self.sent:
                        await self.commands.send(step.service, step.command, step.msg_id)
                        self.sent[step.msg_id] = self.clock()
                    continue
                expected = step.expected_seq if step.expected_seq is not None else seq
                event = step.event.model_copy(update={"occurred_at": self.clock()})  # when it is recorded
                try:
                    seq = await self.publisher.append(event, expected_last_seq=expected)
                except ConcurrencyConflict:
                    self.conflicts += 1
                    self._inbox.put_nowait(Recheck(event.aggregate, event.aggregate_id))
                    return False
                self._fold(seq, event, local=True)
            return True

    async def reconcile_submission(self, submission_id: str) -> None:
        sub = self.view.submissions.get(submission_id)
        if sub is not None and sub.status in LIVE_SUBMISSION and self.active:
            tasks = list(self.view.tasks_of(submission_id))
            await self.execute(policy.submission_plans(sub, tasks, self.cfg, self.clock()))

    async def reconcile_task(self, key: str) -> None:
        task = self.view.tasks.get(key)
        if task is None or task.state is None or not self.active:
            return
        sub = self.view.submissions.get(task.submission_id)
        window = self.cfg.command_resend_window_s
        await self.execute(policy.task_plans(task, sub, self.clock(), window))

    # --- placement -------------------------------------------------------------------------

    def queue(self, platforms: Iterable[str] | None = None) -> list[QueuedTask]:
        return queue_of(self.view, self.cfg, self._queue_cache, platforms)

    def live_placements(self) -> list[LivePlacement]:
        return live_of(self.view)

    def capacity(self, now: datetime) -> Capacity:
        """What placement may use now: declared servers heard from, RunPod's cap, less what runs."""
        return capacity_of(
            self.system, self.hosts, self.live_placements(), now,
            heartbeat_timeout_s=self.cfg.heartbeat_timeout_s, cpu_slots_per_server=self.cfg.cpu_slots_per_server,
            namespace=self.cfg.namespace,
        )

    async def place(self) -> int:
        """One placement round; returns the assignments made."""
        now = self.clock()
        capacity = self.capacity(now)
        queue = self.queue(open_platforms(capacity))  # a long queue for a full platform costs nothing
        chosen = decide(queue, capacity, now, runpod_default_gpu_type=self.cfg.runpod_default_gpu_type)
        # each assignment holds only while its task stays as it was decided on (same sequence)
        decided = [(a, self.view.tasks[a.key].seq) for a in chosen]
        size = max(1, self.cfg.placement_batch)
        batches = [decided[i : i + size] for i in range(0, len(decided), size)]
        limit = asyncio.Semaphore(max(1, self.cfg.placement_concurrency // size))

        async def assign(batch: list[tuple[Assignment, int]]) -> int:
            async with limit:  # the next batch's appends need not wait for these launches
                recorded, settle = await self._record(batch)
            return await self._launch(recorded, settle)

        made = sum(await asyncio.gather(*(assign(b) for b in batches)))
        if made < len(chosen):
            self.request_placement()
        self._wake_at_next_not_before(queue, now)
        return made

    async def _record(self, batch: list[tuple[Assignment, int]]) -> tuple[list[policy.Plan], list[policy.Plan]]:
        """Append a batch of assignments: every append is published before any acknowledgement
        is awaited, each with the task sequence it was decided on (a task that moved since is
        left for the next round). Returns the plans recorded and those to settle through
        ``execute`` (refused or unacknowledged: a duplicate or a conflict is told apart there,
        and a conflict reloads the task)."""
        if not self.active:
            return [], []
        now = self.clock()  # when these decisions are recorded
        tasks = [(self.view.tasks.get(a.key), a, seq) for a, seq in batch]
        plans = [policy.assignment_plan(t, a, now) for t, a, seq in tasks if t is not None and t.seq == seq]
        heads = [plan[0] for plan in plans]
        assert all(isinstance(h, policy.Append) and h.expected_seq is not None for h in heads)
        appends = [(h.event, h.expected_seq) for h in heads]  # type: ignore[union-attr]
        self._in_flight.update((e.event_id, e) for e, _ in appends)
        try:
            outcomes = await append_pipelined(self.pipeline, self.publisher, appends)  # type: ignore[arg-type]
        finally:
            for event, _ in appends:
                self._in_flight.pop(event.event_id, None)
        recorded, settle = [], []
        for plan, (event, _), outcome in zip(plans, appends, outcomes, strict=True):
            if isinstance(outcome, int):
                self._fold(outcome, event, local=True)
                recorded.append(plan)
            else:
                settle.append(plan)
        return recorded, settle

    async def _launch(self, recorded: list[policy.Plan], settle: list[policy.Plan]) -> int:
        """Send the launches of recorded assignments (together), and settle the others."""
        sends = [s for plan in recorded for s in plan[1:] if isinstance(s, policy.Send) and s.msg_id not in self.sent]
        if sends and self.active:
            self.sending.update(s.msg_id for s in sends)
            try:
                await self.commands.send_many([(s.service, s.command, s.msg_id) for s in sends])
                at = self.clock()
                self.sent.update((s.msg_id, at) for s in sends)
            except UnavailableError as e:  # recorded, not sent: the next sweep sends them
                log.warning("%d launches not sent yet (the sweep sends them): %s", len(sends), e)
            finally:
                self.sending.difference_update(s.msg_id for s in sends)
        return len(recorded) + sum(await self.execute(settle))

    def _wake_at_next_not_before(self, queue: list[QueuedTask], now: datetime) -> None:
        waits = [t.not_before for t in queue if t.not_before is not None and t.not_before > now]
        if self._wake is not None:
            self._wake.cancel()
            self._wake = None
        if waits:
            delay = (min(waits) - now).total_seconds()
            self._wake = asyncio.get_running_loop().call_later(delay + 0.01, self.request_placement)

    async def _place_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self._placement_wanted.wait()
            self._placement_wanted.clear()
            if stop.is_set() or not self.active:
                continue
            try:
                await self.place()
            except Exception as e:
                log.warning("placement failed: %r", e)
                await asyncio.sleep(0.2)
                self.request_placement()

    # --- the sweep -------------------------------------------------------------------------

    async def sweep(self) -> None:
        """Repair whatever reactions missed: submissions, follow-ups, stuck tasks, placement."""
        if not self.active:
            return
        now = self.clock()
        plans = sweep_plans(self.view, self.cfg, self.deadlines, now, last_seen=self.last_seen,
                            watch_since=self.watch_since, sent=self.sent.keys() | self.sending)
        await self.execute(plans)
        self.request_placement()
        self._forget_before(now)

    def _forget_before(self, now: datetime) -> None:
        """Drop memory that no decision needs any more: old sends, silent containers."""
        sent_horizon = now - timedelta(seconds=2 * self.cfg.command_resend_window_s)
        self.sent = {k: at for k, at in self.sent.items() if at >= sent_horizon}
        seen_horizon = now - timedelta(seconds=2 * self.cfg.running_heartbeat_timeout_s)
        self.last_seen = {k: at for k, at in self.last_seen.items() if at >= seen_horizon}

    async def _sweep_loop(self, stop: asyncio.Event) -> None:
        await self._wait_caught_up(stop)
        while not stop.is_set():
            active = self.active
            try:
                if active and not self._active_before:
                    log.info("%s is the active scheduler", self.instance_id)
                if active:
                    await self.sweep()
            except Exception as e:
                log.warning("sweep failed: %r", e)
            self._active_before = active
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._sweep_wanted.wait(), timeout=self.cfg.sweep_interval_s)
            self._sweep_wanted.clear()

    async def _wait_caught_up(self, stop: asyncio.Event) -> None:
        waiter = asyncio.ensure_future(self.feed.caught_up.wait())
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        stopper.cancel()
