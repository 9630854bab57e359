"""The projector follows the stream into the store; a rebuild gives the same projections."""

from __future__ import annotations

import asyncio

from touchstone.shared import events as ev
from touchstone.shared.lifecycle import SubmissionStatus, TaskStatus
from touchstone.shared.metrics import REGISTRY
from touchstone.shared.projector import Projector
from touchstone.shared.publisher import EventPublisher
from touchstone.shared.store.sqlite import SqliteStore
from touchstone.shared.testing import created, queued, task_event


async def dump(store: SqliteStore) -> tuple[list, list]:
    subs = (await store.list_submissions(limit=1000)).items
    tasks = (await store.list_tasks(limit=1000)).items
    return [s.model_dump() for s in subs], [t.model_dump() for t in tasks]


async def write_history(pub: EventPublisher, n: int) -> None:
    for i in range(n):
        sid = f"s-{i}"
        await pub.append(created(sid, owner=f"u{i % 3}"))
        await pub.append(queued(sid, "validation", kind="validation"))
        await pub.append(task_event(ev.TaskAssigned, sid, "validation", attempt=1, platform="onprem",
                                    placement="h1/0"))
        if i == 5:  # platform events sit in the same stream and project nothing
            await pub.append(ev.RoguePodReaped(aggregate_id="runpod", correlation_id="runpod", pod_id="p1",
                                               pod_name="touchstone-s-x-pi-15-1", cost_per_hour=0.4))
            await pub.append(ev.AlarmRaised(aggregate_id="runpod", correlation_id="runpod", kind="low_balance",
                                            message="balance $12.00 is below $50.00", service="runpod-provider"))
        if i % 4 == 0:
            await pub.append(task_event(ev.TaskFailed, sid, "validation", attempt=1, reason="pod lost"))
            continue
        await pub.append(ev.SubmissionValidated(aggregate_id=sid, correlation_id=sid, passed=i % 3 != 0))
        if i % 3 != 0:
            await pub.append(ev.SubmissionScheduled(
                aggregate_id=sid, correlation_id=sid, schedule=ev.Schedule(prediction_intervals=(15, 60))))
            for tid in ("pi-15", "pi-60"):
                await pub.append(queued(sid, tid, prediction_interval=int(tid[3:])))
            await pub.append(task_event(ev.TaskAssigned, sid, "pi-15", attempt=1, platform="onprem",
                                        placement="h1/1"))
            await pub.append(task_event(ev.ContainerLaunched, sid, "pi-15", attempt=1,
                                        container_name=f"touchstone-{sid}-pi-15-1"))
            await pub.append(task_event(ev.ContainerReady, sid, "pi-15", attempt=1))
            await pub.append(task_event(ev.TrainingStarted, sid, "pi-15", attempt=1))
            await pub.append(task_event(ev.TrainingFinished, sid, "pi-15", attempt=1,
                                        metrics={"long": {"f1": 0.5}}, cost_usd=0.25))


async def test_live_projection_matches_a_full_replay(js, subjects, tmp_path) -> None:
    pub = EventPublisher(js, subjects)
    live_store = SqliteStore(tmp_path / "live.db")
    projector = Projector(js, subjects, live_store)
    stop = asyncio.Event()
    runner = asyncio.create_task(projector.run(stop))
    await write_history(pub, 12)
    await projector.catch_up()
    stop.set()
    await runner
    live = await dump(live_store)

    s1 = await live_store.get_submission("s-1")
    assert s1.status == SubmissionStatus.SCHEDULED
    assert (s1.tasks_total, s1.tasks_done, s1.cost_usd) == (2, 1, 0.25)
    done = await live_store.get_task("s-1", "pi-15")
    assert done.status == TaskStatus.SUCCEEDED and done.metrics == {"long": {"f1": 0.5}}
    assert [e.type for e in done.timeline][:2] == ["TaskQueued", "TaskAssigned"]
    assert (await live_store.get_submission("s-3")).status == SubmissionStatus.REJECTED

    replay_store = SqliteStore(tmp_path / "replay.db")
    applied = await Projector(js, subjects, replay_store).rebuild()
    assert applied == (await js.stream_info(subjects.events_stream)).state.messages
    assert await dump(replay_store) == live

    # rebuilding the live store in place gives the same again
    await projector.rebuild()
    assert await dump(live_store) == live


async def test_restart_resumes_from_the_checkpoint_without_double_counting(js, subjects, tmp_path) -> None:
    pub = EventPublisher(js, subjects)
    store = SqliteStore(tmp_path / "p.db")
    await write_history(pub, 3)
    first = Projector(js, subjects, store)
    await first.rebuild()
    before = await dump(store)
    # a second projector starting from the stored checkpoint applies nothing twice
    second = Projector(js, subjects, store)
    stop = asyncio.Event()
    runner = asyncio.create_task(second.run(stop))
    await pub.append(created("s-new"))
    await second.catch_up()
    stop.set()
    await runner
    subs, tasks = await dump(store)
    assert len(subs) == len(before[0]) + 1
    assert tasks == before[1]


async def test_malformed_events_are_skipped_not_fatal(js, subjects, tmp_path) -> None:
    store = SqliteStore(tmp_path / "p.db")
    await js.publish(f"{subjects.ns}.evt.submission.s-bad.SubmissionCreated", b"{}",
                     stream=subjects.events_stream)
    await EventPublisher(js, subjects).append(created("s-good"))
    projector = Projector(js, subjects, store)
    await projector.rebuild()
    assert projector.skipped == 1
    assert await store.get_submission("s-good") is not None


async def test_projector_lag_is_exported_while_behind_and_zero_once_caught_up(js, subjects, tmp_path) -> None:
    pub = EventPublisher(js, subjects)
    for i in range(5):
        await pub.append(created(f"s-lag-{i}"))
    store = SqliteStore(tmp_path / "lag.db")
    projector = Projector(js, subjects, store, max_batch=2)
    sub = await js.subscribe(subjects.all_events, stream=subjects.events_stream, ordered_consumer=True)
    try:
        first = [await sub.next_msg(timeout=5) for _ in range(2)]
        await projector.apply_batch(first)
        assert REGISTRY.get_sample_value("touchstone_projector_lag_events") == 3
        assert REGISTRY.get_sample_value("touchstone_projector_lag_seconds") > 0
        assert REGISTRY.get_sample_value("touchstone_projector_applied_sequence") == first[-1].metadata.sequence.stream
        rest = [await sub.next_msg(timeout=5) for _ in range(3)]
        await projector.apply_batch(rest)
        assert REGISTRY.get_sample_value("touchstone_projector_lag_events") == 0
        assert REGISTRY.get_sample_value("touchstone_projector_lag_seconds") == 0
    finally:
        await sub.unsubscribe()
        await store.close()
