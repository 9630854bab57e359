"""A dev instance starts paused: the scheduler places nothing until an operator resumes it, and
while it is paused stuck detection still fails a silent attempt (the money stays safe)."""

from __future__ import annotations

import asyncio

from schedkit import FakeClock, commands, created, events, eventually, heartbeat, of_type, running, until
from touchstone.shared import events as ev
from touchstone.shared.instance import InstanceKind, init_instance, pause
from touchstone.shared.jetstream import system_bucket
from touchstone.shared.publisher import EventPublisher
from touchstone.shared.system import Server, read_system, write_system


async def test_a_dev_instance_places_nothing_until_it_is_resumed(nc, sjs, subjects) -> None:
    js = sjs
    kv = await system_bucket(js, subjects)
    await init_instance(kv, subjects.ns, InstanceKind.DEV)
    settings, revision = await read_system(kv)
    assert settings.scheduler_paused and settings.runpod_max_running_tasks == 0
    # the operator declares a server and lets RunPod run 2 tasks, but does not resume yet
    await write_system(kv, settings.model_copy(update={
        "servers": [Server(name="gpu-a", num_slots=2)], "runpod_max_running_tasks": 2}), revision=revision)
    pub = EventPublisher(js, subjects)
    async with running(nc, js, subjects) as scheduler:
        await heartbeat(nc, subjects, "gpu-a", slots=2)
        await eventually(lambda: "gpu-a" in scheduler.hosts)
        await pub.append(created("s-dev"))
        await until(lambda: events(js, subjects), lambda es: of_type(es, "TaskQueued"))
        await scheduler.sweep()
        assert await scheduler.place() == 0
        await asyncio.sleep(0.5)  # reactions had their chance
        assert of_type(await events(js, subjects), "TaskAssigned") == []
        assert await commands(js, subjects, "onprem-provider") == []

        settings, revision = await read_system(kv)
        await write_system(kv, settings.model_copy(update={"scheduler_paused": False}), revision=revision)
        all_events = await until(lambda: events(js, subjects), lambda es: of_type(es, "TaskAssigned"))
    (assigned,) = of_type(all_events, "TaskAssigned")
    assert assigned.platform == "onprem" and assigned.placement.startswith("gpu-a/")


async def test_a_prod_instance_starts_running_and_a_rerun_keeps_the_operators_choice(sjs, subjects) -> None:
    kv = await system_bucket(sjs, subjects)
    instance, done = await init_instance(kv, subjects.ns, InstanceKind.PROD)
    assert instance.kind is InstanceKind.PROD and not (await read_system(kv))[0].scheduler_paused
    assert done == [f"recorded prod instance {subjects.ns}"]
    await pause(kv)
    again, _ = await init_instance(kv, subjects.ns, None)
    assert again == instance and (await read_system(kv))[0].scheduler_paused


async def test_paused_the_stuck_detection_still_fails_a_silent_attempt(nc, sjs, subjects) -> None:
    js = sjs
    clock = FakeClock(ev.utcnow())
    kv = await system_bucket(js, subjects)
    await write_system(kv, (await read_system(kv))[0].model_copy(update={
        "servers": [Server(name="gpu-a", num_slots=1)]}))
    pub = EventPublisher(js, subjects)
    await pub.append(created("s-stuck"))
    async with running(nc, js, subjects, clock=clock, launch_timeout_s=60, retry_base_delay_s=0,
                       leader_election=False) as scheduler:
        await heartbeat(nc, subjects, "gpu-a", slots=1)
        await until(lambda: events(js, subjects), lambda es: of_type(es, "TaskAssigned"))
        await pause(kv)  # the provider never reports the launch; the operator pauses
        await eventually(lambda: scheduler.system.scheduler_paused)
        clock.advance(61)
        await scheduler.sweep()
        all_events = await until(lambda: events(js, subjects), lambda es: of_type(es, "TaskRetried"))
        (failed,) = of_type(all_events, "TaskFailed")
        assert failed.failure_class == "infrastructure" and "launch" in failed.reason
        stops = [c for c, _ in await commands(js, subjects, "onprem-provider") if c.type == "TerminateTask"]
        assert [(c.task_id, c.attempt) for c in stops] == [("validation", 1)]
        # the retry waits in the queue: paused, nothing is placed again
        await heartbeat(nc, subjects, "gpu-a", slots=1)
        await scheduler.sweep()
        assert await scheduler.place() == 0
        assert len(of_type(await events(js, subjects), "TaskAssigned")) == 1
