"""The scheduler against a real nats-server: validation, retries, roll-up and cancel, with a
fake agent's heartbeats and a test standing in for the providers."""

from __future__ import annotations

from schedkit import (
    commands,
    created,
    declare_servers,
    events,
    eventually,
    heartbeat,
    of_type,
    provider_runs,
    running,
    sub_event,
    task_event,
    until,
)
from touchstone.shared import events as ev
from touchstone.shared.commands import LaunchTask, TerminateTask
from touchstone.shared.publisher import EventPublisher
from touchstone.shared.system import Server
from touchstone.shared.testing import sample_report


async def test_validation_is_queued_placed_on_a_live_server_launched_and_accepted(nc, sjs, subjects) -> None:
    js = sjs
    pub = EventPublisher(js, subjects)
    await declare_servers(js, subjects, Server(name="gpu-a", num_slots=2))
    async with running(nc, js, subjects) as scheduler:
        await pub.append(created("s-v"))
        all_events = await until(lambda: events(js, subjects), lambda es: of_type(es, "TaskQueued"))
        (q,) = of_type(all_events, "TaskQueued")
        assert (q.task_id, q.kind, q.platform, q.spec.git_ref) == ("validation", "validation", "any", "v1")
        # declared but never heard from: no place for it
        assert await scheduler.place() == 0

        await heartbeat(nc, subjects, "gpu-a", slots=2)
        all_events = await until(lambda: events(js, subjects), lambda es: of_type(es, "TaskAssigned"))
        (assigned,) = of_type(all_events, "TaskAssigned")
        assert (assigned.attempt, assigned.platform, assigned.placement) == (1, "onprem", "gpu-a/cpu0")
        ((launch, msg_id),) = await until(lambda: commands(js, subjects, "onprem-provider"), bool)
        assert isinstance(launch, LaunchTask)
        assert msg_id == ev.derived_id(assigned.event_id, "launch")
        assert (launch.kind, launch.placement, launch.container_name) == (
            "validation", "gpu-a/cpu0", "touchstone-s-v-validation-1")
        assert launch.spec == q.spec

        await provider_runs(pub, "s-v", "validation", 1, report=sample_report(), commit="abc")
        all_events = await until(lambda: events(js, subjects), lambda es: of_type(es, "SubmissionValidated"))
        (validated,) = of_type(all_events, "SubmissionValidated")
        assert (validated.passed, validated.commit) == (True, "abc")
        assert validated.causation_id == of_type(all_events, "TrainingFinished")[0].event_id


async def test_failures_are_retried_then_the_task_and_submission_error(nc, sjs, subjects) -> None:
    js = sjs
    pub = EventPublisher(js, subjects)
    await declare_servers(js, subjects, Server(name="gpu-a", num_slots=1))
    async with running(nc, js, subjects):
        await heartbeat(nc, subjects, "gpu-a", slots=1)
        await pub.append(created("s-f"))
        for attempt in (1, 2, 3):
            all_events = await until(
                lambda: events(js, subjects), lambda es, n=attempt: len(of_type(es, "TaskAssigned")) == n)
            assert of_type(all_events, "TaskAssigned")[-1].attempt == attempt
            await pub.append(task_event(ev.TaskFailed, "s-f", "validation", attempt=attempt,
                                        reason=f"pod lost {attempt}", failure_class="infrastructure"))
        all_events = await until(lambda: events(js, subjects), lambda es: of_type(es, "SubmissionFailed"))
    assert [e.attempt for e in of_type(all_events, "TaskRetried")] == [2, 3]
    assert [e.attempt for e in of_type(all_events, "TaskAssigned")] == [1, 2, 3]
    (errored,) = of_type(all_events, "TaskErrored")
    assert "all 3 attempts failed" in errored.reason and "pod lost 3" in errored.reason
    (failed,) = of_type(all_events, "SubmissionFailed")
    assert "pod lost 3" in failed.reason
    launches = [c for c, _ in await commands(js, subjects, "onprem-provider")]
    assert [c.attempt for c in launches] == [1, 2, 3]


def accepted(sid: str, *intervals: int, **schedule) -> list[ev.Event]:
    return [
        created(sid),
        sub_event(ev.SubmissionValidated, sid, passed=True, commit="c1"),
        sub_event(ev.SubmissionScheduled, sid, schedule=ev.Schedule(prediction_intervals=intervals, **schedule)),
    ]


async def test_training_tasks_run_and_the_submission_rolls_up_to_completed(nc, sjs, subjects) -> None:
    js = sjs
    pub = EventPublisher(js, subjects)
    await declare_servers(js, subjects, runpod_max_running_tasks=2)
    for event in accepted("s-t", 15, 60, platform="runpod", gpu_type="A40"):
        await pub.append(event)
    async with running(nc, js, subjects):
        all_events = await until(lambda: events(js, subjects), lambda es: len(of_type(es, "TaskAssigned")) == 2)
        assert sorted((e.task_id, e.placement) for e in of_type(all_events, "TaskAssigned")) == [
            ("pi-15", "A40"), ("pi-60", "A40")]
        launches = sorted((c.task_id, c.prediction_interval, c.spec.git_ref)
                          for c, _ in await commands(js, subjects, "runpod-provider"))
        assert launches == [("pi-15", 15, "c1"), ("pi-60", 60, "c1")]
        for tid in ("pi-15", "pi-60"):
            await provider_runs(pub, "s-t", tid, 1)
        all_events = await until(lambda: events(js, subjects), lambda es: of_type(es, "SubmissionCompleted"))
    assert len(of_type(all_events, "SubmissionStarted")) == 1
    assert not of_type(all_events, "SubmissionFailed")


async def test_cancel_stops_live_tasks_and_cancelled_tasks_never_start(nc, sjs, subjects) -> None:
    js = sjs
    pub = EventPublisher(js, subjects)
    await declare_servers(js, subjects, Server(name="gpu-a", num_slots=1))
    for event in accepted("s-c", 15, 60, 240, platform="onprem"):
        await pub.append(event)
    async with running(nc, js, subjects) as scheduler:
        await heartbeat(nc, subjects, "gpu-a", slots=1)
        all_events = await until(lambda: events(js, subjects), lambda es: of_type(es, "TaskAssigned"))
        (assigned,) = of_type(all_events, "TaskAssigned")
        await provider_runs(pub, "s-c", assigned.task_id, 1, finish=False)
        await pub.append(sub_event(ev.SubmissionCancelRequested, "s-c", requested_by="bob"))
        all_events = await until(lambda: events(js, subjects), lambda es: of_type(es, "SubmissionCancelled"))
        assert sorted(e.task_id for e in of_type(all_events, "TaskCancelled")) == ["pi-15", "pi-240", "pi-60"]
        stops = await until(lambda: commands(js, subjects, "onprem-provider"),
                            lambda cs: any(isinstance(c, TerminateTask) for c, _ in cs))
        (stop,) = [c for c, _ in stops if isinstance(c, TerminateTask)]
        assert (stop.task_id, stop.attempt) == (assigned.task_id, 1)

        # capacity comes back; nothing cancelled starts
        await heartbeat(nc, subjects, "gpu-a", slots=4, free=4)
        assert await scheduler.place() == 0
        all_events = await events(js, subjects)
    assert len(of_type(all_events, "TaskAssigned")) == 1
    assert not of_type(all_events, "SubmissionCompleted") and not of_type(all_events, "SubmissionFailed")


async def test_a_server_whose_agent_now_serves_another_namespace_gets_nothing_more(nc, sjs, subjects) -> None:
    js = sjs
    pub = EventPublisher(js, subjects)
    await declare_servers(js, subjects, Server(name="gpu-a", num_slots=2))
    async with running(nc, js, subjects) as scheduler:
        await heartbeat(nc, subjects, "gpu-a", slots=2, namespace=subjects.ns)
        await pub.append(created("s-1"))
        await until(lambda: events(js, subjects), lambda es: of_type(es, "TaskAssigned"))
        # the same host, moved to another instance: its next heartbeat says so
        await heartbeat(nc, subjects, "gpu-a", slots=2, namespace="another-instance")
        await eventually(lambda: scheduler.hosts["gpu-a"].heartbeat.namespace == "another-instance")
        await pub.append(created("s-2"))
        all_events = await until(lambda: events(js, subjects), lambda es: len(of_type(es, "TaskQueued")) == 2)
        assert await scheduler.place() == 0
        assert len(of_type(all_events, "TaskAssigned")) == 1
        # back in this namespace: placement resumes at once
        await heartbeat(nc, subjects, "gpu-a", slots=2, namespace=subjects.ns)
        all_events = await until(lambda: events(js, subjects), lambda es: len(of_type(es, "TaskAssigned")) == 2)
        assert {e.placement for e in of_type(all_events, "TaskAssigned")} == {"gpu-a/cpu0", "gpu-a/cpu1"}
