"""Replicas, redeliveries and restarts: the stream must show each decision taken once."""

from __future__ import annotations

import asyncio
from collections import Counter

from schedkit import (
    FakeClock,
    commands,
    count,
    created,
    declare_servers,
    events,
    eventually,
    heartbeat,
    of_type,
    provider_runs,
    queued,
    running,
    stored,
    task_event,
    until,
)
from touchstone.shared import events as ev
from touchstone.shared.jetstream import connect, provision
from touchstone.shared.publisher import EventPublisher
from touchstone.shared.subjects import task_aggregate_id
from touchstone.shared.system import Server
from touchstone.shared.testing import sample_report

RACES = 1000
RACE_TASKS = 1000


async def test_two_replicas_forced_to_decide_the_same_task_1000_times_assign_it_once(
    nats_server, nc, sjs, subjects
) -> None:
    """1,000 rounds: one task is queued, both replicas' views hold it, and both place at the
    same moment. They decide differently (their default RunPod GPU types differ, so their
    assignments have different ids and the duplicate window cannot hide the race): the append
    that reaches the server second carries a stale expected sequence and must be refused."""
    js = sjs
    pub = EventPublisher(js, subjects)
    await declare_servers(js, subjects, runpod_max_running_tasks=RACES)
    other_nc = await connect(nats_server.url, "replica-b")
    made: list[tuple[int, int]] = []
    try:
        async with (
            running(nc, js, subjects, leader_election=False, auto_place=False,
                    runpod_default_gpu_type="A40") as a,
            running(other_nc, other_nc.jetstream(), subjects, leader_election=False, auto_place=False,
                    runpod_default_gpu_type="L4") as b,
        ):
            await eventually(lambda: a.system.runpod_max_running_tasks == b.system.runpod_max_running_tasks == RACES)
            for i in range(RACES):
                key = task_aggregate_id(f"s-{i % 20}", f"pi-{i}")
                await pub.append(queued(f"s-{i % 20}", f"pi-{i}", platform="runpod"), expected_last_seq=0)
                await eventually(lambda: key in a.view.queued and key in b.view.queued)  # noqa: B023
                made.append(tuple(await asyncio.gather(a.place(), b.place())))
                # the loser reloads the task and both views see it assigned before the next round
                await eventually(lambda: key not in a.view.queued and key not in b.view.queued)  # noqa: B023
            await eventually(lambda: a.commands.sent + b.commands.sent >= RACES)
            conflicts = a.conflicts + b.conflicts
    finally:
        await other_nc.close()
    assert Counter(made).keys() <= {(1, 0), (0, 1)} and len(made) == RACES
    assert conflicts == RACES, "every round was a race the loser lost on its expected sequence"
    all_events = await events(js, subjects)
    assigned = of_type(all_events, "TaskAssigned")
    assert sorted(Counter((e.aggregate_id, e.attempt) for e in assigned).values()) == [1] * RACES
    launches = [(c.task_id, c.attempt, c.placement) for c, _ in await commands(js, subjects, "runpod-provider")]
    assert sorted(launches) == sorted((e.task_id, e.attempt, e.placement) for e in assigned)


async def test_two_active_schedulers_racing_never_double_assign(nats_server, nc, sjs, subjects) -> None:
    """Both replicas act (no lease) on 1,000 tasks queued at once, placing as events arrive:
    optimistic concurrency must let exactly one assignment per attempt through."""
    js = sjs
    pub = EventPublisher(js, subjects)
    await declare_servers(js, subjects, runpod_max_running_tasks=RACE_TASKS)
    other_nc = await connect(nats_server.url, "replica-b")
    try:
        async with (
            running(nc, js, subjects, leader_election=False, runpod_default_gpu_type="A40") as a,
            running(other_nc, other_nc.jetstream(), subjects, leader_election=False,
                    runpod_default_gpu_type="L4") as b,
        ):
            await asyncio.gather(*(pub.append(queued(f"s-{i % 20}", f"pi-{i}", platform="runpod"),
                                              expected_last_seq=0) for i in range(RACE_TASKS)))
            await until(lambda: count(js, subjects, "TaskAssigned"), lambda n: n >= RACE_TASKS)
            await eventually(lambda: a.commands.sent + b.commands.sent >= RACE_TASKS)
            conflicts = a.conflicts + b.conflicts
    finally:
        await other_nc.close()
    all_events = await events(js, subjects)
    per_attempt = Counter((e.aggregate_id, e.attempt) for e in of_type(all_events, "TaskAssigned"))
    assert set(per_attempt.values()) == {1}
    assert conflicts > 0, "the replicas did race"
    launches = Counter((c.task_id, c.attempt) for c, _ in await commands(js, subjects, "runpod-provider"))
    assert len(launches) == RACE_TASKS and set(launches.values()) == {1}


async def stream_size(js, subjects) -> tuple[int, int]:
    events_info = await js.stream_info(subjects.events_stream)
    commands_all = await stored(js, subjects.commands_stream, subjects.all_commands)
    return events_info.state.last_seq, len(commands_all)


async def test_redelivered_events_and_a_restart_change_nothing(nc, sjs, subjects) -> None:
    js = sjs
    pub = EventPublisher(js, subjects)
    await declare_servers(js, subjects, Server(name="gpu-a", num_slots=2), runpod_max_running_tasks=1)
    for sid in ("s-1", "s-2", "s-3"):
        await pub.append(created(sid))
    async with running(nc, js, subjects) as scheduler:
        await heartbeat(nc, subjects, "gpu-a", slots=2)
        await until(lambda: events(js, subjects), lambda es: len(of_type(es, "TaskAssigned")) == 3)
        await provider_runs(pub, "s-1", "validation", 1, report=sample_report(False))
        await pub.append(task_event(ev.TaskFailed, "s-2", "validation", attempt=1, reason="x"))
        settled = lambda es: of_type(es, "SubmissionValidated") and len(of_type(es, "TaskAssigned")) == 4  # noqa: E731
        await until(lambda: events(js, subjects), settled)
        await eventually(lambda: scheduler.commands.sent == 4)  # every launch is out
        await scheduler.sweep()
        before = await stream_size(js, subjects)
        view_before = {k: (t.state, t.seq) for k, t in scheduler.view.tasks.items()}

        # every stored event delivered again, then the safety-net sweep
        for seq, data, _ in await stored(js, subjects.events_stream, subjects.all_events):
            await scheduler._on_stored(seq, ev.decode_event(data))
        await scheduler.sweep()
        await scheduler.place()
        assert {k: (t.state, t.seq) for k, t in scheduler.view.tasks.items()} == view_before
    after_replay = await stream_size(js, subjects)

    # a fresh process rebuilds from the stream, takes the lease, re-sends recent launches
    async with running(nc, js, subjects) as fresh:
        await fresh.sweep()
        await fresh.place()
        assert {k: (t.state, t.seq) for k, t in fresh.view.tasks.items()} == view_before
    assert before == after_replay == await stream_size(js, subjects)


async def test_a_stuck_attempt_is_failed_once_and_its_retry_left_alone(nc, sjs, subjects) -> None:
    js = sjs
    clock = FakeClock(ev.utcnow())
    pub = EventPublisher(js, subjects)
    await declare_servers(js, subjects, Server(name="gpu-a", num_slots=1))
    await pub.append(created("s-x"))
    async with running(nc, js, subjects, clock=clock, launch_timeout_s=60,
                       retry_base_delay_s=30, leader_election=False) as scheduler:
        await heartbeat(nc, subjects, "gpu-a", slots=1)
        all_events = await until(lambda: events(js, subjects), lambda es: of_type(es, "TaskAssigned"))
        count = len(all_events)
        clock.advance(60)  # exactly at the deadline
        await scheduler.sweep()
        assert len(await events(js, subjects)) == count
        clock.advance(1)
        await scheduler.sweep()
        all_events = await until(lambda: events(js, subjects), lambda es: of_type(es, "TaskRetried"))
        (failed,) = of_type(all_events, "TaskFailed")
        assert failed.failure_class == "infrastructure" and "launch" in failed.reason
        stops = [c for c, _ in await commands(js, subjects, "onprem-provider") if c.type == "TerminateTask"]
        assert [(c.task_id, c.attempt) for c in stops] == [("validation", 1)]
        count = len(all_events)
        clock.advance(20)  # the retry waits out its back-off: queued, not stuck, not placed
        await scheduler.sweep()
        await scheduler.sweep()
        assert await scheduler.place() == 0
        assert len(await events(js, subjects)) == count
        clock.advance(11)
        await heartbeat(nc, subjects, "gpu-a", slots=1)  # the fake clock outran the last one
        await until(lambda: events(js, subjects), lambda es: len(of_type(es, "TaskAssigned")) == 2)


async def test_a_launch_the_broker_would_not_take_is_sent_by_the_next_sweep(nc, sjs, subjects, caplog) -> None:
    """An assignment recorded while its launch could not be sent (the commands stream gone for
    a moment) is launched by the next sweep, once, instead of waiting to be failed as stuck."""
    js = sjs
    pub = EventPublisher(js, subjects)
    await declare_servers(js, subjects, Server(name="gpu-a", num_slots=1))
    async with running(nc, js, subjects, leader_election=False) as scheduler:
        scheduler.commands.retry_for = 0.3
        await js.delete_stream(subjects.commands_stream)
        await pub.append(created("s-x"))
        await heartbeat(nc, subjects, "gpu-a", slots=1)
        await until(lambda: events(js, subjects), lambda es: of_type(es, "TaskAssigned"))
        await eventually(lambda: "launches not sent yet" in caplog.text)
        await provision(js, subjects)  # the broker takes commands again
        assert await commands(js, subjects, "onprem-provider") == []
        await scheduler.sweep()
        await scheduler.sweep()
        launches = [(c.task_id, c.attempt) for c, _ in await commands(js, subjects, "onprem-provider")
                    if c.type == "LaunchTask"]
        assert launches == [("validation", 1)]
        assert not of_type(await events(js, subjects), "TaskFailed")
