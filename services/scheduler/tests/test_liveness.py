"""Stuck detection sees RunPod's attempts through the provider's own report (``LiveAttempts``
on ``{ns}.provider.runpod.live``), not through a heartbeat of a pretend agent host."""

from __future__ import annotations

from schedkit import (
    FakeClock,
    created,
    declare_servers,
    events,
    eventually,
    of_type,
    provider_runs,
    running,
    sub_event,
    until,
)
from touchstone.shared import events as ev
from touchstone.shared.commands import container_name
from touchstone.shared.providers import LiveAttempts, encode_live
from touchstone.shared.publisher import EventPublisher


async def live(nc, subjects, *names: str, namespace: str | None = None) -> None:
    report = LiveAttempts(platform="runpod", replica="replica-a", namespace=namespace or subjects.ns, running=names)
    await nc.publish(subjects.provider_live("runpod"), encode_live(report))
    await nc.flush()


async def test_a_runpod_attempt_the_providers_report_names_is_alive_and_one_it_stopped_naming_is_stuck(
        nc, sjs, subjects) -> None:
    js = sjs
    clock = FakeClock(ev.utcnow())
    pub = EventPublisher(js, subjects)
    await declare_servers(js, subjects, runpod_max_running_tasks=2)
    for event in (created("s-l"), sub_event(ev.SubmissionValidated, "s-l", passed=True, commit="c1"),
                  sub_event(ev.SubmissionScheduled, "s-l", schedule=ev.Schedule(
                      prediction_intervals=(15, 60), platform="runpod", gpu_type="A40"))):
        await pub.append(event)
    async with running(nc, js, subjects, clock=clock, leader_election=False, running_heartbeat_timeout_s=90) as sched:
        await until(lambda: events(js, subjects), lambda es: len(of_type(es, "TaskAssigned")) == 2)
        for tid in ("pi-15", "pi-60"):
            await provider_runs(pub, "s-l", tid, 1, finish=False)
        await until(lambda: events(js, subjects), lambda es: len(of_type(es, "TrainingStarted")) == 2)
        alive, silent = container_name("s-l", "pi-15", 1), container_name("s-l", "pi-60", 1)

        await live(nc, subjects, alive, silent)
        await eventually(lambda: {alive, silent} <= sched.last_seen.keys())
        await live(nc, subjects, silent, namespace="another-instance")  # not ours: ignored
        clock.advance(60)
        await live(nc, subjects, alive)  # the provider still drives pi-15; pi-60 it no longer names
        await eventually(lambda: sched.last_seen[alive] == clock.now)
        clock.advance(40)  # 100 s since pi-60 was last named, 40 s since pi-15 was
        await sched.sweep()

        all_events = await until(lambda: events(js, subjects), lambda es: of_type(es, "TaskFailed"))
    (failed,) = of_type(all_events, "TaskFailed")
    assert (failed.task_id, failed.failure_class) == ("pi-60", "infrastructure")
    assert "running" in failed.reason
    assert sched.hosts == {}  # RunPod is no host: it shows in no host list, and is never placed on
